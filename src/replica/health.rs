//! What monitoring reads: per source, the last run and the last successful one; refused
//! messages, overdue letters and letters by outcome.

use anyhow::Result;
use rusqlite::params;
use serde::Serialize;

use super::Store;

/// One source's health, from `cursor` and `run`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceHealth {
    pub source: String,
    /// Start and end of the newest run (end: None while running or when killed).
    pub last_started_at: Option<String>,
    pub last_ended_at: Option<String>,
    /// `running`, `ok`, `failed`, `interrupted` or `killed`.
    pub last_status: Option<String>,
    /// End of the newest run that succeeded.
    pub last_success_at: Option<String>,
    /// Runs in a row that failed, up to now.
    pub failed_runs: i64,
    /// The error of the newest run, if it failed.
    pub last_error: Option<String>,
    /// Totals since the source was first seen.
    pub messages: i64,
    pub duplicates: i64,
    pub rejected: i64,
}

/// The outcomes a letter can have: its current status's, or `pending` before a final one.
pub const OUTCOMES: [&str; 4] = ["delivered", "failed", "pending", "recalled"];

impl Store {
    /// Every source's health, by source. Needs schema 4.
    pub fn source_health(&self) -> Result<Vec<SourceHealth>> {
        let mut statement = self.conn.prepare(
            "SELECT c.source, r.started_at, r.ended_at, r.status,
                 (SELECT max(s.ended_at) FROM run AS s WHERE s.source = c.source
                      AND s.status = 'ok'),
                 c.failed_runs, c.messages, c.duplicates, c.rejected, c.run_error
             FROM cursor AS c
             LEFT JOIN run AS r ON r.id = (SELECT q.id FROM run AS q WHERE q.source = c.source
                 ORDER BY q.started_at DESC, q.id DESC LIMIT 1)
             ORDER BY c.source",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(SourceHealth {
                source: row.get(0)?,
                last_started_at: row.get(1)?,
                last_ended_at: row.get(2)?,
                last_status: row.get(3)?,
                last_success_at: row.get(4)?,
                failed_runs: row.get(5)?,
                messages: row.get(6)?,
                duplicates: row.get(7)?,
                rejected: row.get(8)?,
                last_error: row.get(9)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Refused messages received at or after `since` that are still refused (not taken in
    /// since by `reprocess`).
    pub fn rejected_since(&self, since: &str) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM rejected WHERE received_at >= ?1 AND resolved_seq IS NULL",
            [since],
            |row| row.get(0),
        )?)
    }

