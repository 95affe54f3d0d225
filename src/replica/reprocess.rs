//! `reprocess`: refused messages, and the stored ones, through the current configuration
//! again, in one transaction.

use anyhow::Result;
use rusqlite::{Transaction, params};

use super::Store;
use super::schema::REBUILD_LETTERS;
use super::write::{Inserted, insert_message, read_blob, replace_detail, reused_id};
use crate::decode::message::{Message, Rejection};
use crate::progress::Counter;

/// What `reprocess` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reprocessed {
    /// Refused bytes that now decode and became new messages.
    pub taken_in: u64,
    /// Refused bytes that now decode to a BeskedId already stored.
    pub already_stored: u64,
    /// Refused bytes that are still refused (their reason is brought up to date).
    pub still_rejected: u64,
    /// Messages whose kind or derived rows changed.
    pub rederived: u64,
    /// Messages that do not decode under the current configuration (their rows are kept).
    pub not_derivable: u64,
}

impl Store {
    /// Runs everything refused through `decode` again, and derives every stored message's rows
    /// anew, under the current configuration (after `[types.*]` or `max_message_bytes`
    /// changed). Refused bytes that now decode become messages (the `rejected` row keeps its
    /// bytes and gets `resolved_seq`). Every message's kind and derived rows (`print_status`,
    /// `print_status_postal_event`, `registration`) are replaced by what its envelope gives now;
    /// a message that no longer decodes keeps the rows it has. One transaction: all or nothing,
    /// and running it again changes nothing. Rows are read one at a time, so memory stays flat.
    pub fn reprocess(
        &mut self,
        decode: Decode<'_>,
        max_message_bytes: usize,
        progress: &Counter,
    ) -> Result<Reprocessed> {
        self.write(|tx, _| {
            if progress.is_shown() {
                let total: i64 = tx.query_row(
                    "SELECT (SELECT count(*) FROM rejected WHERE resolved_seq IS NULL)
                          + (SELECT count(*) FROM message WHERE envelope_pruned_at IS NULL)",
                    [],
                    |row| row.get(0),
                )?;
                progress.set_total(total.unsigned_abs());
            }
            let mut summary = Reprocessed::default();
            let mut after = 0i64;
            while let Some(ids) = refused_after(tx, after)? {
                after = ids.last().map_or(after, |&(id, _, _)| id);
                for (id, complete, size) in ids {
                    take_in(
                        tx,
                        decode,
                        max_message_bytes,
                        id,
                        complete,
                        size,
                        &mut summary,
                    )?;
                    progress.add(1);
                }
            }
            let mut after = 0i64;
            while let Some(seqs) = messages_after(tx, after)? {
                after = seqs.last().map_or(after, |(seq, _)| *seq);
                for (seq, kind) in seqs {
                    rederive(tx, decode, seq, &kind, &mut summary)?;
                    progress.add(1);
                }
            }
            // The statuses may have changed in any way: derive the letters from them anew.
            tx.execute_batch(REBUILD_LETTERS)?;
            Ok(summary)
        })
    }
}

/// The decoder of the current configuration.
type Decode<'a> = &'a dyn Fn(&[u8]) -> std::result::Result<Message, Rejection>;

/// Rows read at a time.
const CHUNK: i64 = 500;

