//! The write path: a batch of received messages in one transaction. New messages with their
//! derived rows (print status, the letter's current state, registration), duplicates counted,
//! refusals kept with their raw bytes, the events they cause, and the source's cursor.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Store;
use super::changes::{self, Kind};
use super::outbox::record_event;
use crate::config::EventRules;
use crate::decode::message::{Detail, Message, Rejection};
use crate::decode::payload::post_status::PostStatus;

/// Envelopes larger than this are written into their row in place, not bound as parameters.
pub(super) const IN_PLACE_BYTES: usize = 256 * 1024;

/// Refused messages up to this size are kept whole in `rejected.raw`.
pub const RAW_KEEP_MAX: u64 = 256 * 1024 * 1024;

/// Of a refused message larger than [`RAW_KEEP_MAX`], `rejected.raw` keeps this many first
/// bytes; `raw_size` and `raw_sha256` still describe the whole message.
pub const RAW_PREFIX_BYTES: u64 = 1024 * 1024;

/// The bytes of something received.
#[derive(Debug)]
pub enum Raw {
    Bytes(Vec<u8>),
    /// An open file too large to hold in memory: streamed into its `rejected` row.
    File {
        file: File,
        path: PathBuf,
        len: u64,
    },
}

impl Raw {
    /// How many bytes this holds in memory.
    pub fn held_bytes(&self) -> usize {
        match self {
            Raw::Bytes(bytes) => bytes.len(),
            Raw::File { .. } => 0,
        }
    }
}

/// One thing received, already decoded: the unit a batch is made of.
#[derive(Debug)]
pub struct Incoming {
    pub raw: Raw,
    /// Where it came from: a file path, or AMQP queue and message-id.
    pub origin: String,
    pub decoded: std::result::Result<Message, Rejection>,
}

/// What became of one [`Incoming`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    New,
    Duplicate,
    /// Refused: stored in `rejected`.
    Rejected,
    /// Its BeskedId was already stored with other bytes: this copy is stored in `rejected`.
    Conflict {
        seq: i64,
    },
}

/// Counts of one batch or run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub new: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.new += other.new;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
    }

    pub fn total(&self) -> u64 {
        self.new + self.duplicates + self.rejected
    }
}

/// The refusal of a copy whose BeskedId is stored already with other bytes.
pub(super) fn reused_id(besked_id: &str, seq: i64) -> Rejection {
    Rejection::new(
        &format!(
            "BeskedId {} is already stored (message seq {seq}) with different content; this copy is kept in `rejected` and not used",
            crate::mask::cap(besked_id, 100)
        ),
        Some(besked_id.to_owned()),
    )
}

impl Incoming {
    /// For an item that was refused, its besked id (if known) and the reason, for the log.
    pub fn refusal(&self, outcome: &Outcome) -> Option<(Option<String>, String)> {
        match (outcome, &self.decoded) {
            (Outcome::Rejected, Err(rejection)) => {
                Some((rejection.besked_id.clone(), rejection.reason().to_owned()))
            }
            (Outcome::Conflict { seq }, Ok(message)) => {
                let rejection = reused_id(&message.besked_id, *seq);
                Some((rejection.besked_id.clone(), rejection.reason().to_owned()))
            }
            _ => None,
        }
    }
}

