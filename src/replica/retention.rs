//! Retention (`prune`) and erasure (`forget`) of personal data.
//!
//! Both write in bounded batches, each its own short transaction, so that a running `sync` is
//! never kept waiting for long. Every connection has `secure_delete` on, so deleted content is
//! overwritten in the file rather than left in free space; at the end the WAL is checkpointed
//! and truncated, so that the erased bytes are gone from `-wal` as well.

use anyhow::{Result, bail};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};
use serde::Serialize;
use sha2::Digest as _;

use super::Store;
use super::changes::{self, Kind};
use crate::config::RetentionConfig;
use crate::progress::Counter;

/// Rows per write transaction.
const BATCH: usize = 500;

/// What `prune` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Messages whose envelope bytes were dropped (`envelope_pruned_at` set).
    pub envelopes: u64,
    /// Letters deleted, with their statuses and messages.
    pub letters: u64,
    pub statuses: u64,
    /// Superseded registration rows deleted, with their messages.
    pub registrations: u64,
    pub rejected: u64,
    pub runs: u64,
    /// Tombstones of the change feed deleted.
    pub tombstones: u64,
    /// PostForespoerg's answers deleted.
    pub lookups: u64,
    /// Whether the WAL could be truncated (false: a reader held it; the next checkpoint will).
    pub wal_truncated: bool,
}

impl Pruned {
    /// One line for the operator.
    pub fn line(&self) -> String {
        format!(
            "pruned: {} envelopes dropped, {} letters deleted ({} statuses), {} superseded registrations, {} refused messages, {} runs, {} tombstones, {} lookups{}",
            self.envelopes,
            self.letters,
            self.statuses,
            self.registrations,
            self.rejected,
            self.runs,
            self.tombstones,
            self.lookups,
            if self.wal_truncated {
                ""
            } else {
                "; another process has the replica open, so deleted pages could not yet be written over in the database file: they will be at the next checkpoint (run `beskedhent prune` again when it is idle)"
            }
        )
    }
}

/// What `forget` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Forgotten {
    pub registrations: u64,
    /// Messages whose envelope named the party: bytes dropped, row kept (`envelope_pruned_at`).
    pub envelopes: u64,
    pub rejected: u64,
    pub notifications: u64,
    /// PostForespoerg's answers about the party.
    pub lookups: u64,
    /// Texts in which the number was replaced by asterisks: run errors, origins, free text of
    /// statuses.
    pub texts: u64,
    pub wal_truncated: bool,
}

/// A CPR or CVR number as `forget` takes it: digits only, and the forms it is searched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// 10 digits (CPR) or 8 digits (CVR), as `registration.party` holds it.
    pub number: String,
    /// Byte strings whose presence means a text names the party.
    pub forms: Vec<String>,
}

impl Party {
    /// Reads `2512489996`, `251248-9996`, `urn:oio:cpr-nr:2512489996`, `12345678` or
    /// `urn:oio:cvr-nr:12345678`.
    pub fn parse(text: &str) -> Result<Party> {
        let trimmed = text.trim();
        let lower = trimmed.to_ascii_lowercase();
        let bare = ["urn:oio:cpr-nr:", "urn:oio:cvr-nr:", "urn:oio:cvr:"]
            .iter()
            .find_map(|prefix| lower.strip_prefix(prefix))
            .unwrap_or(&lower);
        let number: String = bare
            .chars()
            .filter(|c| !matches!(c, '-' | ' ' | '/' | '.'))
            .collect();
        if !number.bytes().all(|b| b.is_ascii_digit()) || !matches!(number.len(), 8 | 10) {
            bail!(
                "`{}` is not a CPR number (10 digits, DDMMYYSSSS or DDMMYY-SSSS) or a CVR number (8 digits)",
                crate::mask::cap(&crate::mask::for_log(trimmed), 40)
            );
        }
        if number.len() == 10 {
            let day: u32 = number[..2].parse().unwrap_or(0);
            let month: u32 = number[2..4].parse().unwrap_or(0);
            // Replacement numbers add 60 to the day.
            if !matches!(day, 1..=31 | 61..=91) || !(1..=12).contains(&month) {
                bail!(
                    "`{}` is not a CPR number: its first six digits must be a date (DDMMYY)",
                    crate::mask::cap(&crate::mask::for_log(trimmed), 40)
                );
            }
        }
        let forms = if number.len() == 10 {
            // Every way of writing it that the log masking recognises.
            let (d, m, y, serial) = (&number[..2], &number[2..4], &number[4..6], &number[6..]);
            let mut forms = vec![number.clone()];
            // The separators, and the escapes that write the non-ASCII ones (in either case
            // of their hex digits), as a file name or a quoted error may hold them.
            let escaped = crate::mask::ESCAPED_SEPARATORS.iter().flat_map(|escape| {
                let upper = format!(
                    "\\{}",
                    escape[1..].to_ascii_uppercase().replacen('U', "u", 1)
                );
                [escape.to_string(), upper]
            });
            let separators: Vec<String> = crate::mask::SERIAL_SEPARATORS
                .iter()
                .map(|separator| separator.to_string())
                .chain(escaped)
                .collect();
            for separator in &separators {
                forms.push(format!("{d}{m}{y}{separator}{serial}"));
                forms.push(format!("{d}.{m}.{y}{separator}{serial}"));
                forms.push(format!("{d}-{m}-{y}{separator}{serial}"));
            }
            forms.push(format!("{d}.{m}.{y}{serial}"));
            forms.push(format!("{d}-{m}-{y}{serial}"));
            forms.sort_unstable();
            forms.dedup();
            forms
        } else {
            // Eight digits alone also occur inside UUIDs and other numbers (and the
            // municipality's own CVR is in every envelope): only its URN forms count.
            vec![format!("cvr-nr:{number}"), format!("cvr:{number}")]
        };
        Ok(Party { number, forms })
    }
}

