//! The questions `letters`, `show` and `status` ask of the replica, answered as rows of plain
//! values for the commands to print.

use std::fmt::Write as _;
use std::io::Read as _;

use anyhow::Result;
use rusqlite::types::Value;

use super::Store;

/// Which letters `letters` lists.
#[derive(Debug, Clone, Default)]
pub struct LetterFilter {
    pub failed: bool,
    /// Letters without a final status whose latest status is older than this many days.
    pub overdue_days: Option<u32>,
    /// Latest status at or after this instant (stored form).
    pub since: Option<String>,
    /// Latest status before this instant (stored form).
    pub until: Option<String>,
    pub kanal: Option<String>,
    /// At most this many rows; 0 for all.
    pub limit: u64,
}

/// The columns of a letter, as `letters` and `show` print them.
pub const LETTER_COLUMNS: &[&str] = &[
    "message_uuid",
    "event",
    "outcome",
    "kanal",
    "occurred_at",
    "first_seen_at",
    "final_at",
    "statuses",
    "fejl_kode",
    "fejl_tekst",
    "afsendelse_id",
];

/// The columns of a letter's statuses, as `show` prints them.
pub const HISTORY_COLUMNS: &[&str] = &[
    "seq",
    "occurred_at",
    "event",
    "final",
    "outcome",
    "kanal",
    "fejl_kode",
    "fejl_tekst",
    "besked_id",
];

/// The columns of a message, as `show` prints them.
pub const MESSAGE_COLUMNS: &[&str] = &[
    "seq",
    "besked_id",
    "kind",
    "beskedtype",
    "source",
    "received_at",
    "created_at",
    "transaktions_id",
    "producer_uuid",
    "origin",
];

/// A derived row of a message: its table's title, column names and values.
pub struct DerivedRow {
    pub title: &'static str,
    pub names: Vec<String>,
    pub values: Vec<Value>,
}

impl Store {
    /// The letters that match, newest latest status first, as rows of [`LETTER_COLUMNS`].
    pub fn letters(&self, filter: &LetterFilter) -> Result<Vec<Vec<Value>>> {
        let mut sql = format!("SELECT {} FROM letter WHERE 1", LETTER_COLUMNS.join(", "));
        let mut params: Vec<Value> = Vec::new();
        if filter.failed {
            sql.push_str(" AND outcome = 'failed'");
        }
        if let Some(days) = filter.overdue_days {
            let before = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
            sql.push_str(" AND final = 0 AND occurred_at < ?");
            params.push(Value::Text(crate::time::format_utc(before)));
        }
        if let Some(since) = &filter.since {
            sql.push_str(" AND occurred_at >= ?");
            params.push(Value::Text(since.clone()));
        }
        if let Some(until) = &filter.until {
            sql.push_str(" AND occurred_at < ?");
            params.push(Value::Text(until.clone()));
        }
        if let Some(kanal) = &filter.kanal {
            sql.push_str(" AND kanal = ?");
            params.push(Value::Text(kanal.clone()));
        }
        sql.push_str(" ORDER BY occurred_at DESC, message_uuid");
        if filter.limit > 0 {
            let _ = write!(sql, " LIMIT {}", filter.limit);
        }
        let connection = &self.conn;
        all_rows(
            &mut connection.prepare(&sql)?,
            rusqlite::params_from_iter(params),
            LETTER_COLUMNS.len(),
        )
    }

    /// A letter's current row, by its `message_uuid`.
    pub fn letter(&self, message_uuid: &str) -> Result<Option<Vec<Value>>> {
        let rows = all_rows(
            &mut self.conn.prepare(&format!(
                "SELECT {} FROM letter WHERE message_uuid = ?1",
                LETTER_COLUMNS.join(", ")
            ))?,
            [message_uuid],
            LETTER_COLUMNS.len(),
        )?;
        Ok(rows.into_iter().next())
    }

    /// A letter's statuses, oldest first, as rows of [`HISTORY_COLUMNS`].
    pub fn letter_history(&self, message_uuid: &str) -> Result<Vec<Vec<Value>>> {
        all_rows(
            &mut self.conn.prepare(&format!(
                "SELECT {} FROM print_status
                 WHERE letter_id = (SELECT id FROM letter WHERE message_uuid = ?1)
                 ORDER BY occurred_at, seq",
                HISTORY_COLUMNS.join(", ")
            ))?,
            [message_uuid],
            HISTORY_COLUMNS.len(),
        )
    }

    /// A message's row of [`MESSAGE_COLUMNS`] and its `seq`, by its stored BeskedId.
    pub fn message_row(&self, besked_id: &str) -> Result<Option<(i64, Vec<Value>)>> {
        let rows = all_rows(
            &mut self.conn.prepare(&format!(
                "SELECT {} FROM message WHERE besked_id = ?1",
                MESSAGE_COLUMNS.join(", ")
            ))?,
            [besked_id],
            MESSAGE_COLUMNS.len(),
        )?;
        Ok(rows.into_iter().next().and_then(|row| match row[0] {
            Value::Integer(seq) => Some((seq, row)),
            _ => None,
        }))
    }

    /// The rows derived from message `seq`: its print status or its registration.
    pub fn derived_rows(&self, seq: i64) -> Result<Vec<DerivedRow>> {
        let mut found = Vec::new();
        for (table, title) in [
            ("print_status", "print status"),
            ("registration", "registration"),
        ] {
            let mut statement = self
                .conn
                .prepare(&format!("SELECT * FROM {table} WHERE seq = ?1"))?;
            let names: Vec<String> = statement.column_names().map(str::to_owned).collect();
            if let Some(values) = all_rows(&mut statement, [seq], names.len())?
                .into_iter()
                .next()
            {
                found.push(DerivedRow {
                    title,
                    names,
                    values,
                });
            }
        }
        Ok(found)
    }

    /// Message `seq`'s envelope bytes, and when they were dropped (retention, `forget`), if
    /// they were. Read straight from the row, not through a result column, which SQLite
    /// would first copy whole into memory of its own.
    pub fn envelope_of(&self, seq: i64) -> Result<(Vec<u8>, Option<String>)> {
        let pruned_at: Option<String> = self.conn.query_row(
            "SELECT envelope_pruned_at FROM message WHERE seq = ?1",
            [seq],
            |row| row.get(0),
        )?;
        let mut envelope = Vec::new();
        self.conn
            .blob_open(rusqlite::MAIN_DB, "message", "envelope", seq, true)?
            .read_to_end(&mut envelope)?;
        Ok((envelope, pruned_at))
    }

    /// Rows of `letter`, or None for a replica from before schema 3.
    pub fn letter_count(&self) -> Option<i64> {
        self.conn
            .query_row("SELECT count(*) FROM letter", [], |row| row.get(0))
            .ok()
    }
}

/// Every row of a query, each as `width` values.
fn all_rows<P: rusqlite::Params>(
    statement: &mut rusqlite::Statement<'_>,
    params: P,
    width: usize,
) -> Result<Vec<Vec<Value>>> {
    let rows = statement.query_map(params, |row| {
        (0..width)
            .map(|index| row.get::<_, Value>(index))
            .collect::<rusqlite::Result<Vec<Value>>>()
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
