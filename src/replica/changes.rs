//! The change feed: every change to a letter, a status or a registration gets the next `seq` of
//! the `change` table in the transaction that makes it, one row per thing changed (its latest
//! change; a letter changed by three statuses is there once). A deletion (`prune`, `forget`,
//! `reprocess`) replaces the thing's row with a tombstone naming it by its keys only. `export`
//! reads the rows after a position in `seq` order, joined to the things' current rows.

use anyhow::{Result, bail};
use rusqlite::{OptionalExtension, Transaction, params};

use super::Store;

/// What a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Letter,
    Status,
    Registration,
    /// A message's own row (its envelope dropped, its kind changed by `reprocess`, or the
    /// message deleted). Not a feed of `export`: the PostgreSQL mirror follows it, new
    /// messages by their `seq`.
    Message,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Letter => "letter",
            Kind::Status => "status",
            Kind::Registration => "registration",
            Kind::Message => "message",
        }
    }

    /// The table of the thing and its key column (besides its number, the table's rowid).
    fn table(self) -> (&'static str, &'static str) {
        match self {
            Kind::Letter => ("letter", "message_uuid"),
            Kind::Status => ("print_status", "besked_id"),
            Kind::Registration => ("registration", "besked_id"),
            Kind::Message => ("message", "besked_id"),
        }
    }

    /// The kind whose things live in `table`, if any.
    pub(super) fn of_table(table: &str) -> Option<Kind> {
        [
            Kind::Letter,
            Kind::Status,
            Kind::Registration,
            Kind::Message,
        ]
        .into_iter()
        .find(|kind| kind.table().0 == table)
    }
}

/// Records that thing `id` of `kind` (a letter's `id`, a message's `seq`) now is as its row
/// says: its row in `change` moves to the next `seq`.
pub(super) fn changed(tx: &Transaction<'_>, kind: Kind, id: i64, key: &str) -> Result<()> {
    tx.prepare_cached("INSERT OR REPLACE INTO change (kind, id, key) VALUES (?1, ?2, ?3)")?
        .execute(params![kind.as_str(), id, key])?;
    Ok(())
}

/// Records a new status (`seq`, `besked_id`) and the letter it changed (`letter`,
/// `message_uuid`), the letter after it: the write path's every status. Two statements of one
/// row each, not one of two rows: a statement that writes several rows and may fail half-way
/// keeps a statement journal, a copy of every page it touches, which SQLite spills to a
/// temporary file and writes for every status of the transaction once one statement outgrew
/// 64 KiB: about 32 KiB of file writes per status, and 9 % of an import's time into an empty
/// replica, more into a large one.
pub(super) fn status_and_letter(
    tx: &Transaction<'_>,
    seq: i64,
    besked_id: &str,
    letter: i64,
    message_uuid: &str,
) -> Result<()> {
    changed(tx, Kind::Status, seq, besked_id)?;
    changed(tx, Kind::Letter, letter, message_uuid)
}