/// Refused messages are searched in windows of this many bytes (overlapping by
/// [`WINDOW_OVERLAP`]), so that one of any size is searched with bounded memory.
const WINDOW: usize = 1024 * 1024;
const WINDOW_OVERLAP: usize = 64 * 1024;

impl Party {
    /// Whether `bytes` (an envelope, or a window of a refused message) name the party: as
    /// received, as the XML reads (references, comments, CDATA), or in any base64 in them,
    /// decoded (see [`super::search`]). `every_alignment` for bytes that may be broken or cut.
    fn named_in(&self, bytes: &[u8], every_alignment: bool) -> bool {
        super::search::any_view(bytes, every_alignment, &mut |view| self.named_in_text(view))
    }

    /// Whether `text` holds one of the forms, not within a longer run of digits, in one pass:
    /// every form ends with the number's last four digits, so only where those occur are the
    /// forms compared.
    fn named_in_text(&self, text: &[u8]) -> bool {
        self.occurrences(text).next().is_some()
    }

    /// Where the forms occur in `text`, as byte ranges in order (a form found is skipped
    /// over), each neither preceded nor followed by an ASCII digit.
    fn occurrences<'a>(&'a self, text: &'a [u8]) -> impl Iterator<Item = (usize, usize)> + 'a {
        let tail = &self.number.as_bytes()[self.number.len() - 4..];
        let mut from = 0;
        std::iter::from_fn(move || {
            while from + tail.len() <= text.len() {
                // Only where the tail's first digit is are the rest compared.
                let skip = text[from..=text.len() - tail.len()]
                    .iter()
                    .position(|&b| b == tail[0])?;
                let at = from + skip;
                from = at + 1;
                if &text[at..at + tail.len()] != tail {
                    continue;
                }
                let end = at + tail.len();
                if text.get(end).is_some_and(u8::is_ascii_digit) {
                    continue;
                }
                let before = &text[..end];
                let start = self
                    .forms
                    .iter()
                    .filter(|form| before.ends_with(form.as_bytes()))
                    .map(|form| end - form.len())
                    .find(|&start| start == 0 || !text[start - 1].is_ascii_digit());
                if let Some(start) = start {
                    from = end;
                    return Some((start, end));
                }
            }
            None
        })
    }

    /// `text` with the number's digits replaced by `*` wherever it occurs (its separators
    /// kept), each occurrence followed by `#` and `tag`; `None` when it does not occur.
    fn masked(&self, text: &str, tag: &str) -> Option<String> {
        let mut out = String::with_capacity(text.len() + tag.len() + 1);
        let mut done = 0;
        for (start, end) in self.occurrences(text.as_bytes()) {
            out.push_str(&text[done..start]);
            out.extend(
                text[start..end]
                    .chars()
                    .map(|c| if c.is_ascii_digit() { '*' } else { c }),
            );
            out.push('#');
            out.push_str(tag);
            done = end;
        }
        (done > 0).then(|| {
            out.push_str(&text[done..]);
            out
        })
    }
}