/// Records the events one stored item causes: its status made its letter failed, or it was
/// refused.
pub(super) fn events_of(
    tx: &rusqlite::Transaction<'_>,
    rules: &EventRules,
    source: &str,
    item: &Incoming,
    outcome: &Outcome,
) -> Result<()> {
    match (outcome, &item.decoded) {
        (Outcome::New, Ok(message)) => {
            let Detail::PostStatus(status) = &message.detail else {
                return Ok(());
            };
            let Some(uuid) = &status.message_uuid else {
                return Ok(());
            };
            if status.outcome != Some("failed") {
                return Ok(());
            }
            // Only if this status is now the letter's current one.
            let current = tx
                .prepare_cached(
                    "SELECT 1 FROM letter WHERE message_uuid = ?1
                     AND seq = (SELECT seq FROM message WHERE besked_id = ?2)",
                )?
                .exists(params![uuid, message.besked_id])?;
            if current {
                record_event(
                    tx,
                    rules,
                    &format!("letter_failed:{uuid}"),
                    "letter_failed",
                    serde_json::json!({
                        "message_uuid": uuid,
                        "occurred_at": status.occurred_at,
                        "kanal": status.kanal,
                        "fejl_kode": status.fejl_kode,
                        "fejl_tekst": status.fejl_tekst,
                        "besked_id": message.besked_id,
                        "afsendelse_id": status.afsendelse_id,
                    }),
                    status.occurred_at.as_deref(),
                )?;
            }
        }
        (Outcome::Rejected | Outcome::Conflict { .. }, _) => {
            let (id, reason, received_at): (i64, String, String) = tx
                .prepare_cached(
                    "SELECT id, reason, received_at FROM rejected WHERE id = last_insert_rowid()",
                )?
                .query_row([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
            record_event(
                tx,
                rules,
                &format!("message_rejected:{id}"),
                "message_rejected",
                serde_json::json!({ "id": id, "reason": reason, "source": source }),
                Some(&received_at),
            )?;
        }
        _ => {}
    }
    Ok(())
}

/// What [`insert_message`] did.
pub(super) enum Inserted {
    /// Stored as a new message with this seq.
    New(i64),
    /// The BeskedId is stored already with the same bytes.
    Same(i64),
    /// The BeskedId is stored already, with other bytes.
    Differs(i64),
}

/// Inserts a message and its derived rows, unless its BeskedId is stored already.
pub(super) fn insert_message(
    tx: &rusqlite::Transaction<'_>,
    message: &Message,
    source: &str,
    received_at: &str,
    origin: Option<&str>,
    envelope: &[u8],
) -> Result<Inserted> {
    // A large envelope is written into its row in place rather than bound as a parameter
    // (which SQLite copies); `envelope` is the row's last column, so the room made for it is
    // not filled in memory first.
    let in_place = envelope.len() > IN_PLACE_BYTES;
    let mut insert = tx.prepare_cached(
        "INSERT INTO message (besked_id, beskedtype, kind, source, received_at, created_at,
             transaktions_id, producer_uuid, origin, envelope)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (besked_id) DO NOTHING",
    )?;
    let fields = params![
        message.besked_id,
        message.beskedtype,
        message.kind.as_str(),
        source,
        received_at,
        message.created_at,
        message.transaktions_id,
        message.producer_uuid,
        origin,
    ];
    let inserted = if in_place {
        let mut all = fields.to_vec();
        let room = rusqlite::blob::ZeroBlob(envelope.len() as u64);
        all.push(&room);
        insert.execute(&*all)?
    } else {
        let mut all = fields.to_vec();
        all.push(&envelope);
        insert.execute(&*all)?
    };
    if inserted > 0 && in_place {
        let seq = tx.last_insert_rowid();
        tx.blob_open("main", "message", "envelope", seq, false)?
            .write_all(envelope)?;
    }
    if inserted == 0 {
        return already_stored(tx, &message.besked_id, envelope);
    }
    let seq = tx.last_insert_rowid();
    take_in_refused_copies(tx, &message.besked_id)?;
    // The letter first: its number goes into the status's row.
    let letter_id = match &message.detail {
        Detail::PostStatus(status) => note_letter(tx, seq, status)?,
        _ => None,
    };
    insert_detail(tx, seq, message, letter_id)?;
    // The feed: the new status or registration, and the letter it changed.
    match &message.detail {
        Detail::PostStatus(status) => match (letter_id, &status.message_uuid) {
            (Some(letter), Some(uuid)) => {
                changes::status_and_letter(tx, seq, &message.besked_id, letter, uuid)?;
            }
            _ => changes::changed(tx, Kind::Status, seq, &message.besked_id)?,
        },
        Detail::Registration(_) => {
            changes::changed(tx, Kind::Registration, seq, &message.besked_id)?;
        }
        Detail::None => {}
    }
    Ok(Inserted::New(seq))
}

/// What a message whose BeskedId is stored already is: a copy of the stored one (the same
/// document), or other content under its id.
fn already_stored(tx: &Transaction<'_>, besked_id: &str, envelope: &[u8]) -> Result<Inserted> {
    let (seq, pruned, fingerprint): (i64, bool, Option<String>) = tx
        .prepare_cached(
            "SELECT seq, envelope_pruned_at IS NOT NULL, envelope_sha256 FROM message
             WHERE besked_id = ?1",
        )?
        .query_row([besked_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    if pruned {
        // Its envelope was dropped (retention, `forget`); its fingerprint tells a copy of it
        // from other content. Dropped before the fingerprint was kept (schema 4): taken for a
        // copy, since keeping it would store again what was erased.
        return Ok(match fingerprint {
            Some(stored) if stored != envelope_fingerprint(envelope) => Inserted::Differs(seq),
            _ => Inserted::Same(seq),
        });
    }
    let stored = read_blob(tx, "message", "envelope", seq)?;
    Ok(if same_document(&stored, envelope) {
        Inserted::Same(seq)
    } else {
        Inserted::Differs(seq)
    })
}

/// Copies of a new message refused before (a copy cut off on the way, then the whole one)
/// are taken in by it; other content under its id stays refused. Both ids are in their
/// canonical form (a UUID in lower case), so the index of unresolved ids finds them. Asked
/// first with a plain lookup: the join's plan depends on the bound id, so SQLite compiles it
/// again each time it runs, which would cost every new message more than storing it.
fn take_in_refused_copies(tx: &Transaction<'_>, besked_id: &str) -> Result<()> {
    let refused_before = tx
        .prepare_cached(
            "SELECT 1 FROM rejected WHERE besked_id = ?1 AND resolved_seq IS NULL LIMIT 1",
        )?
        .exists([besked_id])?;
    if refused_before {
        tx.prepare_cached(concat!(
            "UPDATE rejected SET resolved_seq = m.seq FROM message AS m
             WHERE rejected.besked_id = ?1 AND rejected.besked_id IS NOT NULL
                 AND rejected.resolved_seq IS NULL AND ",
            copy_of_stored!()
        ))?
        .execute([besked_id])?;
    }
    Ok(())
}

/// Brings the letter of a newly stored status (seq `seq`, not stored yet) up to date: the
/// status becomes the letter's current one if it sorts first under the rule of
/// `print_status_latest` (final before non-final, then the newest `occurred_at`, then the latest
/// arrival); the count and the earliest `occurred_at` always take it in. A new letter gets the
/// next number. The letter's number (`letter.id`), for the status's row; none without a
/// `message_uuid`. Must agree with [`REBUILD_LETTERS`].
///
/// [`REBUILD_LETTERS`]: super::schema::REBUILD_LETTERS
pub(super) fn note_letter(
    tx: &rusqlite::Transaction<'_>,
    seq: i64,
    status: &PostStatus,
) -> Result<Option<i64>> {
    let Some(uuid) = &status.message_uuid else {
        return Ok(None);
    };
    let current: Option<(i64, i64, bool, Option<String>)> = tx
        .prepare_cached("SELECT id, seq, final, occurred_at FROM letter WHERE message_uuid = ?1")?
        .query_row([uuid], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    let final_at = status
        .is_final
        .then_some(status.occurred_at.as_deref())
        .flatten();
    // The status as the letter's current one: ?1 to ?12 of both statements below.
    let mut fields: Vec<&dyn rusqlite::ToSql> = vec![
        &uuid,
        &seq,
        &status.event,
        &status.outcome,
        &status.is_final,
        &status.kanal,
        &status.occurred_at,
        &final_at,
        &status.fejl_kode,
        &status.fejl_tekst,
        &status.afsendelse_id,
        &status.transmission_id,
    ];
    let Some((id, current_seq, current_final, current_at)) = current else {
        tx.prepare_cached(
            "INSERT INTO letter (message_uuid, seq, event, outcome, final, kanal, occurred_at,
                 first_seen_at, final_at, statuses, fejl_kode, fejl_tekst, afsendelse_id,
                 transmission_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, 1, ?9, ?10, ?11, ?12)",
        )?
        .execute(&*fields)?;
        return Ok(Some(tx.last_insert_rowid()));
    };
    // Text times compare as SQLite compares them (bytewise), and a missing time sorts first,
    // as NULL does.
    let newer = (status.is_final, status.occurred_at.as_deref(), seq)
        > (current_final, current_at.as_deref(), current_seq);
    if newer {
        tx.prepare_cached(
            "UPDATE letter SET seq = ?2, event = ?3, outcome = ?4, final = ?5, kanal = ?6,
                 occurred_at = ?7, final_at = ?8, fejl_kode = ?9, fejl_tekst = ?10,
                 afsendelse_id = ?11, transmission_id = ?12, statuses = statuses + 1,
                 first_seen_at = CASE WHEN ?7 < first_seen_at OR first_seen_at IS NULL
                     THEN coalesce(?7, first_seen_at) ELSE first_seen_at END
             WHERE id = ?13",
        )?
        .execute(&*{
            fields.push(&id);
            fields
        })?;
    } else {
        tx.prepare_cached(
            "UPDATE letter SET statuses = statuses + 1,
                 first_seen_at = CASE WHEN ?2 < first_seen_at OR first_seen_at IS NULL
                     THEN coalesce(?2, first_seen_at) ELSE first_seen_at END
             WHERE id = ?1",
        )?
        .execute(params![id, status.occurred_at])?;
    }
    Ok(Some(id))
}

/// True when two envelopes are the same bytes, apart from a byte-order mark and white space
/// before or after the document (a copy re-sent with a trailing newline is the same message).
pub(super) fn same_document(a: &[u8], b: &[u8]) -> bool {
    trim_document(a) == trim_document(b)
}

/// What of an envelope counts when copies are compared: without a byte order mark and the
/// whitespace around the document.
pub(super) fn trim_document(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |at| at + 1);
    &bytes[start..end]
}

/// The fingerprint kept of a dropped envelope: hex SHA-256 of [`trim_document`], so that
/// copies [`same_document`] takes for the same have the same fingerprint.
pub(super) fn envelope_fingerprint(envelope: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(trim_document(envelope)))
}

/// Replaces a message's derived rows with those of `message`; true when they changed.
pub(super) fn replace_detail(
    tx: &rusqlite::Transaction<'_>,
    seq: i64,
    message: &Message,
) -> Result<bool> {
    // The rows before, as one comparable text, to report only real changes.
    let snapshot = |tx: &rusqlite::Transaction<'_>| -> Result<String> {
        Ok(tx
            .prepare_cached(
                "SELECT coalesce((SELECT json_array(message_uuid, transmission_id, message_id, kanal,
                     status, event, event_uuid, final, outcome, occurred_at, fejl_kode, fejl_tekst,
                     afsendelse_id, forsendelse_id, forsendelse_type_id, bruger_navn, enhed_tekst,
                     afsender_system_id, correlation_id, producer, producer_uuid)
                     FROM print_status WHERE seq = ?1), '')
                 || coalesce((SELECT group_concat(json_array(type_kode, occurred_at, beloeb))
                     FROM print_status_postal_event WHERE seq = ?1), '')
                 || coalesce((SELECT json_array(party, party_type, channel, registered, changed_at,
                     handling) FROM registration WHERE seq = ?1), '')",
            )?
            .query_row([seq], |row| row.get(0))?)
    };
    // Which of a status and a registration the message is derived into.
    let derived = |tx: &rusqlite::Transaction<'_>| -> Result<[(Kind, bool); 2]> {
        let (status, registration) = tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM print_status WHERE seq = ?1),
                     EXISTS (SELECT 1 FROM registration WHERE seq = ?1)",
            )?
            .query_row([seq], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok([(Kind::Status, status), (Kind::Registration, registration)])
    };
    let before = snapshot(tx)?;
    let had = derived(tx)?;
    for table in ["print_status_postal_event", "print_status", "registration"] {
        tx.prepare_cached(&format!("DELETE FROM {table} WHERE seq = ?1"))?
            .execute([seq])?;
    }
    // The letters are made again from the statuses afterwards (`REBUILD_LETTERS`), which sets
    // the status's letter.
    insert_detail(tx, seq, message, None)?;
    let changed = snapshot(tx)? != before;
    if changed {
        let now = crate::time::now_utc();
        for ((kind, was), (_, is)) in had.into_iter().zip(derived(tx)?) {
            if is {
                changes::changed(tx, kind, seq, &message.besked_id)?;
            } else if was {
                changes::deleted(tx, kind, seq, &message.besked_id, &now)?;
            }
        }
    }
    Ok(changed)
}

