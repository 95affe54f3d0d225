//! `export letters|statuses|registrations`: the change feed after a position, in `seq` order,
//! as JSON Lines or CSV, to standard output or atomically to a file; with `--cursor NAME` the
//! position is kept in the replica and moved only once everything was written and flushed.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rusqlite::types::Value;
use serde_json::Value as Json;

use crate::commands::rows::{csv, plain};
use crate::config::Config;
use crate::exit;
use crate::replica::Store;
use crate::replica::changes::{Change, Kind, Position, columns};

/// The version of the objects `export` writes (`schema` in each): raised when a field changes
/// meaning or goes; fields may be added without it.
pub const FEED_SCHEMA: u32 = 1;

/// What to export and how.
pub struct Options {
    pub kind: Kind,
    pub after: Option<i64>,
    pub cursor: Option<String>,
    pub limit: u64,
    pub csv: bool,
    pub output: Option<PathBuf>,
}

pub fn run(config: &Config, options: &Options) -> Result<u8> {
    let mut store = Store::open_required(&config.database, None)?;
    let kind = options.kind;
    let through_now = store.pruned_through()?;
    let Some((after, seen)) = start(&store, options, through_now)? else {
        return Ok(exit::ERROR);
    };
    if let Some(path) = &options.output {
        check_output(path, config)?;
    }
    let mut sink = Sink::open(options.output.as_deref())?;
    let names = field_names(kind);
    if options.csv {
        sink.line(
            &names
                .iter()
                .map(|name| csv(name))
                .collect::<Vec<_>>()
                .join(","),
        )?;
    }
    let mut last = None;
    let written = store
        .changes(kind, after, options.limit, |change| {
            let line = if options.csv {
                csv_line(kind, change)
            } else {
                json_line(kind, change)
            };
            sink.line(&line)?;
            last = Some(change.seq);
            Ok(())
        })
        .and_then(|count| sink.finish().map(|()| count));
    let count = match written {
        Ok(count) => count,
        Err(error) if is_closed_pipe(&error) => {
            // A reader that stopped early (`| head`): nothing more to say, but a cursor stays
            // where it was, since not everything was read.
            if let Some(name) = &options.cursor {
                crate::logging::print_error(&format!(
                    "the output was closed before the end; cursor `{name}` stays at {after}"
                ));
                return Ok(exit::ERROR);
            }
            return Ok(exit::OK);
        }
        Err(error) => return Err(error),
    };
    let through = last.unwrap_or(after);
    if let Some(name) = &options.cursor
        && (last.is_some() || options.after.is_some())
    {
        let seen = crate::replica::changes::seen_after(through, seen, through_now);
        store.set_export_cursor(name, kind, (through, seen), &crate::time::now_utc())?;
    }
    tracing::info!(
        "exported {count} {} change(s) after position {after}, through {through}{}",
        kind.as_str(),
        options
            .cursor
            .as_ref()
            .map(|name| format!("; cursor `{name}` at {through}"))
            .unwrap_or_default()
    );
    Ok(exit::OK)
}

/// The fields of an exported object of `kind`, in order (the CSV header).
pub fn field_names(kind: Kind) -> Vec<String> {
    let mut names: Vec<String> = ["seq", "kind", "op", "schema", "id"]
        .iter()
        .map(|name| name.to_string())
        .collect();
    names.extend(
        columns(kind)
            .iter()
            .map(|column| exported_name(column).to_owned()),
    );
    names.push("deleted_at".into());
    names
}

/// A column's name in the feed: a letter's current status is `status_seq`, since `seq` is the
/// change's position.
fn exported_name(column: &'static str) -> &'static str {
    match column {
        "seq" => "status_seq",
        other => other,
    }
}

/// The key column of a thing of `kind` (what a tombstone names it by, besides its number).
fn key_column(kind: Kind) -> &'static str {
    columns(kind)[0]
}

