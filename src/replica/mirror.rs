//! What the PostgreSQL mirror reads: a batch of changes after its position, with the current
//! rows of the things changed, and the messages stored after its message position; and where
//! it stands, as this replica last saw it (`mirror_state`).

use anyhow::Result;
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Transaction, params};

use super::Store;
use super::changes::{Kind, columns};

/// The rows of one table read for the mirror: the columns of [`columns`] of its kind,
/// preceded by the thing's number (`letter.id`, or the message's `seq`).
#[derive(Debug, Default)]
pub struct Rows {
    pub rows: Vec<Vec<Value>>,
}

/// One batch: everything changed after a position, read from one snapshot of the replica.
#[derive(Debug, Default)]
pub struct Batch {
    /// The position after this batch: the last `change.seq` and `message.seq` it holds (or
    /// those given, when it holds none).
    pub change_seq: i64,
    pub message_seq: i64,
    /// Things deleted, by kind and number.
    pub deleted: Vec<(Kind, i64)>,
    pub letters: Rows,
    pub statuses: Rows,
    /// `seq` of every status read: its postal events are replaced by those in `postal_events`.
    pub postal_events: Rows,
    pub registrations: Rows,
    /// New messages and messages changed since; each with its envelope last when asked for.
    pub messages: Rows,
    /// Whether more remains after this batch.
    pub more: bool,
    /// Changes and messages this batch holds.
    pub count: u64,
    /// Of them, the messages stored since the last batch.
    pub new_messages: u64,
}

/// The columns of a postal event, after its status's `seq`.
pub const POSTAL_EVENT_COLUMNS: &[&str] = &["besked_id", "type_kode", "occurred_at", "beloeb"];

/// The mirror's position and state in this replica.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorState {
    pub change_seq: i64,
    pub message_seq: i64,
    pub mirrored_at: Option<String>,
    pub attempted_at: Option<String>,
    pub error: Option<String>,
}

/// How far behind a mirror is: what it has not copied yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    pub changes: i64,
    pub messages: i64,
    /// When the oldest message not yet copied was received.
    pub oldest_received_at: Option<String>,
}

impl Store {
    /// Reads a batch of at most `limit` changes and `limit` new messages after the positions.
    /// `envelopes`: read each message's envelope bytes too, at most this many bytes of them in
    /// a batch (but at least one message's), so that memory stays bounded by bytes.
    pub fn mirror_batch(
        &mut self,
        change_after: i64,
        message_after: i64,
        limit: u32,
        envelopes: Option<u64>,
    ) -> Result<Batch> {
        let tx = self.conn.transaction()?;
        let mut batch = Batch {
            change_seq: change_after,
            message_seq: message_after,
            ..Batch::default()
        };
        let mut budget = Budget {
            limit: envelopes,
            bytes: 0,
        };
        let changed = read_changes(&tx, &mut batch, &mut budget, limit)?;
        let ids = |wanted: Kind| -> Vec<i64> {
            changed
                .iter()
                .filter(|(kind, _)| *kind == wanted)
                .map(|(_, id)| *id)
                .collect()
        };
        batch.letters = read_rows(&tx, Kind::Letter, &ids(Kind::Letter), false)?;
        let statuses = ids(Kind::Status);
        batch.statuses = read_rows(&tx, Kind::Status, &statuses, false)?;
        batch.postal_events = postal_events(&tx, &statuses)?;
        batch.registrations = read_rows(&tx, Kind::Registration, &ids(Kind::Registration), false)?;
        let mut messages = ids(Kind::Message);
        messages.extend(read_new_messages(&tx, &mut batch, &mut budget, limit)?);
        messages.sort_unstable();
        messages.dedup();
        batch.messages = read_rows(&tx, Kind::Message, &messages, envelopes.is_some())?;
        Ok(batch)
    }

    /// The mirror's state for `installation` (all 0 when it never ran).
    pub fn mirror_state(&self, installation: &str) -> Result<MirrorState> {
        Ok(self
            .conn
            .query_row(
                "SELECT change_seq, message_seq, mirrored_at, attempted_at, error
                 FROM mirror_state WHERE installation = ?1",
                [installation],
                |row| {
                    Ok(MirrorState {
                        change_seq: row.get(0)?,
                        message_seq: row.get(1)?,
                        mirrored_at: row.get(2)?,
                        attempted_at: row.get(3)?,
                        error: row.get(4)?,
                    })
                },
            )
            .optional()?
            .unwrap_or_default())
    }

    /// Records how a mirror step of `installation` ended, at `now`: at these positions and
    /// caught up (`error` None), or failed.
    pub fn set_mirror_state(
        &mut self,
        installation: &str,
        positions: Option<(i64, i64)>,
        now: &str,
        error: Option<&str>,
    ) -> Result<()> {
        self.write(|tx, _| {
            tx.execute(
                "INSERT INTO mirror_state
                     (installation, change_seq, message_seq, mirrored_at, attempted_at, error)
                 VALUES (?1, coalesce(?2, 0), coalesce(?3, 0), CASE WHEN ?5 IS NULL THEN ?4 END,
                     ?4, ?5)
                 ON CONFLICT (installation) DO UPDATE SET
                     change_seq = coalesce(?2, change_seq),
                     message_seq = coalesce(?3, message_seq),
                     mirrored_at = CASE WHEN ?5 IS NULL THEN ?4 ELSE mirrored_at END,
                     attempted_at = ?4, error = ?5",
                params![
                    installation,
                    positions.map(|p| p.0),
                    positions.map(|p| p.1),
                    now,
                    error
                ],
            )?;
            Ok(())
        })
    }