/// Reads one blob without holding anything else in memory.
pub(super) fn read_blob(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    column: &str,
    row: i64,
) -> Result<Vec<u8>> {
    let blob = tx.blob_open("main", table, column, row, true)?;
    let mut bytes = vec![0; blob.len()];
    blob.read_at_exact(&mut bytes, 0)?;
    Ok(bytes)
}

/// A message's envelope, unless it was dropped already (or there is no such message).
pub(super) fn read_envelope(tx: &rusqlite::Transaction<'_>, seq: i64) -> Result<Option<Vec<u8>>> {
    let present: bool = tx
        .prepare_cached(
            "SELECT count(*) > 0 FROM message WHERE seq = ?1 AND envelope_pruned_at IS NULL",
        )?
        .query_row([seq], |row| row.get(0))?;
    if !present {
        return Ok(None);
    }
    read_blob(tx, "message", "envelope", seq).map(Some)
}

/// Inserts a message's derived rows; `letter_id` is a status's letter (`letter.id`).
pub(super) fn insert_detail(
    tx: &rusqlite::Transaction<'_>,
    seq: i64,
    message: &Message,
    letter_id: Option<i64>,
) -> Result<()> {
    match &message.detail {
        Detail::None => {}
        Detail::PostStatus(status) => {
            tx.prepare_cached(
                "INSERT INTO print_status (seq, besked_id, message_uuid, transmission_id,
                     message_id, kanal, status, event, event_uuid, final, outcome, occurred_at,
                     fejl_kode, fejl_tekst, afsendelse_id, forsendelse_id, forsendelse_type_id,
                     bruger_navn, enhed_tekst, afsender_system_id, correlation_id, producer,
                     producer_uuid, letter_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                     ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
            )?
            .execute(params![
                seq,
                message.besked_id,
                status.message_uuid,
                status.transmission_id,
                status.message_id,
                status.kanal,
                status.status,
                status.event,
                status.event_uuid,
                status.is_final,
                status.outcome,
                status.occurred_at,
                status.fejl_kode,
                status.fejl_tekst,
                status.afsendelse_id,
                status.forsendelse_id,
                status.forsendelse_type_id,
                status.bruger_navn,
                status.enhed_tekst,
                status.afsender_system_id,
                status.correlation_id,
                status.producer,
                status.producer_uuid,
                letter_id,
            ])?;
            for event in &status.postal_events {
                tx.prepare_cached(
                    "INSERT INTO print_status_postal_event (seq, besked_id, type_kode,
                         occurred_at, beloeb) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    seq,
                    message.besked_id,
                    event.type_kode,
                    event.occurred_at,
                    event.beloeb
                ])?;
            }
        }
        Detail::Registration(registration) => {
            tx.prepare_cached(
                "INSERT INTO registration (seq, besked_id, party, party_type, channel, registered,
                     changed_at, handling) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                seq,
                message.besked_id,
                registration.party,
                registration.party_type,
                registration.channel.as_str(),
                registration.registered,
                registration.changed_at,
                registration.handling,
            ])?;
        }
    }
    Ok(())
}