fn json_line(kind: Kind, change: &Change) -> String {
    use std::fmt::Write as _;
    let op = if change.deleted_at.is_some() {
        "delete"
    } else {
        "upsert"
    };
    // The fields in the documented order (a JSON object's order carries no meaning, but a
    // person reading the feed finds `seq` first), written straight into the line: a million
    // objects make no garbage.
    let mut line = String::with_capacity(512);
    let _ = write!(
        line,
        "{{\"seq\":{},\"kind\":\"{}\",\"op\":\"{op}\",\"schema\":{FEED_SCHEMA},\"id\":{}",
        change.seq,
        kind.as_str(),
        change.id
    );
    let field = |line: &mut String, name: &str| {
        line.push_str(",\"");
        line.push_str(name);
        line.push_str("\":");
    };
    match &change.deleted_at {
        Some(at) => {
            field(&mut line, key_column(kind));
            push_json_string(&mut line, &change.key);
            field(&mut line, "deleted_at");
            push_json_string(&mut line, at);
        }
        None => {
            for (column, value) in columns(kind).iter().zip(&change.values) {
                field(&mut line, exported_name(column));
                match (*column, value) {
                    ("final" | "registered", Value::Integer(flag)) => {
                        line.push_str(if *flag != 0 { "true" } else { "false" });
                    }
                    (_, Value::Null) => line.push_str("null"),
                    (_, Value::Integer(n)) => {
                        let _ = write!(line, "{n}");
                    }
                    (_, Value::Real(x)) => line.push_str(&Json::from(*x).to_string()),
                    (_, Value::Text(text)) => push_json_string(&mut line, text),
                    (_, Value::Blob(bytes)) => {
                        push_json_string(&mut line, &format!("<{} bytes>", bytes.len()));
                    }
                }
            }
        }
    }
    line.push('}');
    line
}