/// A tag that tells one `forget` run's masks from every other's, so that identifiers that
/// named different people (or the same text written before) never become equal: eight hex
/// digits from the system's random source, unrelated to the number.
fn mask_tag() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 4];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let seed = now.as_nanos() ^ u128::from(std::process::id()) << 64;
        let digest = sha2::Sha256::digest(seed.to_le_bytes());
        bytes.copy_from_slice(&digest[..4]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Messages whose envelope is older than `?1` and not dropped yet, at most `?2`: two ranges of
/// the partial index (an expression index would keep envelopes from being written in place).
const OLD_ENVELOPES: &str = "SELECT seq FROM (
         SELECT seq FROM message WHERE envelope_pruned_at IS NULL AND created_at < ?1
         UNION ALL
         SELECT seq FROM message WHERE envelope_pruned_at IS NULL
             AND created_at IS NULL AND received_at < ?1)
     LIMIT ?2";

/// Registrations changed before `?1` that a later one of the same party and channel replaced.
const SUPERSEDED_REGISTRATIONS: &str = "SELECT r.seq FROM registration AS r WHERE r.changed_at < ?1
         AND EXISTS (SELECT 1 FROM registration AS s
             WHERE s.party = r.party AND s.channel = r.channel
               AND (s.changed_at > r.changed_at
                    OR (s.changed_at = r.changed_at AND s.seq > r.seq)))
     LIMIT ?2";

/// Refused messages that arrived before `?1`.
const OLD_REFUSALS: &str = "SELECT id FROM rejected WHERE received_at < ?1 LIMIT ?2";

/// Runs started before `?1`; the newest run and the newest successful run of each source stay,
/// so monitoring still knows when a source last succeeded.
const OLD_RUNS: &str = "SELECT id FROM run WHERE started_at < ?1 AND status <> 'running'
         AND id NOT IN (SELECT max(id) FROM run GROUP BY source)
         AND id NOT IN (SELECT max(id) FROM run WHERE status = 'ok' GROUP BY source)
     LIMIT ?2";

/// PostForespoerg's answers older than `?1`.
const OLD_LOOKUPS: &str = "SELECT id FROM registration_lookup WHERE asked_at < ?1 LIMIT ?2";