/// Stores a rejection with its raw bytes; bytes already rejected before count as a duplicate.
/// A file is streamed into its row, never held in memory; of a message over [`RAW_KEEP_MAX`]
/// only the first [`RAW_PREFIX_BYTES`] are kept (`raw_complete = 0`).
pub(super) fn insert_rejected(
    tx: &rusqlite::Transaction<'_>,
    source: &str,
    received_at: &str,
    item: &Incoming,
    rejection: &Rejection,
) -> Result<Outcome> {
    let (sha256, size) = fingerprint_of(&item.raw)?;
    let seen = tx
        .prepare_cached("SELECT 1 FROM rejected WHERE raw_sha256 = ?1 LIMIT 1")?
        .exists([&sha256])?;
    if seen {
        return Ok(Outcome::Duplicate);
    }
    let kept = if size > RAW_KEEP_MAX {
        RAW_PREFIX_BYTES
    } else {
        size
    };
    // The row is made with room for the bytes, which are then written into it in place, so a
    // large message is never copied in memory (nor read whole, for a file).
    // `raw` is the row's last column: SQLite then makes room for it without filling that room
    // in memory first.
    tx.prepare_cached(
        "INSERT INTO rejected (source, received_at, reason, raw_sha256, besked_id, origin,
             raw_size, raw_complete, raw)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        source,
        received_at,
        rejection.reason(),
        sha256,
        rejection.besked_id,
        item.origin,
        size as i64,
        kept == size,
        rusqlite::blob::ZeroBlob(kept),
    ])?;
    let rowid = tx.last_insert_rowid();
    write_raw(tx, rowid, &item.raw, kept)?;
    // A copy of a message stored already, cut off on the way, is taken in by it as one that
    // arrives before it would be (see `insert_message`); it is still counted as refused.
    if rejection.besked_id.is_some() {
        tx.prepare_cached(concat!(
            "UPDATE rejected SET resolved_seq = m.seq FROM message AS m
             WHERE rejected.id = ?1 AND ",
            copy_of_stored!()
        ))?
        .execute([rowid])?;
    }
    Ok(Outcome::Rejected)
}