/// `text` as a JSON string: quotes, backslashes and every control character escaped (also
/// the C1 controls and line separators JSON itself allows raw, which some readers choke on).
fn push_json_string(out: &mut String, text: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || crate::mask::is_control(c) => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn csv_line(kind: Kind, change: &Change) -> String {
    let op = if change.deleted_at.is_some() {
        "delete"
    } else {
        "upsert"
    };
    let mut fields = vec![
        change.seq.to_string(),
        kind.as_str().to_string(),
        op.to_string(),
        FEED_SCHEMA.to_string(),
        change.id.to_string(),
    ];
    match &change.deleted_at {
        Some(at) => {
            fields.push(change.key.clone());
            fields.extend((1..columns(kind).len()).map(|_| String::new()));
            fields.push(at.clone());
        }
        None => {
            fields.extend(
                columns(kind)
                    .iter()
                    .zip(&change.values)
                    .map(|(column, value)| match (*column, value) {
                        ("final" | "registered", Value::Integer(flag)) => (*flag != 0).to_string(),
                        _ => plain(value),
                    }),
            );
            fields.push(String::new());
        }
    }
    fields
        .iter()
        .map(|field| csv(field))
        .collect::<Vec<_>>()
        .join(",")
}

/// Where to start, and how far the reader is known not to have skipped a deletion (a cursor
/// keeps it; a reader starting at 0 skipped none); None, having said why, when the position
/// is older than the deletions still told of.
fn start(store: &Store, options: &Options, through_now: i64) -> Result<Option<(i64, i64)>> {
    let (after, seen) = match (&options.cursor, options.after) {
        (Some(name), None) => store.export_cursor(name, options.kind)?,
        (_, after) => {
            let after = after.unwrap_or(0);
            (after, if after == 0 { through_now } else { 0 })
        }
    };
    let issued = store.change_issued()?;
    if after > issued {
        crate::logging::print_error(&format!(
            "position {after} is past the newest change of this replica ({issued}): it was not given out here. If the replica was restored from an older backup, the changes after {issued} are given out again under new positions; replace your copy with everything from position 0 ({})",
            start_again(options)
        ));
        return Ok(None);
    }
    if let Position::Missed(through) = crate::replica::changes::position(after, seen, through_now) {
        crate::logging::print_error(&format!(
            "position {after} is older than the deletions the replica still tells of: tombstones up to seq {through} were deleted ([retention] deletions_days), so some deletions would be missed; replace your copy with everything from position 0 ({})",
            start_again(options)
        ));
        return Ok(None);
    }
    Ok(Some((after, seen)))
}

/// How to read everything again: `--after 0`, with the cursor if there is one.
fn start_again(options: &Options) -> String {
    match &options.cursor {
        Some(name) => format!("--after 0 --cursor {name}, which starts the cursor again"),
        None => "--after 0".into(),
    }
}

/// `--output` is written beside its name and renamed over it: refuse a path that is not a
/// regular file (a device, a FIFO, a symbolic link, a directory would be replaced), and the
/// replica's own files and the configuration.
fn check_output(path: &std::path::Path, config: &Config) -> Result<()> {
    if let Ok(metadata) = std::fs::symlink_metadata(path) {
        let kind = metadata.file_type();
        if !kind.is_file() {
            anyhow::bail!(
                "`--output` `{}` is {}, not a regular file: export writes a new file and renames it over the name, which would replace it; name a file",
                path.display(),
                crate::files::kind(&kind)
            );
        }
    }
    let real = crate::files::real_path(path);
    let database = crate::files::real_path(&config.database);
    let own = real.parent() == database.parent()
        && match (real.file_name(), database.file_name()) {
            (Some(name), Some(db)) => {
                use std::os::unix::ffi::OsStrExt as _;
                crate::files::is_own_file_name(db.as_bytes(), name.as_bytes())
            }
            _ => false,
        };
    if own || real == crate::files::real_path(&config.path) {
        anyhow::bail!(
            "`--output` `{}` is {}; name another file",
            path.display(),
            if own {
                "the replica or one of its own files"
            } else {
                "the configuration file"
            }
        );
    }
    Ok(())
}

/// Whether an error is the reader of standard output having gone.
fn is_closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Where the lines go: standard output, or a file written beside its final name and renamed
/// over it once complete and synced, so a reader never sees half of it.
enum Sink {
    Stdout(std::io::BufWriter<std::io::Stdout>),
    File(FileSink),
}

/// A file being written under a temporary name; removed if never finished.
struct FileSink {
    writer: Option<std::io::BufWriter<std::fs::File>>,
    temporary: PathBuf,
    path: PathBuf,
}

impl Sink {
    fn open(output: Option<&Path>) -> Result<Sink> {
        let Some(path) = output else {
            return Ok(Sink::Stdout(std::io::BufWriter::with_capacity(
                64 * 1024,
                std::io::stdout(),
            )));
        };
        let (file, temporary) = crate::files::create_beside(path, 0o600)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        Ok(Sink::File(FileSink {
            writer: Some(std::io::BufWriter::with_capacity(64 * 1024, file)),
            temporary,
            path: path.to_path_buf(),
        }))
    }

    fn line(&mut self, line: &str) -> Result<()> {
        let writer: &mut dyn Write = match self {
            Sink::Stdout(writer) => writer,
            Sink::File(FileSink {
                writer: Some(writer),
                ..
            }) => writer,
            Sink::File(_) => bail!("the export file is closed already"),
        };
        writer.write_all(line.as_bytes())?;
        writer.write_all(b"\n")?;
        Ok(())
    }

    /// Flushes standard output, or syncs the file and renames it into place.
    fn finish(&mut self) -> Result<()> {
        match self {
            Sink::Stdout(writer) => writer.flush().context("cannot write the output"),
            Sink::File(sink) => {
                let path = sink.path.clone();
                let named = |error: std::io::Error| {
                    anyhow::Error::new(error).context(format!("cannot write `{}`", path.display()))
                };
                let writer = sink
                    .writer
                    .take()
                    .context("the export file is closed already")?;
                let file = writer
                    .into_inner()
                    .map_err(|error| named(error.into_error()))?;
                file.sync_all().map_err(named)?;
                std::fs::rename(&sink.temporary, &sink.path).with_context(|| {
                    format!(
                        "cannot move the export into place as `{}`",
                        sink.path.display()
                    )
                })?;
                sink.temporary = PathBuf::new();
                Ok(())
            }
        }
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        // Not finished (an error on the way): no half-written file is left behind.
        if !self.temporary.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// Parses the feed named on the command line.
pub fn kind_named(name: &str) -> Result<Kind> {
    match name {
        "letters" => Ok(Kind::Letter),
        "statuses" => Ok(Kind::Status),
        "registrations" => Ok(Kind::Registration),
        other => bail!("no feed `{other}`: letters, statuses or registrations"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_json_that_any_reader_takes_and_nothing_else() {
        let nasty = "a\"b\\c\nd\u{1}e\u{85}f\u{2028}g\u{202e}hæø—😀";
        let mut line = String::new();
        push_json_string(&mut line, nasty);
        let back: String = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(back, nasty);
        for raw in ['\n', '\u{1}', '\u{85}', '\u{2028}', '\u{202e}'] {
            assert!(!line.contains(raw), "{line}");
        }
        assert!(line.contains("æø—😀"));
    }
}