    /// What a mirror at these positions has not copied yet.
    pub fn mirror_backlog(&self, change_seq: i64, message_seq: i64) -> Result<Backlog> {
        let (changes, messages, oldest) = self.conn.query_row(
            "SELECT (SELECT count(*) FROM change WHERE seq > ?1),
                    (SELECT count(*) FROM message WHERE seq > ?2),
                    (SELECT received_at FROM message WHERE seq > ?2 ORDER BY seq LIMIT 1)",
            params![change_seq, message_seq],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        Ok(Backlog {
            changes,
            messages,
            oldest_received_at: oldest,
        })
    }
}

/// The envelope bytes a batch reads: a message that would take it over the limit waits for the
/// next batch (unless it is the batch's first thing).
struct Budget {
    limit: Option<u64>,
    bytes: u64,
}

impl Budget {
    /// Counts message `seq`'s envelope; whether it is one too many for a batch of `count`.
    fn over(&mut self, tx: &Transaction<'_>, seq: i64, count: u64) -> Result<bool> {
        let Some(limit) = self.limit else {
            return Ok(false);
        };
        let size: i64 = tx
            .prepare_cached(
                "SELECT CASE WHEN envelope_pruned_at IS NULL THEN length(envelope) ELSE 0 END
                 FROM message WHERE seq = ?1",
            )?
            .query_row([seq], |row| row.get(0))
            .optional()?
            .unwrap_or(0);
        self.bytes += size.max(0) as u64;
        Ok(count > 0 && self.bytes > limit)
    }
}

/// The changes after `batch.change_seq`, at most `limit` (and the envelope budget): deletions
/// into `batch.deleted`; the things changed returned.
fn read_changes(
    tx: &Transaction<'_>,
    batch: &mut Batch,
    budget: &mut Budget,
    limit: u32,
) -> Result<Vec<(Kind, i64)>> {
    let mut changed = Vec::new();
    let mut statement = tx.prepare_cached(
        "SELECT seq, kind, id, deleted_at IS NOT NULL FROM change
         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let mut rows = statement.query(params![batch.change_seq, limit + 1])?;
    while let Some(row) = rows.next()? {
        if batch.count == u64::from(limit) {
            batch.more = true;
            break;
        }
        let kind = match row.get_ref(1)?.as_str()? {
            "letter" => Kind::Letter,
            "status" => Kind::Status,
            "registration" => Kind::Registration,
            _ => Kind::Message,
        };
        let id: i64 = row.get(2)?;
        let deleted: bool = row.get(3)?;
        if kind == Kind::Message && !deleted && budget.over(tx, id, batch.count)? {
            batch.more = true;
            break;
        }
        batch.change_seq = row.get(0)?;
        batch.count += 1;
        if deleted {
            batch.deleted.push((kind, id));
        } else {
            changed.push((kind, id));
        }
    }
    Ok(changed)
}

/// The messages stored after `batch.message_seq`, at most `limit` (and the envelope budget).
fn read_new_messages(
    tx: &Transaction<'_>,
    batch: &mut Batch,
    budget: &mut Budget,
    limit: u32,
) -> Result<Vec<i64>> {
    let new: Vec<i64> = tx
        .prepare_cached("SELECT seq FROM message WHERE seq > ?1 ORDER BY seq LIMIT ?2")?
        .query_map(params![batch.message_seq, limit + 1], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if new.len() > limit as usize {
        batch.more = true;
    }
    let mut taken = Vec::new();
    for seq in new.into_iter().take(limit as usize) {
        if budget.over(tx, seq, batch.count)? {
            batch.more = true;
            break;
        }
        batch.message_seq = seq;
        batch.count += 1;
        batch.new_messages += 1;
        taken.push(seq);
    }
    Ok(taken)
}

/// The rows of things `ids` of `kind`, each its number then its [`columns`] (then the envelope
/// for a message when `envelope`); those deleted meanwhile are left out.
fn read_rows(tx: &Transaction<'_>, kind: Kind, ids: &[i64], envelope: bool) -> Result<Rows> {
    if ids.is_empty() {
        return Ok(Rows::default());
    }
    let table = match kind {
        Kind::Letter => "letter",
        Kind::Status => "print_status",
        Kind::Registration => "registration",
        Kind::Message => "message",
    };
    let mut selected: Vec<String> = columns(kind).iter().map(|c| format!("t.{c}")).collect();
    if kind == Kind::Message {
        selected.push(if envelope {
            "CASE WHEN t.envelope_pruned_at IS NULL THEN t.envelope END".into()
        } else {
            "NULL".into()
        });
    }
    let mut statement = tx.prepare_cached(&format!(
        "SELECT t.rowid, {} FROM json_each(?1) AS j JOIN {table} AS t ON t.rowid = j.value
         ORDER BY t.rowid",
        selected.join(", ")
    ))?;
    let width = selected.len() + 1;
    let rows = statement
        .query_map([serde_json::to_string(ids)?], |row| {
            (0..width).map(|index| row.get(index)).collect()
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Rows { rows })
}

/// The postal events of statuses `seqs`: `seq` then [`POSTAL_EVENT_COLUMNS`].
fn postal_events(tx: &Transaction<'_>, seqs: &[i64]) -> Result<Rows> {
    if seqs.is_empty() {
        return Ok(Rows::default());
    }
    let mut statement = tx.prepare_cached(
        "SELECT e.seq, e.besked_id, e.type_kode, e.occurred_at, e.beloeb
         FROM json_each(?1) AS j JOIN print_status_postal_event AS e ON e.seq = j.value
         ORDER BY e.seq, e.rowid",
    )?;
    let rows = statement
        .query_map([serde_json::to_string(seqs)?], |row| {
            (0..5).map(|index| row.get(index)).collect()
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Rows { rows })
}
