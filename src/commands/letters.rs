//! `letters` and `show`: answers about letters for people who do not write SQL. Both print the
//! replica's data unmasked (CPR numbers included), for authorised users; control characters
//! are escaped so that a hostile value cannot drive the terminal.

use std::fmt::Write as _;
use std::io::Read as _;

use anyhow::{Result, bail};
use chrono::Datelike as _;
use rusqlite::types::Value;
use serde_json::{Map, Value as Json};

use crate::mask::escape_controls;
use crate::replica::Store;

/// Which letters to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
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

/// How to print rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

const COLUMNS: &[&str] = &[
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

/// The letters that match, newest latest status first, as rows of [`COLUMNS`].
pub fn list(store: &Store, filter: &Filter) -> Result<Vec<Vec<Value>>> {
    let mut sql = format!("SELECT {} FROM letter WHERE 1", COLUMNS.join(", "));
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
    let connection = store.connection();
    all_rows(
        &mut connection.prepare(&sql)?,
        rusqlite::params_from_iter(params),
        COLUMNS.len(),
    )
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

/// Prints rows of `columns` as a table, CSV or a JSON array of objects.
pub fn render(columns: &[&str], rows: &[Vec<Value>], format: Format) -> String {
    match format {
        Format::Json => {
            let array: Vec<Json> = rows
                .iter()
                .map(|row| {
                    let object: Map<String, Json> = columns
                        .iter()
                        .zip(row)
                        .map(|(name, value)| (name.to_string(), json(value)))
                        .collect();
                    Json::Object(object)
                })
                .collect();
            let text = serde_json::to_string_pretty(&array).expect("JSON of plain values");
            // Characters that could steer a terminal (C1 controls, line separators,
            // bidirectional overrides) as `\u` escapes: the same JSON value, safe to view.
            let mut safe = String::with_capacity(text.len() + 1);
            for c in text.chars() {
                if crate::mask::is_control(c) && !c.is_ascii() {
                    safe.push_str(&format!("\\u{:04x}", u32::from(c)));
                } else {
                    safe.push(c);
                }
            }
            safe.push('\n');
            safe
        }
        Format::Csv => {
            let mut out = String::new();
            let line = |cells: Vec<String>| cells.iter().map(|c| csv(c)).collect::<Vec<_>>();
            out.push_str(&line(columns.iter().map(|c| c.to_string()).collect()).join(","));
            out.push_str("\r\n");
            for row in rows {
                out.push_str(&line(row.iter().map(plain).collect()).join(","));
                out.push_str("\r\n");
            }
            out
        }
        Format::Table => {
            const WIDEST: usize = 60;
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|value| shorten(&escape_controls(&plain(value)), WIDEST))
                        .collect()
                })
                .collect();
            let widths: Vec<usize> = (0..columns.len())
                .map(|index| {
                    cells
                        .iter()
                        .map(|row| row[index].chars().count())
                        .chain([columns[index].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let mut out = String::new();
            let mut line = |cells: &[String]| {
                let text: Vec<String> = cells
                    .iter()
                    .zip(&widths)
                    .map(|(cell, width)| format!("{cell:<width$}"))
                    .collect();
                out.push_str(text.join("  ").trim_end());
                out.push('\n');
            };
            line(&columns.iter().map(|c| c.to_string()).collect::<Vec<_>>());
            for row in &cells {
                line(row);
            }
            out
        }
    }
}

fn plain(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Integer(n) => n.to_string(),
        Value::Real(x) => x.to_string(),
        Value::Text(text) => text.clone(),
        Value::Blob(bytes) => format!("<{} bytes>", bytes.len()),
    }
}

fn json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Integer(n) => Json::from(*n),
        Value::Real(x) => Json::from(*x),
        Value::Text(text) => Json::from(text.as_str()),
        Value::Blob(bytes) => Json::from(format!("<{} bytes>", bytes.len())),
    }
}

/// A CSV field (RFC 4180): quoted when it holds a comma, quote or line break.
fn csv(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(max_chars - 1).collect();
        short.push('…');
        short
    }
}

/// The columns `letters` prints.
pub fn columns() -> &'static [&'static str] {
    COLUMNS
}