/// The next refused rows not taken in yet, after id `after`: id, whether the row holds the
/// whole message, its size. None when there are no more.
fn refused_after(tx: &Transaction<'_>, after: i64) -> Result<Option<Vec<(i64, bool, i64)>>> {
    let ids: Vec<(i64, bool, i64)> = tx
        .prepare_cached(
            "SELECT id, raw_complete, raw_size FROM rejected
             WHERE resolved_seq IS NULL AND id > ?1 ORDER BY id LIMIT ?2",
        )?
        .query_map(params![after, CHUNK], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok((!ids.is_empty()).then_some(ids))
}

/// Runs refused row `id` through `decode` again: it becomes a message, is found a copy of one,
/// or stays refused with its reason brought up to date.
fn take_in(
    tx: &Transaction<'_>,
    decode: Decode<'_>,
    max_message_bytes: usize,
    id: i64,
    complete: bool,
    size: i64,
    summary: &mut Reprocessed,
) -> Result<()> {
    let taken_in_meanwhile: bool = tx
        .prepare_cached("SELECT resolved_seq IS NOT NULL FROM rejected WHERE id = ?1")?
        .query_row([id], |row| row.get(0))?;
    if taken_in_meanwhile {
        // A copy of a message this run took in (see `insert_message`).
        summary.already_stored += 1;
        return Ok(());
    }
    // Only the start of the message kept: it cannot be decoded again. Still too large: decided
    // from its size, without reading it; its reason is left as it is (rewriting the row would
    // load it whole into memory).
    if !complete || size as u64 > max_message_bytes as u64 {
        summary.still_rejected += 1;
        return Ok(());
    }
    let (source, received_at, origin): (String, String, Option<String>) = tx
        .prepare_cached("SELECT source, received_at, origin FROM rejected WHERE id = ?1")?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    let raw = read_blob(tx, "rejected", "raw", id)?;
    let message = match decode(&raw) {
        Ok(message) => message,
        Err(rejection) => {
            summary.still_rejected += 1;
            return set_reason(tx, id, rejection.reason());
        }
    };
    let seq = match insert_message(tx, &message, &source, &received_at, origin.as_deref(), &raw)? {
        Inserted::New(seq) => {
            summary.taken_in += 1;
            seq
        }
        Inserted::Same(seq) => {
            summary.already_stored += 1;
            seq
        }
        Inserted::Differs(seq) => {
            summary.still_rejected += 1;
            return set_reason(tx, id, reused_id(&message.besked_id, seq).reason());
        }
    };
    tx.execute(
        "UPDATE rejected SET resolved_seq = ?2 WHERE id = ?1",
        params![id, seq],
    )?;
    Ok(())
}

fn set_reason(tx: &Transaction<'_>, id: i64, reason: &str) -> Result<()> {
    tx.execute(
        "UPDATE rejected SET reason = ?2 WHERE id = ?1",
        params![id, reason],
    )?;
    Ok(())
}

/// The next stored messages after `after` whose envelope is kept: seq and kind. A message
/// whose envelope was dropped keeps the rows it has. None when there are no more.
fn messages_after(tx: &Transaction<'_>, after: i64) -> Result<Option<Vec<(i64, String)>>> {
    let seqs: Vec<(i64, String)> = tx
        .prepare_cached(
            "SELECT seq, kind FROM message WHERE seq > ?1 AND envelope_pruned_at IS NULL
             ORDER BY seq LIMIT ?2",
        )?
        .query_map(params![after, CHUNK], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok((!seqs.is_empty()).then_some(seqs))
}

/// Derives message `seq`'s kind and rows anew from its envelope; one that no longer decodes
/// keeps the rows it has.
fn rederive(
    tx: &Transaction<'_>,
    decode: Decode<'_>,
    seq: i64,
    kind: &str,
    summary: &mut Reprocessed,
) -> Result<()> {
    let envelope = read_blob(tx, "message", "envelope", seq)?;
    match decode(&envelope) {
        Ok(message) => {
            let changed = replace_detail(tx, seq, &message)?;
            let new_kind = message.kind.as_str();
            if kind != new_kind {
                tx.prepare_cached("UPDATE message SET kind = ?2 WHERE seq = ?1")?
                    .execute(params![seq, new_kind])?;
                super::changes::changed_in_place(tx, super::changes::Kind::Message, seq)?;
            }
            if changed || kind != new_kind {
                summary.rederived += 1;
            }
        }
        Err(rejection) => {
            summary.not_derivable += 1;
            tracing::warn!(
                seq,
                "message {seq} keeps the rows it has: it does not decode under the current configuration: {}",
                rejection.reason()
            );
        }
    }
    Ok(())
}
