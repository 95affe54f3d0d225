//! The `status` report: per source, position, counts and last run, plus totals.

use std::fmt::Write;

use anyhow::Result;
use serde::Serialize;

use crate::replica::{CursorRow, NotificationCounts, SourceHealth, Store, TableCounts};

/// Everything `status` shows.
#[derive(Debug, Serialize)]
pub struct Report {
    pub database: String,
    pub schema_version: i64,
    pub sources: Vec<CursorRow>,
    pub totals: Totals,
    pub tables: TableCounts,
    /// Rows of `letter` (schema 3 on).
    pub letters: Option<i64>,
    /// The outbox (schema 3 on).
    pub notifications: Option<NotificationCounts>,
    /// Per source, the newest run and the newest successful one (schema 4 on).
    pub health: Option<Vec<SourceHealth>>,
}

/// Sums over all sources.
#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub messages: i64,
    pub duplicates: i64,
    pub rejected: i64,
}

/// Reads the report from the store. Text that may hold a CPR number (an error, a BeskedId) is
/// masked and has its control characters escaped, for the terminal and for `--json` alike.
pub fn report(store: &Store) -> Result<Report> {
    let safe = |text: &mut Option<String>| {
        if let Some(value) = text {
            *value = crate::mask::for_log(value).into_owned();
        }
    };
    let mut sources = store.cursors()?;
    for row in &mut sources {
        safe(&mut row.last_besked_id);
        safe(&mut row.run_error);
        row.source = crate::mask::for_log(&row.source).into_owned();
    }
    // An older replica (status does not migrate) has no run history.
    let health = if store.schema_version()? >= 4 {
        let mut rows = store.source_health()?;
        for row in &mut rows {
            safe(&mut row.last_error);
            row.source = crate::mask::for_log(&row.source).into_owned();
        }
        Some(rows)
    } else {
        None
    };
    let totals = sources.iter().fold(Totals::default(), |mut totals, row| {
        totals.messages += row.messages;
        totals.duplicates += row.duplicates;
        totals.rejected += row.rejected;
        totals
    });
    Ok(Report {
        database: crate::mask::for_log(&store.path().display().to_string()).into_owned(),
        schema_version: store.schema_version()?,
        sources,
        totals,
        tables: store.table_counts()?,
        // An older replica (status does not migrate) has neither.
        letters: store
            .connection()
            .query_row("SELECT count(*) FROM letter", [], |row| row.get(0))
            .ok(),
        notifications: store.notification_counts().ok(),
        health,
    })
}

impl Report {
    /// The report as an aligned table for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "database {} (schema {}): {} messages, {} print statuses, {} registrations, {} rejected",
            self.database,
            self.schema_version,
            self.tables.message,
            self.tables.print_status,
            self.tables.registration,
            self.tables.rejected
        );
        if let Some(letters) = self.letters {
            let _ = write!(out, "{letters} letters");
            if let Some(n) = &self.notifications {
                let _ = write!(
                    out,
                    "; notifications: {} pending ({} failing), {} sent, {} not sent (older than max_age_days)",
                    n.pending, n.failing, n.sent, n.suppressed
                );
            }
            out.push('\n');
        }
        if self.sources.is_empty() {
            out.push_str("no sources yet: run `beskedhent import PATH` or `beskedhent sync`\n");
            return out;
        }
        let header = [
            "SOURCE",
            "LAST SEQ",
            "LAST RECEIVED",
            "MESSAGES",
            "DUPLICATES",
            "REJECTED",
            "LAST RUN",
            "LAST SUCCESS",
        ];
        let last_success = |source: &str| -> String {
            match &self.health {
                None => "-".into(),
                Some(rows) => rows
                    .iter()
                    .find(|row| row.source == source)
                    .and_then(|row| row.last_success_at.clone())
                    .unwrap_or_else(|| "never".into()),
            }
        };
        let mut rows: Vec<[String; 8]> = self
            .sources
            .iter()
            .map(|row| {
                [
                    row.source.clone(),
                    row.last_seq.map_or("-".into(), |seq| seq.to_string()),
                    row.last_received_at.clone().unwrap_or_else(|| "-".into()),
                    row.messages.to_string(),
                    row.duplicates.to_string(),
                    row.rejected.to_string(),
                    last_run(row),
                    last_success(&row.source),
                ]
            })
            .collect();
        rows.push([
            "total".into(),
            String::new(),
            String::new(),
            self.totals.messages.to_string(),
            self.totals.duplicates.to_string(),
            self.totals.rejected.to_string(),
            String::new(),
            String::new(),
        ]);
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut line = |cells: &[&str]| {
            let mut text = String::new();
            for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
                // Numbers right-aligned, text left-aligned.
                if (1..=5).contains(&index) && index != 2 {
                    let _ = write!(text, "{cell:>width$}  ");
                } else {
                    let _ = write!(text, "{cell:<width$}  ");
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&header);
        for row in &rows {
            line(&row.each_ref().map(String::as_str));
        }
        for row in &self.sources {
            if let Some(error) = &row.run_error {
                let _ = writeln!(out, "{}: last run failed: {error}", row.source);
            }
        }
        out
    }
}

fn last_run(row: &CursorRow) -> String {
    match (&row.run_status, &row.run_started_at, &row.run_ended_at) {
        (Some(status), Some(started), Some(ended)) => format!("{status} {started} .. {ended}"),
        (Some(status), Some(started), None) => {
            format!("{status} since {started} (or killed)")
        }
        _ => "-".into(),
    }
}