/// `show ID`: a letter's whole history (for a `message_uuid`), or one message decoded (for a
/// `besked_id`). None when the replica has neither.
pub fn show(store: &Store, id: &str) -> Result<Option<String>> {
    let connection = store.connection();
    let id = id.trim();
    let mut out = String::new();
    let letter = all_rows(
        &mut connection.prepare(&format!(
            "SELECT {} FROM letter WHERE message_uuid = ?1",
            COLUMNS.join(", ")
        ))?,
        [id],
        COLUMNS.len(),
    )?;
    if let Some(current) = letter.first() {
        out.push_str("letter\n");
        fields(&mut out, COLUMNS, current);
        const HISTORY: &[&str] = &[
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
        let history = all_rows(
            &mut connection.prepare(&format!(
                "SELECT {} FROM print_status WHERE message_uuid = ?1 ORDER BY occurred_at, seq",
                HISTORY.join(", ")
            ))?,
            [id],
            HISTORY.len(),
        )?;
        let _ = writeln!(out, "\nstatuses, oldest first ({})", history.len());
        out.push_str(&render(HISTORY, &history, Format::Table));
        return Ok(Some(out));
    }

    let besked_id = crate::decode::message::canonical_besked_id(id.to_owned());
    const MESSAGE: &[&str] = &[
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
    let message = all_rows(
        &mut connection.prepare(&format!(
            "SELECT {} FROM message WHERE besked_id = ?1",
            MESSAGE.join(", ")
        ))?,
        [&besked_id],
        MESSAGE.len(),
    )?;
    let Some(row) = message.first() else {
        return Ok(None);
    };
    let Value::Integer(seq) = row[0] else {
        bail!("message `{besked_id}` has no seq");
    };
    out.push_str("message\n");
    fields(&mut out, MESSAGE, row);
    for (table, title) in [
        ("print_status", "print status"),
        ("registration", "registration"),
    ] {
        let mut statement = connection.prepare(&format!("SELECT * FROM {table} WHERE seq = ?1"))?;
        let names: Vec<String> = statement.column_names().map(str::to_owned).collect();
        let derived = all_rows(&mut statement, [seq], names.len())?;
        if let Some(derived) = derived.first() {
            let _ = writeln!(out, "\n{title}");
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            fields(&mut out, &names, derived);
        }
    }
    let pruned_at: Option<String> = connection.query_row(
        "SELECT envelope_pruned_at FROM message WHERE seq = ?1",
        [seq],
        |row| row.get(0),
    )?;
    // Read straight from the row, not through a result column, which SQLite would first
    // copy whole into memory of its own.
    let mut envelope = Vec::new();
    connection
        .blob_open(rusqlite::MAIN_DB, "message", "envelope", seq, true)?
        .read_to_end(&mut envelope)?;
    out.push_str("\nenvelope\n");
    if let Some(at) = pruned_at {
        let _ = write!(out, "(dropped at {at}, by [retention] or `forget`)");
    }
    // Decoded before anything is written out (decoding may need copies for a moment), then
    // written straight into the text, once, each copy dropped when written: an envelope may be
    // as large as `max_message_bytes`, and its payload three quarters of that.
    let payload = crate::decode::envelope::base64_payload(&envelope);
    push_text(&mut out, &envelope);
    drop(envelope);
    if let Some(payload) = payload {
        out.push_str("\n\npayload (decoded from Base64)\n");
        push_text(&mut out, &payload);
    }
    out.push('\n');
    Ok(Some(out))
}

/// `name: value` lines, names aligned; empty values left out.
fn fields(out: &mut String, names: &[&str], values: &[Value]) {
    let width = names.iter().map(|name| name.len()).max().unwrap_or(0);
    for (name, value) in names.iter().zip(values) {
        let text = plain(value);
        if !text.is_empty() {
            let _ = writeln!(out, "  {name:<width$}  {}", escape_controls(&text));
        }
    }
}

/// Appends bytes as text for a terminal: invalid UTF-8 replaced, control characters other than
/// line breaks and tabs escaped.
fn push_text(out: &mut String, bytes: &[u8]) {
    for (at, line) in String::from_utf8_lossy(bytes).split('\n').enumerate() {
        if at > 0 {
            out.push('\n');
        }
        out.push_str(&escape_controls(line.trim_end_matches('\r')));
    }
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

    #[test]
    fn csv_quotes_what_needs_it_and_tables_escape_controls() {
        let rows = vec![vec![
            Value::Text("a,b".into()),
            Value::Text("say \"hi\"\nbye".into()),
            Value::Null,
        ]];
        assert_eq!(
            render(&["x", "y", "z"], &rows, Format::Csv),
            "x,y,z\r\n\"a,b\",\"say \"\"hi\"\"\nbye\",\r\n"
        );
        let table = render(&["x", "y", "z"], &rows, Format::Table);
        assert!(!table.contains("\nbye"), "{table}");
        assert_eq!(table.lines().count(), 2, "{table}");
        let json = render(&["x", "y", "z"], &rows, Format::Json);
        let parsed: Json = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed[0]["y"], "say \"hi\"\nbye");
        assert_eq!(parsed[0]["z"], Json::Null);
        // A value that could steer a terminal is escaped in JSON, and means the same.
        let rows = vec![vec![Value::Text("a\u{9b}2J\u{202e}b".into())]];
        let json = render(&["x"], &rows, Format::Json);
        assert!(json.contains("a\\u009b2J\\u202eb"), "{json}");
        assert!(
            !json.contains('\u{9b}') && !json.contains('\u{202e}'),
            "{json}"
        );
        let parsed: Json = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed[0]["x"], "a\u{9b}2J\u{202e}b");
        let table = render(&["x"], &rows, Format::Table);
        assert!(
            !table.contains('\u{9b}') && !table.contains('\u{202e}'),
            "{table}"
        );
    }
}
