//! `status`: per source, position, counts and last run, plus totals, as a table or JSON; and
//! `status --check`, the monitoring plugin.

use std::fmt::Write;

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::config::Config;
use crate::exit;
use crate::ops::monitor;
use crate::replica::{CursorRow, Followers, NotificationCounts, SourceHealth, Store, TableCounts};

pub fn run(config: &Config, json: bool) -> Result<u8> {
    let store = Store::open_existing(&config.database)?;
    let report = report(&store)?;
    if json {
        crate::logging::write_json(&report)?;
    } else {
        crate::say!("{}", report.to_text());
    }
    Ok(exit::OK)
}

/// `status --check`: a Nagios/Icinga plugin, whose every failure (the configuration too) is
/// UNKNOWN on one line, never a bare error.
pub fn plugin(config_path: &Path) -> u8 {
    let verdict = match Config::load(config_path) {
        Ok(config) => monitor::check(&config, chrono::Utc::now()),
        Err(error) => monitor::Verdict {
            state: monitor::State::Unknown,
            line: format!("UNKNOWN - {error:#}"),
        },
    };
    crate::sayln!("{}", verdict.line);
    verdict.state.exit_code()
}

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
    /// The change feed's position, its export cursors and mirrors (schema 9 on).
    pub feed: Option<Followers>,
}

/// Sums over all sources.
#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub messages: i64,
    pub duplicates: i64,
    pub rejected: i64,
}

/// Reads the report from the store. What it prints goes through the output layer, which masks
/// CPR numbers and escapes control characters for the terminal and for `--json` alike.
pub fn report(store: &Store) -> Result<Report> {
    let sources = store.cursors()?;
    // An older replica (status does not migrate) has no run history.
    let health = if store.schema_version()? >= 4 {
        Some(store.source_health()?)
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
        database: store.path().display().to_string(),
        schema_version: store.schema_version()?,
        sources,
        totals,
        tables: store.table_counts()?,
        // An older replica (status does not migrate) has neither.
        letters: store.letter_count(),
        notifications: store.notification_counts().ok(),
        health,
        feed: if store.schema_version()? >= 9 {
            Some(store.followers()?)
        } else {
            None
        },
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
        } else {
            out.push_str(&aligned(&HEADER, &self.rows()));
        }
        for row in &self.sources {
            if let Some(error) = &row.run_error {
                let _ = writeln!(out, "{}: last run failed: {error}", row.source);
            }
        }
        if let Some(feed) = &self.feed {
            out.push_str(&followers_text(feed));
        }
        out
    }

    /// A row per source, and the totals.
    fn rows(&self) -> Vec<[String; 8]> {
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
        rows
    }
}

/// The columns of the sources' table.
const HEADER: [&str; 8] = [
    "SOURCE",
    "LAST SEQ",
    "LAST RECEIVED",
    "MESSAGES",
    "DUPLICATES",
    "REJECTED",
    "LAST RUN",
    "LAST SUCCESS",
];

/// The header and rows aligned in columns: numbers right-aligned, text left-aligned.
fn aligned(header: &[&str; 8], rows: &[[String; 8]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if (1..=5).contains(&index) && index != 2 {
                let _ = write!(text, "{cell:>width$}  ");
            } else {
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

/// The change feed's position and who follows it, a line each.
fn followers_text(feed: &Followers) -> String {
    let mut out = String::new();
    if feed.through_seq == 0 && feed.cursors.is_empty() && feed.mirrors.is_empty() {
        return out;
    }
    let _ = writeln!(out, "change feed through seq {}", feed.through_seq);
    for cursor in &feed.cursors {
        let _ = writeln!(
            out,
            "  export cursor `{}` ({}): at {}, {} behind, moved {}",
            cursor.name,
            match cursor.kind.as_str() {
                "status" => "statuses",
                "letter" => "letters",
                _ => "registrations",
            },
            cursor.seq,
            changes(cursor.behind),
            cursor.updated_at
        );
    }
    for mirror in &feed.mirrors {
        let caught_up = mirror.mirrored_at.as_deref().unwrap_or("never");
        let _ = write!(
            out,
            "  mirror `{}`: at {}, {} behind, last caught up {caught_up}",
            mirror.installation,
            mirror.change_seq,
            changes(mirror.behind)
        );
        if let Some(error) = &mirror.error {
            let _ = write!(out, "; last try {} failed: {error}", mirror.attempted_at);
        }
        out.push('\n');
    }
    out
}

/// "1 change", "2 changes".
fn changes(count: i64) -> String {
    if count == 1 {
        "1 change".into()
    } else {
        format!("{count} changes")
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