/// The key of thing `id` of `kind`, read from its row; none when there is no such row.
fn key_of(tx: &Transaction<'_>, kind: Kind, id: i64) -> Result<Option<String>> {
    let (table, key) = kind.table();
    Ok(tx
        .prepare_cached(&format!("SELECT {key} FROM {table} WHERE rowid = ?1"))?
        .query_row([id], |row| row.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

/// Records that thing `id` of `kind` changed, reading its key from its row (after a change
/// made in place, as `forget` masks a text).
pub(super) fn changed_in_place(tx: &Transaction<'_>, kind: Kind, id: i64) -> Result<()> {
    let key = key_of(tx, kind, id)?;
    if let Some(key) = key {
        changed(tx, kind, id, &key)?;
    }
    Ok(())
}

/// Records that thing `id` of `kind` is about to be deleted, at `at`: a tombstone with its key,
/// read from its row (nothing when there is no such row). Call before deleting the row. The
/// key is read first and written by a statement of one row, for the reason given at
/// [`status_and_letter`].
pub(super) fn deleting(tx: &Transaction<'_>, kind: Kind, id: i64, at: &str) -> Result<()> {
    let key = key_of(tx, kind, id)?;
    if let Some(key) = key {
        deleted(tx, kind, id, &key, at)?;
    }
    Ok(())
}

/// A tombstone for thing `id` of `kind` whose row is gone already, with its key.
pub(super) fn deleted(
    tx: &Transaction<'_>,
    kind: Kind,
    id: i64,
    key: &str,
    at: &str,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO change (kind, id, key, deleted_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![kind.as_str(), id, key, at])?;
    Ok(())
}

/// Deletes the tombstones of deletions before `before`; how many. Remembers the newest `seq`
/// deleted, so that a reader whose position is older learns that it missed deletions.
pub(super) fn prune_tombstones(tx: &Transaction<'_>, before: &str) -> Result<u64> {
    let newest: Option<i64> = tx
        .prepare_cached(
            "SELECT max(seq) FROM change WHERE deleted_at IS NOT NULL AND deleted_at < ?1",
        )?
        .query_row([before], |row| row.get(0))?;
    let Some(newest) = newest else {
        return Ok(0);
    };
    let deleted = tx
        .prepare_cached("DELETE FROM change WHERE deleted_at IS NOT NULL AND deleted_at < ?1")?
        .execute([before])?;
    tx.prepare_cached(
        "INSERT INTO change_pruned (id, through_seq) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET through_seq = max(through_seq, excluded.through_seq)",
    )?
    .execute([newest])?;
    Ok(deleted as u64)
}

/// One change as `export` gives it: its position, what it is about, and for a thing that
/// exists its current row's columns (`COLUMNS` of its kind), else when it was deleted.
#[derive(Debug)]
pub struct Change {
    pub seq: i64,
    pub id: i64,
    pub key: String,
    /// Set for a deletion.
    pub deleted_at: Option<String>,
    /// The thing's current columns, in the order of [`columns`]; empty for a deletion.
    pub values: Vec<rusqlite::types::Value>,
}

/// The columns `export` gives of a thing of `kind`, as the replica names them.
pub fn columns(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Letter => &[
            "message_uuid",
            "event",
            "outcome",
            "final",
            "kanal",
            "occurred_at",
            "first_seen_at",
            "final_at",
            "statuses",
            "fejl_kode",
            "fejl_tekst",
            "afsendelse_id",
            "transmission_id",
            "seq",
        ],
        Kind::Status => &[
            "besked_id",
            "message_uuid",
            "letter_id",
            "transmission_id",
            "message_id",
            "kanal",
            "status",
            "event",
            "event_uuid",
            "final",
            "outcome",
            "occurred_at",
            "fejl_kode",
            "fejl_tekst",
            "afsendelse_id",
            "forsendelse_id",
            "forsendelse_type_id",
            "bruger_navn",
            "enhed_tekst",
            "afsender_system_id",
            "correlation_id",
            "producer",
            "producer_uuid",
        ],
        Kind::Registration => &[
            "besked_id",
            "party",
            "party_type",
            "channel",
            "registered",
            "changed_at",
            "handling",
        ],
        Kind::Message => &[
            "besked_id",
            "beskedtype",
            "kind",
            "source",
            "received_at",
            "created_at",
            "transaktions_id",
            "producer_uuid",
            "origin",
            "envelope_pruned_at",
            "envelope_sha256",
        ],
    }
}

/// Where a reader at position `after` stands.
pub enum Position {
    /// It can read on.
    Current,
    /// Tombstones after its position were deleted (`[retention] deletions_days`): it missed
    /// deletions up to this `seq`, and must read everything again from 0.
    Missed(i64),
}

/// Where a reader at `after` stands, who knew that no deletion was skipped while tombstones
/// were deleted through `seen`, now that they are deleted through `through`. A reader that
/// started from 0 after tombstones were deleted missed nothing: the things were gone before it
/// read; one whose position fell behind tombstones deleted since did.
pub fn position(after: i64, seen: i64, through: i64) -> Position {
    if through > seen && after < through {
        Position::Missed(through)
    } else {
        Position::Current
    }
}

/// What a reader knows after reading through `last`: deletions through `through` cannot have
/// been skipped once its position is past them.
pub fn seen_after(last: i64, seen: i64, through: i64) -> i64 {
    if last >= through { through } else { seen }
}

/// The newest rowid an AUTOINCREMENT `table` has given out, deleted rows included.
fn issued(conn: &rusqlite::Connection, table: &str) -> Result<i64> {
    Ok(conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = ?1",
            [table],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

impl Store {
    /// How far tombstones were deleted: the newest `seq` of a deleted tombstone (0: none).
    pub fn pruned_through(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row(
                "SELECT through_seq FROM change_pruned WHERE id = 1",
                [],
                |row| row.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// The newest `seq` the change feed has given out (0: none yet): a position past it was
    /// not given out by this replica (one restored from an older backup, or another replica).
    pub fn change_issued(&self) -> Result<i64> {
        issued(&self.conn, "change")
    }

    /// The newest `message.seq` given out (0: none yet).
    pub fn message_issued(&self) -> Result<i64> {
        issued(&self.conn, "message")
    }

    /// Calls `each` with the changes of `kind` after `after`, in `seq` order, at most `limit`
    /// (0: all), from one snapshot of the replica; stops at the first error. How many.
    pub fn changes(
        &mut self,
        kind: Kind,
        after: i64,
        limit: u64,
        mut each: impl FnMut(&Change) -> Result<()>,
    ) -> Result<u64> {
        if after < 0 {
            bail!("a position is 0 or more, got {after}");
        }
        let (table, _) = kind.table();
        let columns: Vec<String> = columns(kind).iter().map(|c| format!("t.{c}")).collect();
        let tx = self.conn.transaction()?;
        let mut statement = tx.prepare(&format!(
            "SELECT c.seq, c.id, c.key, c.deleted_at, {} FROM change AS c
             LEFT JOIN {table} AS t ON t.rowid = c.id AND c.deleted_at IS NULL
             WHERE c.kind = ?1 AND c.seq > ?2 ORDER BY c.seq LIMIT ?3",
            columns.join(", ")
        ))?;
        let limit = if limit == 0 { -1 } else { limit as i64 };
        let mut rows = statement.query(params![kind.as_str(), after, limit])?;
        let mut count = 0;
        while let Some(row) = rows.next()? {
            let deleted_at: Option<String> = row.get(3)?;
            let values = if deleted_at.is_some() {
                Vec::new()
            } else {
                (4..4 + columns.len())
                    .map(|index| row.get(index))
                    .collect::<rusqlite::Result<_>>()?
            };
            each(&Change {
                seq: row.get(0)?,
                id: row.get(1)?,
                key: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
                deleted_at,
                values,
            })?;
            count += 1;
        }
        Ok(count)
    }

    /// The position kept under `name` for `kind`, and how far it knew tombstones deleted
    /// without a deletion skipped (a new cursor: at 0, knowing all).
    pub fn export_cursor(&self, name: &str, kind: Kind) -> Result<(i64, i64)> {
        let kept: Option<(String, i64, i64)> = self
            .conn
            .query_row(
                "SELECT kind, seq, pruned_seen FROM export_cursor WHERE name = ?1",
                [name],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()?;
        match kept {
            Some((other, _, _)) if other != kind.as_str() => bail!(
                "cursor `{name}` follows {other}, not {}; give each feed a cursor of its own",
                kind.as_str()
            ),
            Some((_, seq, seen)) => Ok((seq, seen)),
            None => Ok((0, self.pruned_through()?)),
        }
    }

    /// Moves cursor `name` (of `kind`) to `seq`, knowing deletions through `seen`, at `now`.
    pub fn set_export_cursor(
        &mut self,
        name: &str,
        kind: Kind,
        (seq, seen): (i64, i64),
        now: &str,
    ) -> Result<()> {
        self.write(|tx, _| {
            tx.execute(
                "INSERT INTO export_cursor (name, kind, seq, updated_at, pruned_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET seq = excluded.seq,
                     updated_at = excluded.updated_at, pruned_seen = excluded.pruned_seen",
                params![name, kind.as_str(), seq, now, seen],
            )?;
            Ok(())
        })
    }
}
