//! Runs and cursors: each run of a source is a `run` row from its start; its end, with counts
//! and error, is written with the source's `cursor` row; and the counts `status` reads.

use anyhow::Result;
use rusqlite::params;
use serde::Serialize;

use super::Store;
use super::outbox::record_event;
use super::write::Counts;

/// How a run ended, as written to `cursor.run_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Ok,
    Failed,
    Interrupted,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// How a run ended, for [`Store::end_run`].
#[derive(Debug, Clone, Copy)]
pub struct RunEnd<'a> {
    pub ended_at: &'a str,
    pub status: RunStatus,
    pub error: Option<&'a str>,
    /// What the run stored.
    pub counts: Counts,
}

/// One `cursor` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CursorRow {
    pub source: String,
    pub last_seq: Option<i64>,
    pub last_besked_id: Option<String>,
    pub last_received_at: Option<String>,
    pub messages: i64,
    pub duplicates: i64,
    pub rejected: i64,
    pub run_started_at: Option<String>,
    pub run_ended_at: Option<String>,
    pub run_status: Option<String>,
    pub run_error: Option<String>,
}

/// Row counts of the main tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TableCounts {
    pub message: i64,
    pub rejected: i64,
    pub print_status: i64,
    pub registration: i64,
}

impl Store {
    /// Marks the start of a run of `source` by `command` (`sync`, `daemon`, `import`); returns
    /// the run's id in `run`. A run of the same source still marked `running` ended without
    /// recording it (killed, power loss): it is marked `killed`.
    pub fn begin_run(&mut self, source: &str, command: &str, started_at: &str) -> Result<i64> {
        self.write(|tx, _| {
            tx.execute(
                "UPDATE run SET status = 'killed' WHERE source = ?1 AND status = 'running'",
                [source],
            )?;
            tx.execute(
                "INSERT INTO cursor (source, run_started_at, run_ended_at, run_status, run_error)
                 VALUES (?1, ?2, NULL, 'running', NULL)
                 ON CONFLICT (source) DO UPDATE SET run_started_at = ?2, run_ended_at = NULL,
                     run_status = 'running', run_error = NULL",
                params![source, started_at],
            )?;
            tx.execute(
                "INSERT INTO run (source, command, started_at, status)
                 VALUES (?1, ?2, ?3, 'running')",
                params![source, command, started_at],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Marks the end of run `run` of `source`, with what it stored.
    pub fn end_run(&mut self, run: i64, source: &str, end: RunEnd<'_>) -> Result<()> {
        let RunEnd {
            ended_at,
            status,
            error,
            counts,
        } = end;
        self.write(|tx, events| {
            let failed = status == RunStatus::Failed;
            let error = error.map(|text| crate::mask::cap(text, 4096).into_owned());
            tx.execute(
                "UPDATE cursor SET run_ended_at = ?2, run_status = ?3, run_error = ?4,
                     failed_runs = CASE WHEN ?5 THEN failed_runs + 1 ELSE 0 END,
                     failing_since = CASE WHEN ?5 THEN coalesce(failing_since, run_started_at)
                         ELSE NULL END
                 WHERE source = ?1",
                params![source, ended_at, status.as_str(), error, failed],
            )?;
            tx.execute(
                "UPDATE run SET ended_at = ?2, status = ?3, error = ?4, messages = max(messages, ?5),
                     duplicates = max(duplicates, ?6), rejected = max(rejected, ?7)
                 WHERE id = ?1",
                params![
                    run,
                    ended_at,
                    status.as_str(),
                    error,
                    counts.new as i64,
                    counts.duplicates as i64,
                    counts.rejected as i64
                ],
            )?;
            let error = error.as_deref();
            if let Some(rules) = events.filter(|rules| rules.failing_runs > 0)
                && failed
            {
                let (runs, since): (i64, Option<String>) = tx.query_row(
                    "SELECT failed_runs, failing_since FROM cursor WHERE source = ?1",
                    [source],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )?;
                if runs >= i64::from(rules.failing_runs) {
                    // One event per streak of failures: its key names the streak's start.
                    let since = since.unwrap_or_default();
                    record_event(
                        tx,
                        &rules,
                        &format!("feed_failing:{source}:{since}"),
                        "feed_failing",
                        serde_json::json!({
                            "feed": source,
                            "runs": runs,
                            "error": error.map(crate::mask::clean_reason),
                        }),
                        Some(ended_at),
                    )?;
                }
            }
            Ok(())
        })
    }

    /// All cursor rows, by source.
    pub fn cursors(&self) -> Result<Vec<CursorRow>> {
        let mut statement = self.conn.prepare(
            "SELECT source, last_seq, last_besked_id, last_received_at, messages, duplicates,
                 rejected, run_started_at, run_ended_at, run_status, run_error
             FROM cursor ORDER BY source",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(CursorRow {
                source: row.get(0)?,
                last_seq: row.get(1)?,
                last_besked_id: row.get(2)?,
                last_received_at: row.get(3)?,
                messages: row.get(4)?,
                duplicates: row.get(5)?,
                rejected: row.get(6)?,
                run_started_at: row.get(7)?,
                run_ended_at: row.get(8)?,
                run_status: row.get(9)?,
                run_error: row.get(10)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Row counts of the main tables, for `status`.
    pub fn table_counts(&self) -> Result<TableCounts> {
        let count = |table: &str| -> Result<i64> {
            Ok(self
                .conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                    row.get(0)
                })?)
        };
        Ok(TableCounts {
            message: count("message")?,
            rejected: count("rejected")?,
            print_status: count("print_status")?,
            registration: count("registration")?,
        })
    }
}