    /// Letters without a final status first seen before `before`.
    pub fn overdue_letters(&self, before: &str) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM letter WHERE final = 0 AND first_seen_at < ?1",
            params![before],
            |row| row.get(0),
        )?)
    }

    /// The beskedtypes of the messages kept as `other` (no `[types.*]` names them), with how
    /// many there are, most first.
    pub fn other_beskedtypes(&self) -> Result<Vec<(String, i64)>> {
        let mut statement = self.conn.prepare(
            "SELECT coalesce(beskedtype, '(none)'), count(*) FROM message WHERE kind = 'other'
             GROUP BY beskedtype ORDER BY 2 DESC, 1",
        )?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Letters by the outcome of their current status (`pending` for no final status yet).
    pub fn letters_by_outcome(&self) -> Result<Vec<(String, i64)>> {
        let mut statement = self.conn.prepare(
            "SELECT coalesce(outcome, 'pending'), count(*) FROM letter GROUP BY 1 ORDER BY 1",
        )?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        let found: Vec<(String, i64)> = rows.collect::<rusqlite::Result<_>>()?;
        // Every outcome there is, with 0 when no letter has it: a series that vanishes while
        // it is zero breaks alerts and graphs.
        let mut all: Vec<(String, i64)> = OUTCOMES
            .iter()
            .map(|outcome| {
                let count = found
                    .iter()
                    .find(|(name, _)| name == outcome)
                    .map_or(0, |(_, count)| *count);
                (outcome.to_string(), count)
            })
            .collect();
        all.extend(
            found
                .into_iter()
                .filter(|(name, _)| !OUTCOMES.contains(&name.as_str())),
        );
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;

    #[test]
    fn a_refusal_reprocess_took_in_is_no_longer_counted() {
        let store = Store::open_in_memory().expect("store");
        store
            .connection()
            .execute_batch(
                "INSERT INTO message (seq, besked_id, kind, source, received_at, envelope)
                     VALUES (7, 'b', 'other', 'import', '2026-11-28T10:00:00.000Z', x'00');
                 INSERT INTO rejected (source, received_at, reason, raw_sha256, raw_size,
                     raw_complete, raw, resolved_seq)
                 VALUES ('import', '2026-11-28T10:00:00.000Z', 'bad', 'x', 1, 1, x'00', NULL),
                        ('import', '2026-11-28T10:00:00.000Z', 'bad', 'y', 1, 1, x'01', 7),
                        ('import', '2026-11-26T10:00:00.000Z', 'bad', 'z', 1, 1, x'02', NULL);",
            )
            .expect("rows");
        assert_eq!(
            store
                .rejected_since("2026-11-27T10:00:00.000Z")
                .expect("count"),
            1
        );
    }

    #[test]
    fn every_outcome_is_counted_also_when_no_letter_has_it() {
        let store = Store::open_in_memory().expect("store");
        assert_eq!(
            store.letters_by_outcome().expect("outcomes"),
            [
                ("delivered".to_string(), 0),
                ("failed".to_string(), 0),
                ("pending".to_string(), 0),
                ("recalled".to_string(), 0)
            ]
        );
    }
}

/// Who follows the change feed: its newest position, the cursors of `export --cursor` and the
/// PostgreSQL mirrors, each with how many changes it has not read yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Followers {
    /// The newest `change.seq` (0: no change yet).
    pub through_seq: i64,
    pub cursors: Vec<FeedCursor>,
    pub mirrors: Vec<MirrorFollower>,
}

/// A cursor of `export --cursor NAME`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedCursor {
    pub name: String,
    /// `letter`, `status` or `registration`.
    pub kind: String,
    pub seq: i64,
    /// Changes of its kind after its position.
    pub behind: i64,
    pub updated_at: String,
}

/// A PostgreSQL mirror as this replica last saw it (`mirror_state`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MirrorFollower {
    pub installation: String,
    pub change_seq: i64,
    /// Changes after its position.
    pub behind: i64,
    pub mirrored_at: Option<String>,
    pub attempted_at: String,
    /// Why its last step failed; None after a success.
    pub error: Option<String>,
}

impl Store {
    /// The feed's followers. Needs schema 9.
    pub fn followers(&self) -> Result<Followers> {
        let through_seq =
            self.conn
                .query_row("SELECT coalesce(max(seq), 0) FROM change", [], |row| {
                    row.get(0)
                })?;
        let mut cursors = self.conn.prepare(
            "SELECT name, kind, seq, updated_at,
                 (SELECT count(*) FROM change AS c WHERE c.seq > e.seq AND c.kind = e.kind)
             FROM export_cursor AS e ORDER BY name",
        )?;
        let cursors = cursors
            .query_map([], |row| {
                Ok(FeedCursor {
                    name: row.get(0)?,
                    kind: row.get(1)?,
                    seq: row.get(2)?,
                    updated_at: row.get(3)?,
                    behind: row.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut mirrors = self.conn.prepare(
            "SELECT installation, change_seq, mirrored_at, attempted_at, error,
                 (SELECT count(*) FROM change AS c WHERE c.seq > m.change_seq)
             FROM mirror_state AS m ORDER BY installation",
        )?;
        let mirrors = mirrors
            .query_map([], |row| {
                Ok(MirrorFollower {
                    installation: row.get(0)?,
                    change_seq: row.get(1)?,
                    mirrored_at: row.get(2)?,
                    attempted_at: row.get(3)?,
                    error: row.get(4)?,
                    behind: row.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Followers {
            through_seq,
            cursors,
            mirrors,
        })
    }
}