/// The SHA-256 (hex) and size of refused bytes, read from the file for a large one.
fn fingerprint_of(raw: &Raw) -> Result<(String, u64)> {
    Ok(match raw {
        Raw::Bytes(bytes) => (hex(&Sha256::digest(bytes)), bytes.len() as u64),
        Raw::File { file, path, len } => {
            let mut hasher = Sha256::new();
            let copied = copy_file(file, *len, &mut hasher)
                .with_context(|| format!("failed to read `{}`", path.display()))?;
            if copied != *len {
                bail!(
                    "`{}` changed size while being read ({copied} of {len} bytes); import it again",
                    path.display()
                );
            }
            (hex(&hasher.finalize()), *len)
        }
    })
}

/// Writes the first `kept` bytes of refused `raw` into the room made for them in row `rowid`
/// of `rejected`, in place.
fn write_raw(tx: &Transaction<'_>, rowid: i64, raw: &Raw, kept: u64) -> Result<()> {
    let mut blob = tx.blob_open("main", "rejected", "raw", rowid, false)?;
    match raw {
        Raw::Bytes(bytes) => blob.write_all(&bytes[..kept as usize])?,
        Raw::File { file, path, .. } => {
            let copied = copy_file(file, kept, &mut blob).with_context(|| {
                format!("failed to copy `{}` into the database", path.display())
            })?;
            if copied != kept {
                bail!(
                    "`{}` changed size while being read ({copied} of {kept} bytes); import it again",
                    path.display()
                );
            }
        }
    }
    Ok(())
}