/// Deletes one batch of letters whose final status is older than `before`, with their
/// statuses, messages and events; how many letters went.
fn delete_final_letters(
    tx: &rusqlite::Transaction<'_>,
    before: &str,
    statuses: &mut u64,
    resolved: &mut u64,
) -> Result<u64> {
    let letters: Vec<(i64, String)> = tx
        .prepare_cached(
            "SELECT id, message_uuid FROM letter WHERE occurred_at < ?1 AND final = 1 LIMIT ?2",
        )?
        .query_map(params![before, BATCH as i64], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut deleted_ids = Vec::new();
    let now = crate::time::now_utc();
    for (id, uuid) in &letters {
        let seqs: Vec<i64> = tx
            .prepare_cached("SELECT seq FROM print_status WHERE letter_id = ?1")?
            .query_map([id], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        *statuses += seqs.len() as u64;
        for seq in seqs {
            *resolved += delete_message(tx, seq, &mut deleted_ids)?;
        }
        changes::deleting(tx, Kind::Letter, *id, &now)?;
        tx.prepare_cached("DELETE FROM letter WHERE id = ?1")?
            .execute([id])?;
        tx.prepare_cached("DELETE FROM notification WHERE key IN (?1, ?2)")?
            .execute(params![
                format!("letter_failed:{uuid}"),
                format!("letter_overdue:{uuid}")
            ])?;
    }
    *resolved += delete_refused_under(tx, &deleted_ids)?;
    Ok(letters.len() as u64)
}

impl Store {
    /// Applies `[retention]`: each kind of data older than its limit is deleted or dropped.
    pub fn prune(&mut self, retention: &RetentionConfig, progress: &Counter) -> Result<Pruned> {
        self.named(|store| store.prune_in_batches(retention, progress))
    }

    fn prune_in_batches(
        &mut self,
        retention: &RetentionConfig,
        progress: &Counter,
    ) -> Result<Pruned> {
        let now = chrono::Utc::now();
        let cutoff = |days: u32| {
            (days > 0)
                .then(|| crate::time::format_utc(now - chrono::Duration::days(i64::from(days))))
        };
        let stamp = crate::time::format_utc(now);
        let mut pruned = Pruned::default();
        // Refused copies of the messages deleted (see [`delete_message`]).
        let mut resolved = 0;
        let conn = &mut self.conn;
        if let Some(before) = cutoff(retention.envelope_days) {
            pruned.envelopes = batches(conn, progress, |tx| {
                let seqs = select_ids(tx, OLD_ENVELOPES, &before)?;
                drop_envelopes(tx, &seqs, &stamp, &mut resolved)
            })?;
        }
        if let Some(before) = cutoff(retention.status_days) {
            let mut statuses = 0;
            pruned.letters = batches(conn, progress, |tx| {
                delete_final_letters(tx, &before, &mut statuses, &mut resolved)
            })?;
            pruned.statuses = statuses;
        }
        if let Some(before) = cutoff(retention.registration_history_days) {
            pruned.registrations = batches(conn, progress, |tx| {
                let seqs = select_ids(tx, SUPERSEDED_REGISTRATIONS, &before)?;
                let mut deleted_ids = Vec::new();
                for &seq in &seqs {
                    resolved += delete_message(tx, seq, &mut deleted_ids)?;
                }
                resolved += delete_refused_under(tx, &deleted_ids)?;
                Ok(seqs.len() as u64)
            })?;
        }
        if let Some(before) = cutoff(retention.rejected_days) {
            pruned.rejected += batches(conn, progress, |tx| {
                let ids = select_ids(tx, OLD_REFUSALS, &before)?;
                delete_ids(tx, "DELETE FROM rejected WHERE id = ?1", &ids)
            })?;
        }
        if let Some(before) = cutoff(retention.run_days) {
            pruned.runs = batches(conn, progress, |tx| {
                let ids = select_ids(tx, OLD_RUNS, &before)?;
                delete_ids(tx, "DELETE FROM run WHERE id = ?1", &ids)
            })?;
        }
        if let Some(before) = cutoff(retention.deletions_days) {
            pruned.tombstones = write(conn, |tx| changes::prune_tombstones(tx, &before))?;
        }
        if let Some(before) = cutoff(retention.lookup_days) {
            pruned.lookups = batches(conn, progress, |tx| {
                let ids = select_ids(tx, OLD_LOOKUPS, &before)?;
                delete_ids(tx, "DELETE FROM registration_lookup WHERE id = ?1", &ids)
            })?;
        }
        pruned.rejected += resolved;
        // Also when nothing went this time: an earlier run may have left deleted pages to a
        // checkpoint that a reader held up. Briefly: `sync` runs this after every pass.
        pruned.wal_truncated = truncate_wal(&mut self.conn, std::time::Duration::from_secs(2))?;
        Ok(pruned)
    }

    /// Erases one CPR or CVR number from the replica: its registrations (and their messages'
    /// envelopes), every envelope, refused message and notification that names it, and the
    /// number in run errors, origins and the free text of statuses.
    pub fn forget(&mut self, party: &Party, progress: &Counter) -> Result<Forgotten> {
        self.named(|store| store.forget_in_batches(party, progress))
    }

    fn forget_in_batches(&mut self, party: &Party, progress: &Counter) -> Result<Forgotten> {
        let stamp = crate::time::now_utc();
        let mut forgotten = Forgotten::default();
        // Which rows name the party: found first, outside any write transaction (a scan of
        // every envelope), then changed in batches.
        let mut envelopes = Vec::new();
        {
            // Every envelope is read once, one at a time, in the table's order (not through
            // the partial index on age, which would visit rows out of order).
            if progress.is_shown() {
                let kept: i64 = self.conn.query_row(
                    "SELECT count(*) FROM message WHERE envelope_pruned_at IS NULL",
                    [],
                    |row| row.get(0),
                )?;
                progress.set_total(kept.unsigned_abs());
            }
            let mut statement = self.conn.prepare(
                "SELECT seq, envelope FROM message NOT INDEXED WHERE envelope_pruned_at IS NULL",
            )?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                progress.add(1);
                let bytes = row.get_ref(1)?.as_blob().unwrap_or_default();
                if party.named_in(bytes, false) {
                    envelopes.push(row.get::<_, i64>(0)?);
                }
            }
        }
        let registrations: Vec<i64> = {
            let mut statement = self
                .conn
                .prepare("SELECT seq FROM registration WHERE party = ?1")?;
            let rows = statement.query_map([&party.number], |row| row.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        envelopes.extend(&registrations);
        envelopes.sort_unstable();
        envelopes.dedup();
        let rejected = self.rejected_naming(party)?;
        let notifications = self.notifications_naming(party)?;
        for chunk in registrations.chunks(BATCH) {
            forgotten.registrations += write(&mut self.conn, |tx| {
                for &seq in chunk {
                    changes::deleting(tx, Kind::Registration, seq, &stamp)?;
                }
                delete_ids(tx, "DELETE FROM registration WHERE seq = ?1", chunk)
            })?;
        }
        for chunk in envelopes.chunks(BATCH) {
            forgotten.envelopes += write(&mut self.conn, |tx| {
                drop_envelopes(tx, chunk, &stamp, &mut forgotten.rejected)
            })?;
        }
        for chunk in rejected.chunks(BATCH) {
            forgotten.rejected += write(&mut self.conn, |tx| {
                delete_ids(tx, "DELETE FROM rejected WHERE id = ?1", chunk)
            })?;
        }
        for chunk in notifications.chunks(BATCH) {
            forgotten.notifications += write(&mut self.conn, |tx| {
                delete_ids(tx, "DELETE FROM notification WHERE id = ?1", chunk)
            })?;
        }
        forgotten.lookups = write(&mut self.conn, |tx| {
            Ok(tx
                .prepare_cached("DELETE FROM registration_lookup WHERE party = ?1")?
                .execute([&party.number])? as u64)
        })?;
        forgotten.texts = self.mask_texts(party)?;
        forgotten.wal_truncated = truncate_wal(&mut self.conn, std::time::Duration::from_secs(5))?;
        Ok(forgotten)
    }

    /// The notifications whose payload or last error names the party.
    fn notifications_naming(&self, party: &Party) -> Result<Vec<i64>> {
        let mut statement = self
            .conn
            .prepare("SELECT id, payload, last_error FROM notification")?;
        let mut rows = statement.query([])?;
        let mut found = Vec::new();
        while let Some(row) = rows.next()? {
            if any_text(row, 1..=2, |text| party.named_in(text, false)) {
                found.push(row.get(0)?);
            }
        }
        Ok(found)
    }

    /// The refused messages that name the party: in their reason, origin or besked id, or in
    /// their bytes, read in overlapping windows (see [`Party::named_in`]), since they may be
    /// broken anywhere and as large as [`super::RAW_KEEP_MAX`].
    fn rejected_naming(&self, party: &Party) -> Result<Vec<i64>> {
        let mut found = Vec::new();
        let rows: Vec<(i64, i64, bool)> = {
            let mut statement = self
                .conn
                .prepare("SELECT id, length(raw), reason, origin, besked_id FROM rejected")?;
            let mut rows = statement.query([])?;
            let mut all = Vec::new();
            while let Some(row) = rows.next()? {
                let named = any_text(row, 2..=4, |text| party.named_in_text(text));
                all.push((
                    row.get(0)?,
                    row.get::<_, Option<i64>>(1)?.unwrap_or(0),
                    named,
                ));
            }
            all
        };
        let mut window = Vec::new();
        for (id, size, named) in rows {
            let size = usize::try_from(size).unwrap_or(0);
            let named = named || {
                let blob = self
                    .conn
                    .blob_open(rusqlite::MAIN_DB, "rejected", "raw", id, true)?;
                let mut start = 0;
                let mut named = false;
                while start < size && !named {
                    let end = size.min(start + WINDOW);
                    window.resize(end - start, 0);
                    blob.read_at_exact(&mut window, start)?;
                    named = party.named_in(&window, true);
                    if end == size {
                        break;
                    }
                    start = end - WINDOW_OVERLAP;
                }
                named
            };
            if named {
                found.push(id);
            }
        }
        Ok(found)
    }

    /// Replaces the number in every text column of every table (identifiers too: a sender may
    /// have put it in a letter's id), found by one scan per table outside any write
    /// transaction, then changed in one transaction, so that an identifier is never masked in
    /// one table and not yet in another (a scan inside it would hold up `sync`). Its digits
    /// become asterisks and its separators stay, so two texts that differed only in how they
    /// wrote the number still differ; each mask is followed by this run's tag, so that it
    /// never equals a text masked by another run (see [`mask_tag`]).
    fn mask_texts(&mut self, party: &Party) -> Result<u64> {
        let found = texts_naming(&self.conn, party)?;
        if found.is_empty() {
            return Ok(0);
        }
        let tag = mask_tag();
        write(&mut self.conn, |tx| {
            let mut texts = 0;
            for (table, columns, rowids) in &found {
                let mut read = tx.prepare(&format!(
                    "SELECT {} FROM \"{table}\" WHERE rowid = ?1",
                    columns.join(", ")
                ))?;
                for &rowid in rowids {
                    let masked = mask_row(tx, &mut read, party, &tag, (table, columns), rowid)?;
                    texts += u64::from(masked);
                }
            }
            Ok(texts)
        })
    }
}

/// A table, its text columns, and the rows of it whose texts name the party.
type Named = (String, Vec<String>, Vec<i64>);

/// Every row, table by table, with a text column that names the party (also only encoded:
/// base64 copied from a payload into an error text, say).
fn texts_naming(conn: &Connection, party: &Party) -> Result<Vec<Named>> {
    let mut found = Vec::new();
    for (table, columns) in text_columns(conn)? {
        let mut statement = conn.prepare(&format!(
            "SELECT rowid, {} FROM \"{table}\"",
            columns.join(", ")
        ))?;
        let mut rows = statement.query([])?;
        let mut named = Vec::new();
        while let Some(row) = rows.next()? {
            let mut hit = false;
            for index in 1..=columns.len() {
                if let rusqlite::types::ValueRef::Text(text) = row.get_ref(index)? {
                    hit |= party.named_in(text, false);
                }
            }
            if hit {
                named.push(row.get(0)?);
            }
        }
        if !named.is_empty() {
            found.push((table, columns, named));
        }
    }
    Ok(found)
}

/// Masks the party's number in every text column of row `rowid` (read with `read`); true if
/// anything changed.
fn mask_row(
    tx: &rusqlite::Transaction<'_>,
    read: &mut rusqlite::Statement<'_>,
    party: &Party,
    tag: &str,
    (table, columns): (&str, &[String]),
    rowid: i64,
) -> Result<bool> {
    let values: Option<Vec<Option<String>>> = read
        .query_row([rowid], |row| {
            (0..columns.len())
                .map(|index| match row.get_ref(index)? {
                    rusqlite::types::ValueRef::Text(text) => {
                        Ok(Some(String::from_utf8_lossy(text).into_owned()))
                    }
                    _ => Ok(None),
                })
                .collect()
        })
        .optional()?;
    let Some(values) = values else {
        return Ok(false);
    };
    let mut changed = false;
    for (column, value) in columns.iter().zip(values) {
        let Some(masked) = value.and_then(|text| {
            party.masked(&text, tag).or_else(|| {
                // Named only encoded: nothing to mask in place, so the text goes whole
                // (unique, as identifiers must stay).
                party
                    .named_in(text.as_bytes(), false)
                    .then(|| format!("[erased by forget]#{tag}-{rowid}"))
            })
        }) else {
            continue;
        };
        tx.prepare_cached(&format!(
            "UPDATE \"{table}\" SET {column} = ?2 WHERE rowid = ?1"
        ))?
        .execute(params![rowid, masked])
        .map_err(|error| {
            anyhow::anyhow!(
                "could not replace the number in {table}.{column}: {error}; nothing of this step was changed, run `beskedhent forget` again"
            )
        })?;
        changed = true;
    }
    // A letter, status or registration changed in place is a change of the feed (after its
    // texts, so that its tombstone-to-be or row carries the masked key).
    if let (true, Some(kind)) = (changed, Kind::of_table(table)) {
        changes::changed_in_place(tx, kind, rowid)?;
    }
    Ok(changed)
}

/// Whether `test` holds for the text in any of the `columns` of `row` (other values never do).
fn any_text(
    row: &rusqlite::Row<'_>,
    columns: std::ops::RangeInclusive<usize>,
    mut test: impl FnMut(&[u8]) -> bool,
) -> bool {
    columns.into_iter().any(|index| {
        matches!(row.get_ref(index), Ok(rusqlite::types::ValueRef::Text(text)) if test(text))
    })
}

/// Every table of the replica with its text columns (declared `TEXT`, or with no type), as
/// the schema says now, so a column added later is searched too.
fn text_columns(conn: &Connection) -> Result<Vec<(String, Vec<String>)>> {
    let tables: Vec<String> = {
        let mut statement = conn.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
             ORDER BY name",
        )?;
        let rows = statement.query_map([], |row| row.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut found = Vec::new();
    for table in tables {
        let mut statement =
            conn.prepare("SELECT name, upper(type) FROM pragma_table_info(?1) ORDER BY cid")?;
        let columns: Vec<String> = statement
            .query_map([&table], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?
            .filter_map(|column| match column {
                Ok((name, kind)) if kind.contains("TEXT") || kind.is_empty() => {
                    Some(Ok(format!("\"{}\"", name.replace('"', "\"\""))))
                }
                Ok(_) => None,
                Err(error) => Some(Err(error)),
            })
            .collect::<rusqlite::Result<_>>()?;
        if !columns.is_empty() {
            found.push((table, columns));
        }
    }
    Ok(found)
}

/// Runs `step` in its own transaction until it reports 0 rows; returns the sum.
fn batches(
    conn: &mut Connection,
    progress: &Counter,
    mut step: impl FnMut(&rusqlite::Transaction<'_>) -> Result<u64>,
) -> Result<u64> {
    let mut total = 0;
    loop {
        let done = write(conn, &mut step)?;
        if done == 0 {
            return Ok(total);
        }
        total += done;
        progress.add(done);
    }
}

/// Runs `step` in one write transaction.
fn write(
    conn: &mut Connection,
    step: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<u64>,
) -> Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let done = step(&tx)?;
    tx.commit()?;
    Ok(done)
}

/// Ids from a query taking the cutoff (`?1`) and the batch size (`?2`).
fn select_ids(tx: &rusqlite::Transaction<'_>, sql: &str, before: &str) -> Result<Vec<i64>> {
    let mut statement = tx.prepare_cached(sql)?;
    let rows = statement.query_map(params![before, BATCH as i64], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Deletes each id with `sql` (one parameter); returns how many rows went.
fn delete_ids(tx: &rusqlite::Transaction<'_>, sql: &str, ids: &[i64]) -> Result<u64> {
    let mut statement = tx.prepare_cached(sql)?;
    let mut deleted = 0;
    for id in ids {
        deleted += statement.execute(params_from_iter([id]))? as u64;
    }
    Ok(deleted)
}

/// Replaces the envelope of each message by no bytes, and records when and its fingerprint
/// (so that a later copy with other content is still told apart). The refused copies of the
/// same content go too (taken in by `reprocess`, or refused before the same bytes were stored,
/// also with another byte order mark or white space around them, or their ids in another case):
/// they would keep what was dropped. Returns how many envelopes were dropped; adds the
/// refused rows deleted to `refused`.
fn drop_envelopes(
    tx: &rusqlite::Transaction<'_>,
    seqs: &[i64],
    stamp: &str,
    refused: &mut u64,
) -> Result<u64> {
    let mut statement = tx.prepare_cached(
        "UPDATE message SET envelope = zeroblob(0), envelope_pruned_at = ?2,
             envelope_sha256 = ?3
         WHERE seq = ?1 AND envelope_pruned_at IS NULL",
    )?;
    let mut dropped = 0;
    // Lower-case BeskedId → fingerprints and the largest envelope, for the refused copies
    // under those ids.
    let mut by_id: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut largest = 0;
    for &seq in seqs {
        let Some(envelope) = super::write::read_envelope(tx, seq)? else {
            continue;
        };
        let fingerprint = super::write::envelope_fingerprint(&envelope);
        *refused += delete_same_bytes(tx, seq, &envelope, &fingerprint)?;
        let id: String = tx
            .prepare_cached("SELECT besked_id FROM message WHERE seq = ?1")?
            .query_row([seq], |row| row.get(0))?;
        by_id
            .entry(id.to_lowercase())
            .or_default()
            .push(folded_fingerprint(&envelope));
        largest = largest.max(envelope.len());
        let changed = statement.execute(params![seq, stamp, fingerprint])?;
        if changed > 0 {
            changes::changed(tx, Kind::Message, seq, &id)?;
        }
        dropped += changed as u64;
    }
    if by_id.is_empty() {
        return Ok(dropped);
    }
    // One pass over the refused rows under those ids, no larger than the envelopes and what
    // a byte order mark and white space add.
    let ids = serde_json::to_string(&by_id.keys().collect::<Vec<_>>())?;
    let candidates: Vec<(i64, String)> = {
        let mut statement = tx.prepare_cached(
            "SELECT id, lower(besked_id) FROM rejected
             WHERE lower(besked_id) IN (SELECT value FROM json_each(?1)) AND raw_size <= ?2",
        )?;
        let rows = statement.query_map(params![ids, largest as i64 + 64 * 1024], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (id, besked_id) in candidates {
        let raw = super::write::read_blob(tx, "rejected", "raw", id)?;
        let fingerprint = folded_fingerprint(&raw);
        if by_id
            .get(&besked_id)
            .is_some_and(|fingerprints| fingerprints.contains(&fingerprint))
        {
            *refused += tx
                .prepare_cached("DELETE FROM rejected WHERE id = ?1")?
                .execute([id])? as u64;
        }
    }
    Ok(dropped)
}

/// The fingerprint of an envelope's content with ASCII letters in one case (after the byte
/// order mark and white space around it are taken off): a refused copy that wrote its ids in
/// another case is the same message.
fn folded_fingerprint(envelope: &[u8]) -> String {
    super::write::hex(&sha2::Sha256::digest(
        super::write::trim_document(envelope).to_ascii_lowercase(),
    ))
}

/// Deletes the refused rows that hold the bytes of message `seq`: those `reprocess` took in as
/// it, and those with the same bytes (as received, or without a byte order mark and the white
/// space around them). Returns how many went.
/// `fingerprint` is the envelope's [`super::envelope_fingerprint`].
fn delete_same_bytes(
    tx: &rusqlite::Transaction<'_>,
    seq: i64,
    envelope: &[u8],
    fingerprint: &str,
) -> Result<u64> {
    let mut deleted = tx
        .prepare_cached("DELETE FROM rejected WHERE resolved_seq = ?1")?
        .execute([seq])?;
    let exact = super::write::hex(&sha2::Sha256::digest(envelope));
    for sha in [exact.as_str(), fingerprint] {
        deleted += tx
            .prepare_cached("DELETE FROM rejected WHERE raw_sha256 = ?1")?
            .execute([sha])?;
    }
    Ok(deleted as u64)
}

/// Deletes one message and everything derived from it, and the refused rows that hold its
/// bytes (see [`delete_same_bytes`]; kept, they would count as refused again and `reprocess`
/// would bring the message back). Returns how many refused rows went; adds the message's
/// BeskedId to `deleted_ids` (see [`delete_refused_under`]).
fn delete_message(
    tx: &rusqlite::Transaction<'_>,
    seq: i64,
    deleted_ids: &mut Vec<String>,
) -> Result<u64> {
    let refused = match super::write::read_envelope(tx, seq)? {
        Some(envelope) => delete_same_bytes(
            tx,
            seq,
            &envelope,
            &super::write::envelope_fingerprint(&envelope),
        )?,
        None => tx
            .prepare_cached("DELETE FROM rejected WHERE resolved_seq = ?1")?
            .execute([seq])? as u64,
    };
    if let Some(id) = tx
        .prepare_cached("SELECT besked_id FROM message WHERE seq = ?1")?
        .query_row([seq], |row| row.get::<_, String>(0))
        .optional()?
    {
        deleted_ids.push(id);
    }
    let now = crate::time::now_utc();
    changes::deleting(tx, Kind::Status, seq, &now)?;
    changes::deleting(tx, Kind::Registration, seq, &now)?;
    changes::deleting(tx, Kind::Message, seq, &now)?;
    for sql in [
        "DELETE FROM print_status_postal_event WHERE seq = ?1",
        "DELETE FROM print_status WHERE seq = ?1",
        "DELETE FROM registration WHERE seq = ?1",
        "DELETE FROM message WHERE seq = ?1",
    ] {
        tx.prepare_cached(sql)?.execute([seq])?;
    }
    Ok(refused)
}

/// Deletes the refused rows under the BeskedIds of deleted messages, in any case: copies of
/// them refused before they were stored, or other content sent under their ids. Kept,
/// `reprocess` would bring back a message under an id that retention deleted. One pass over
/// `rejected` for a batch.
fn delete_refused_under(tx: &rusqlite::Transaction<'_>, ids: &[String]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let ids = serde_json::to_string(&ids.iter().map(|id| id.to_lowercase()).collect::<Vec<_>>())?;
    let deleted = tx
        .prepare_cached(
            "DELETE FROM rejected WHERE lower(besked_id) IN (SELECT value FROM json_each(?1))",
        )?
        .execute([ids])?;
    Ok(deleted as u64)
}

/// Checkpoints the WAL into the database and truncates it, waiting at most `patience` for
/// readers to finish; false if one kept it from completing.
fn truncate_wal(conn: &mut Connection, patience: std::time::Duration) -> Result<bool> {
    conn.busy_timeout(patience)?;
    let busy = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
        row.get::<_, i64>(0)
    });
    let path = std::path::PathBuf::from(conn.path().unwrap_or_default());
    super::busy::wait_for_writers(conn, &path)?;
    Ok(busy? == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_found_and_masked_however_its_separator_is_written() {
        let party = Party::parse("010170-1234").expect("valid");
        for text in [
            "0101701234",
            "x0101701234y",
            "010170\u{a0}1234",
            r"esc-010170\u00a01234.xml",
            r"esc-010170\u00A01234.xml",
            r"010170\u{2013}1234",
            "01.01.70-1234",
        ] {
            assert!(party.named_in_text(text.as_bytes()), "{text}");
            let masked = party.masked(text, "0badcafe").expect(text);
            assert!(
                !masked.contains("1234") && masked.contains("#0badcafe"),
                "{masked}"
            );
        }
        for text in ["01017012345", "10101701234", "0101701235"] {
            assert!(!party.named_in_text(text.as_bytes()), "{text}");
        }
    }
}
