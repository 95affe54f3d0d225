//! Printing rows of plain values: as an aligned table, CSV (RFC 4180) or a JSON array of
//! objects, for `letters`, `show` and `notify --dry-run`. Control characters are escaped in the
//! table and steering characters in JSON, so a hostile value cannot drive a terminal; CSV gives
//! every value exactly as stored.

use std::fmt::Write as _;

use rusqlite::types::Value;
use serde_json::{Map, Value as Json};

use crate::mask::escape_controls;

/// How to print rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
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
            let mut safe = String::with_capacity(text.len() + 1);
            push_safe_json(&mut safe, &text);
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

/// Rows as an aligned table that fits `width` columns: every column but the last as wide as
/// its widest value (at most 40), the last cut to what is left (at least 10), with a marker.
pub fn render_fitted(columns: &[&str], rows: &[Vec<Value>], width: usize) -> String {
    const WIDEST: usize = 40;
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|value| escape_controls(&plain(value)).into_owned())
                .collect()
        })
        .collect();
    let last = columns.len().saturating_sub(1);
    let mut widths: Vec<usize> = (0..columns.len())
        .map(|index| {
            cells
                .iter()
                .map(|row| row[index].chars().count())
                .chain([columns[index].len()])
                .max()
                .unwrap_or(0)
                .min(WIDEST)
        })
        .collect();
    let used: usize = widths[..last].iter().sum::<usize>() + 2 * last;
    widths[last] = width.saturating_sub(used).max(10);
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, &width)| format!("{:<width$}", shorten(cell, width)))
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

pub fn plain(value: &Value) -> String {
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

/// Appends JSON text with the characters that could steer a terminal (C1 controls, line
/// separators, bidirectional overrides) as `\u` escapes: the same JSON value, safe to view.
pub fn push_safe_json(out: &mut String, text: &str) {
    for c in text.chars() {
        if crate::mask::is_control(c) && !c.is_ascii() {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
}

/// A CSV field (RFC 4180): quoted when it holds a comma, quote or line break.
pub fn csv(field: &str) -> String {
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

/// `name: value` lines, names aligned; empty values left out.
pub fn fields(out: &mut String, names: &[&str], values: &[Value]) {
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
pub fn push_text(out: &mut String, bytes: &[u8]) {
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

    #[test]
    fn a_fitted_table_is_no_wider_than_the_terminal() {
        let rows = vec![vec![
            Value::Text("5f0c5d3e-6a1b-4c2d-9e8f-0a1b2c3d4e5f".into()),
            Value::Text("Fejlet".into()),
            Value::Text("2026-03-01 11:00:00".into()),
            Value::Text("x".repeat(500)),
        ]];
        let columns = ["message_uuid", "event", "occurred_at", "fejl_tekst"];
        for width in [80, 120, 200] {
            let table = render_fitted(&columns, &rows, width);
            for line in table.lines() {
                assert!(line.chars().count() <= width, "{width}: {line}");
            }
            assert!(
                table.contains("5f0c5d3e-6a1b-4c2d-9e8f-0a1b2c3d4e5f"),
                "{table}"
            );
            assert!(table.contains('…'), "{table}");
        }
    }
}