/// Copies the first `len` bytes of `file` (from its start, whatever its position) to `sink`.
pub(super) fn copy_file(file: &File, len: u64, sink: &mut dyn Write) -> std::io::Result<u64> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    while offset < len {
        let want = buffer.len().min((len - offset) as usize);
        let read = match file.read_at(&mut buffer[..want], offset) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        sink.write_all(&buffer[..read])?;
        offset += read as u64;
    }
    Ok(offset)
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl Store {
    /// Writes a batch in one transaction: new messages with their derived rows, duplicates
    /// counted, rejections with their raw bytes, the events they cause, and the source's
    /// cursor and run. Returns what became of each item, in order. Nothing is written if it
    /// fails.
    pub fn write_batch(
        &mut self,
        source: &str,
        received_at: &str,
        batch: &[Incoming],
    ) -> Result<(Vec<Outcome>, Counts)> {
        self.write(|tx, events| {
            let mut outcomes = Vec::with_capacity(batch.len());
            let mut counts = Counts::default();
            let mut last: Option<(i64, &str)> = None;
            for item in batch {
                let outcome = write_item(tx, source, received_at, item, &mut last)?;
                if let Some(rules) = &events {
                    events_of(tx, rules, source, item, &outcome)?;
                }
                match outcome {
                    Outcome::New => counts.new += 1,
                    Outcome::Duplicate => counts.duplicates += 1,
                    Outcome::Rejected | Outcome::Conflict { .. } => counts.rejected += 1,
                }
                outcomes.push(outcome);
            }
            advance_cursor(tx, source, received_at, last, counts)?;
            Ok((outcomes, counts))
        })
    }
}

