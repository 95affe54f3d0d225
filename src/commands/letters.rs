//! `letters`: the letters that match, for people who do not write SQL. Prints the replica's
//! data unmasked (CPR numbers included), for authorised users; control characters are escaped
//! so that a hostile value cannot drive the terminal.

use anyhow::{Result, bail};
use chrono::Datelike as _;

use rusqlite::types::Value;

use crate::commands::rows::{Format, render, render_fitted};
use crate::config::Config;
use crate::exit;
use crate::mask::escape_controls;
use crate::replica::Store;
use crate::replica::queries::{LETTER_COLUMNS, LetterFilter};

/// How the table looks: every column or the four that fit a terminal, local time or UTC.
#[derive(Debug, Clone, Copy, Default)]
pub struct Table {
    pub wide: bool,
    pub utc: bool,
}

/// The columns of the default table: the letter, its current event, when, and the error.
const NARROW: &[&str] = &["message_uuid", "event", "occurred_at", "fejl_tekst"];

/// The columns that hold times.
const TIMES: &[&str] = &["occurred_at", "first_seen_at", "final_at"];

pub fn run(config: &Config, filter: &LetterFilter, format: Format, table: Table) -> Result<u8> {
    let store = Store::open_existing(&config.database)?;
    store.require_current()?;
    let rows = store.letters(filter)?;
    if format != Format::Table {
        crate::say_data!("{}", render(LETTER_COLUMNS, &rows, format));
        return Ok(exit::OK);
    }
    let columns: Vec<&str> = if table.wide {
        LETTER_COLUMNS.to_vec()
    } else {
        NARROW.to_vec()
    };
    let picked: Vec<usize> = columns
        .iter()
        .map(|name| {
            LETTER_COLUMNS
                .iter()
                .position(|column| column == name)
                .expect("a letter column")
        })
        .collect();
    let rows: Vec<Vec<Value>> = rows
        .into_iter()
        .map(|row| {
            picked
                .iter()
                .map(|&index| match &row[index] {
                    Value::Text(time) if !table.utc && TIMES.contains(&LETTER_COLUMNS[index]) => {
                        Value::Text(crate::time::local_display(time))
                    }
                    value => value.clone(),
                })
                .collect()
        })
        .collect();
    let text = if table.wide {
        render(&columns, &rows, Format::Table)
    } else {
        render_fitted(&columns, &rows, terminal_width())
    };
    crate::say_data!("{text}");
    Ok(exit::OK)
}

/// The width of the terminal standard output writes to; 120 when it is not a terminal.
fn terminal_width() -> usize {
    // SAFETY: an all-zero winsize is a valid value for TIOCGWINSZ to fill; the ioctl only
    // writes into it.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let known = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if known && size.ws_col >= 40 {
        usize::from(size.ws_col)
    } else {
        120
    }
}

/// Reads a `--since`/`--until` value: a date (`2026-03-01`, the start of that day in UTC, or
/// for `until` the start of the next day, so that the day is included) or a timestamp with an
/// offset. Returns the stored form.
pub fn parse_bound(value: &str, until: bool) -> Result<String> {
    // As the timestamp parser trims: ASCII white space only.
    let value = value.trim_matches([' ', '\t', '\r', '\n']);
    // Exactly `YYYY-MM-DD` (chrono alone would take a sign or a fifth digit), in the years a
    // stored time can have.
    let plain_date = value.len() == 10
        && value.bytes().enumerate().all(|(at, byte)| {
            matches!(at, 4 | 7) == (byte == b'-') && (byte == b'-' || byte.is_ascii_digit())
        });
    if let Some(date) = plain_date
        .then(|| chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").ok())
        .flatten()
        .filter(|date| (crate::time::FIRST_YEAR..=crate::time::LAST_YEAR).contains(&date.year()))
    {
        let next = date.succ_opt();
        let date = if until { next.unwrap_or(date) } else { date };
        let instant = date.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
        if let Some(text) = crate::time::try_format_utc(instant) {
            return Ok(text);
        }
        if until {
            // The day after the last one there is: after every stored time of that day.
            return Ok(format!("{value}T24:00:00.000Z"));
        }
    }
    if let Some(text) = crate::time::normalize(value) {
        return Ok(text);
    }
    bail!(
        "`{}` is not a date (2026-03-01) or a timestamp (2026-03-01T10:00:00Z; without an offset, Danish local time)",
        escape_controls(&crate::mask::cap(value, 100))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_take_dates_and_timestamps() {
        assert_eq!(
            parse_bound("2026-03-01", false).unwrap(),
            "2026-03-01T00:00:00.000Z"
        );
        assert_eq!(
            parse_bound("2026-03-01", true).unwrap(),
            "2026-03-02T00:00:00.000Z"
        );
        assert_eq!(
            parse_bound("2026-03-01T10:00:00+01:00", true).unwrap(),
            "2026-03-01T09:00:00.000Z"
        );
        let error = parse_bound("yesterday\u{1b}[2J", false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("yesterday"), "{error}");
        assert!(!error.contains('\u{1b}'), "{error}");
        // The last day there is includes all of it; no day outside the years a stored time
        // has, whichever bound.
        assert_eq!(
            parse_bound("9999-12-31", true).unwrap(),
            "9999-12-31T24:00:00.000Z"
        );
        for outside in [
            "0000-01-01",
            "+10000-01-01",
            "-2026-01-01",
            "+2026-01-01",
            "2026-1-01",
        ] {
            for until in [false, true] {
                assert!(parse_bound(outside, until).is_err(), "{outside} {until}");
            }
        }
    }
}
