//! `letters`: the letters that match, for people who do not write SQL. Prints the replica's
//! data unmasked (CPR numbers included), for authorised users; control characters are escaped
//! so that a hostile value cannot drive the terminal.

use anyhow::{Result, bail};
use chrono::Datelike as _;

use crate::commands::rows::{Format, render};
use crate::config::Config;
use crate::exit;
use crate::mask::escape_controls;
use crate::replica::Store;
use crate::replica::queries::{LETTER_COLUMNS, LetterFilter};

pub fn run(config: &Config, filter: &LetterFilter, format: Format) -> Result<u8> {
    let store = Store::open_existing(&config.database)?;
    store.require_current()?;
    let rows = store.letters(filter)?;
    crate::say_data!("{}", render(LETTER_COLUMNS, &rows, format));
    Ok(exit::OK)
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