/// Writes one item: a new message (`last` then names it), a duplicate, or a refusal.
fn write_item<'a>(
    tx: &Transaction<'_>,
    source: &str,
    received_at: &str,
    item: &'a Incoming,
    last: &mut Option<(i64, &'a str)>,
) -> Result<Outcome> {
    let message = match &item.decoded {
        Ok(message) => message,
        Err(rejection) => return insert_rejected(tx, source, received_at, item, rejection),
    };
    let Raw::Bytes(bytes) = &item.raw else {
        bail!("a decoded message must arrive as bytes");
    };
    Ok(
        match insert_message(tx, message, source, received_at, Some(&item.origin), bytes)? {
            Inserted::New(seq) => {
                *last = Some((seq, &message.besked_id));
                Outcome::New
            }
            Inserted::Same(_) => Outcome::Duplicate,
            Inserted::Differs(seq) => {
                let rejection = reused_id(&message.besked_id, seq);
                match insert_rejected(tx, source, received_at, item, &rejection)? {
                    Outcome::Rejected => Outcome::Conflict { seq },
                    other => other,
                }
            }
        },
    )
}

/// Moves the source's cursor past a batch (`last`: its last new message), and adds the
/// batch's counts to the source's run so far, so that a run that never ends (killed, or
/// stopped by a full disk) still says what it stored.
fn advance_cursor(
    tx: &Transaction<'_>,
    source: &str,
    received_at: &str,
    last: Option<(i64, &str)>,
    counts: Counts,
) -> Result<()> {
    tx.execute(
        "INSERT INTO cursor (source, last_seq, last_besked_id, last_received_at, messages,
             duplicates, rejected)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (source) DO UPDATE SET
             last_seq = coalesce(?2, last_seq),
             last_besked_id = coalesce(?3, last_besked_id),
             last_received_at = ?4,
             messages = messages + ?5,
             duplicates = duplicates + ?6,
             rejected = rejected + ?7",
        params![
            source,
            last.map(|(seq, _)| seq),
            last.map(|(_, id)| id),
            received_at,
            counts.new as i64,
            counts.duplicates as i64,
            counts.rejected as i64
        ],
    )?;
    tx.prepare_cached(
        "UPDATE run SET messages = messages + ?2, duplicates = duplicates + ?3,
             rejected = rejected + ?4
         WHERE source = ?1 AND status = 'running'",
    )?
    .execute(params![
        source,
        counts.new as i64,
        counts.duplicates as i64,
        counts.rejected as i64
    ])?;
    Ok(())
}
