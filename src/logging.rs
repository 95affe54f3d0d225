//! Logging: the one layer every log line passes through on its way to standard error. Each
//! line has its CPR numbers masked, its control characters escaped (so a newline inside a file
//! name or a timestamp cannot start a forged line) and its length capped, whatever field or
//! message it came from. Errors printed by `main` go through the same function.

use std::io::Write;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::mask;

/// The environment variable holding the log level or filter.
pub const LOG_ENV: &str = crate::env::LOG;

/// Longest log line in bytes, after escaping; longer ones are cut with a visible marker.
pub const MAX_LINE_BYTES: usize = 8 * 1024;

/// Libraries whose routine chatter is not the operator's business below this level.
const QUIET: &[&str] = &[
    "tokio_cron_scheduler=warn",
    "lapin=warn",
    "amq_protocol=warn",
];

/// The environment variable choosing the log format: `text` (the default) or `json`.
pub const LOG_FORMAT_ENV: &str = crate::env::LOG_FORMAT;

/// Sets up logging to standard error: text lines, or with `BESKEDHENT_LOG_FORMAT=json` one JSON
/// object per line (`timestamp`, `level`, `message` and the event's fields). Under systemd's
/// journal (`JOURNAL_STREAM` set) text lines carry no timestamp of their own: the journal adds
/// one. A bad `BESKEDHENT_LOG` or `BESKEDHENT_LOG_FORMAT` is reported and logging goes on.
pub fn init() {
    let requested = crate::env::log_filter();
    let (filter, mut problem) = filter(requested.as_deref());
    let format = crate::env::log_format();
    let json = match format.trim().to_ascii_lowercase().as_str() {
        "json" => true,
        "" | "text" => false,
        _ => {
            problem = Some(format!(
                "{LOG_FORMAT_ENV}=`{}` is not a log format; use `text` or `json` (logging as text)",
                mask::cap(&format, 40)
            ));
            false
        }
    };
    let _ = JSON.set(json);
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false);
    let frames = tracing_subscriber::filter::filter_fn(shown_at_any_filter);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(SafeStderr { json: true })
            .finish()
            .with(frames)
            .init();
    } else if crate::env::under_journal() {
        builder
            .without_time()
            .with_writer(SafeStderr { json: false })
            .finish()
            .with(frames)
            .init();
    } else {
        builder
            .with_writer(SafeStderr { json: false })
            .finish()
            .with(frames)
            .init();
    }
    if let Some(problem) = problem {
        // It quotes the variable as set: its escapes are read first, so that a CPR number
        // written with them is masked too.
        tracing::warn!(
            "{}",
            crate::mask::mask_cpr_among_letters(&crate::mask::unescaped(&problem))
        );
    }
}

/// Whether an event may be logged at all, whatever `BESKEDHENT_LOG` asks for: never the
/// `trace` level of the libraries, where the AMQP and HTTP crates dump frames and bodies as
/// byte arrays (`[50, 53, 49, ...]`), which no masking can read for CPR numbers. Their `debug`
/// and beskedhent's own `trace` stay available.
fn shown_at_any_filter(metadata: &tracing::Metadata<'_>) -> bool {
    *metadata.level() != tracing::Level::TRACE
        || metadata.target() == "beskedhent"
        || metadata.target().starts_with("beskedhent::")
}

/// The filter for a `BESKEDHENT_LOG` value, and what was wrong with it, if anything.
fn filter(requested: Option<&str>) -> (EnvFilter, Option<String>) {
    let build = |spec: &str| -> Result<EnvFilter, String> {
        // A bare word that is not a level is taken by the filter syntax as a target name,
        // which would silently turn every line of ours off: a typo such as `inf` is an error.
        const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
        for directive in spec.split(',').map(str::trim) {
            if !directive.contains('=')
                && !directive.starts_with("beskedhent")
                && !LEVELS
                    .iter()
                    .any(|level| level.eq_ignore_ascii_case(directive))
            {
                return Err(format!("`{directive}` is not a level"));
            }
        }
        let mut filter = EnvFilter::builder()
            .parse(spec)
            .map_err(|error| error.to_string())?;
        for directive in QUIET {
            let target = directive.split('=').next().unwrap_or_default();
            if !spec.contains(target) {
                filter = filter.add_directive(directive.parse().expect("the directives are valid"));
            }
        }
        Ok(filter)
    };
    match requested.map(str::trim).filter(|spec| !spec.is_empty()) {
        None => (build("info").expect("`info` is a valid filter"), None),
        Some(spec) => match build(spec) {
            Ok(filter) => (filter, None),
            Err(error) => (
                build("info").expect("`info` is a valid filter"),
                Some(format!(
                    "{LOG_ENV}=`{spec}` is not a valid log level or filter ({error}); logging at `info`. Use e.g. warn, info, debug or beskedhent=debug"
                )),
            ),
        },
    }
}

/// Makes text safe for one line of a log or terminal: CPR numbers masked, control characters
/// escaped, at most [`MAX_LINE_BYTES`] (cut with a marker). Masked again after a cut, which can
/// leave a CPR-shaped number at the end of a longer one.
pub fn safe_line(text: &str) -> String {
    match mask::cap(&mask::for_log(text), MAX_LINE_BYTES) {
        std::borrow::Cow::Borrowed(line) => line.to_owned(),
        std::borrow::Cow::Owned(cut) => mask::mask_cpr_in(&cut),
    }
}

/// Longest string value in a JSON log line, in bytes after escaping.
const MAX_JSON_VALUE_BYTES: usize = 4 * 1024;

/// Makes one JSON log line safe, keeping it valid JSON: every string value masked and capped
/// (JSON escapes control characters itself), and a number that looks like a CPR number turned
/// into a masked string. A line that is not JSON is wrapped as the message of one.
pub fn safe_json_line(text: &str) -> String {
    fn clean(value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(text) => {
                let safe =
                    match mask::cap(&mask::mask_cpr_among_letters(text), MAX_JSON_VALUE_BYTES) {
                        std::borrow::Cow::Borrowed(value) => value.to_owned(),
                        std::borrow::Cow::Owned(cut) => mask::mask_cpr_in(&cut),
                    };
                *text = safe;
            }
            Value::Number(number) => {
                let digits = number.to_string();
                let masked = mask::mask_cpr(&digits);
                if masked != digits {
                    *value = Value::String(masked.into_owned());
                }
            }
            Value::Array(items) => items.iter_mut().for_each(clean),
            Value::Object(map) => map.values_mut().for_each(clean),
            Value::Bool(_) | Value::Null => {}
        }
    }
    let mut value = serde_json::from_str(text)
        .unwrap_or_else(|_| serde_json::json!({ "level": "INFO", "message": text }));
    clean(&mut value);
    serde_json::to_string(&value).unwrap_or_else(|_| safe_line(text))
}

/// Whether log lines are JSON (set once by [`init`]).
static JSON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Prints an error on standard error, made safe like every log line: a text line, or with
/// JSON logging one JSON object like the log's.
pub fn print_error(text: &str) {
    let line = if JSON.get().copied().unwrap_or(false) {
        safe_json_line(
            &serde_json::json!({
                "timestamp": crate::time::now_utc(),
                "level": "ERROR",
                "message": text,
            })
            .to_string(),
        )
    } else {
        safe_line(&format!("error: {text}"))
    };
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

/// Writes each formatted log line to standard error through [`safe_line`] (text) or
/// [`safe_json_line`] (JSON).
struct SafeStderr {
    json: bool,
}

impl<'a> MakeWriter<'a> for SafeStderr {
    type Writer = LineBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        LineBuffer(Vec::with_capacity(256), self.json)
    }
}

/// Collects one event's output, then writes it as one safe line when dropped.
struct LineBuffer(Vec<u8>, bool);

impl Write for LineBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.0);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let line = if self.1 {
            safe_json_line(text)
        } else {
            safe_line(text)
        };
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{line}");
    }
}

/// The first failure to write to standard output, if any (see [`write_stdout`]).
static STDOUT_FAILED: std::sync::OnceLock<std::io::Error> = std::sync::OnceLock::new();

/// Writes a command's output to standard output, flushed. A failure (a full disk, a closed pipe)
/// never panics or stops the command: it is kept for [`stdout_failure`], and later output is
/// dropped. Used through [`say!`](crate::say) and [`sayln!`](crate::sayln).
pub fn write_stdout(text: std::fmt::Arguments<'_>) {
    if STDOUT_FAILED.get().is_some() {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        let _ = STDOUT_FAILED.set(error);
    }
}

/// Why writing to standard output failed, if it did.
pub fn stdout_failure() -> Option<&'static std::io::Error> {
    STDOUT_FAILED.get()
}

/// Writes text for the operator to standard output: every line made safe like a log line
/// ([`safe_line`]: CPR numbers masked, control characters escaped, capped), so that no command
/// masks by hand. Used through [`say!`](crate::say) and [`sayln!`](crate::sayln).
pub fn write_stdout_safe(text: std::fmt::Arguments<'_>) {
    let text = text.to_string();
    let (body, newline) = match text.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (text.as_str(), ""),
    };
    let safe: Vec<String> = body.split('\n').map(safe_line).collect();
    write_stdout(format_args!("{}{newline}", safe.join("\n")));
}

/// Writes `value` to standard output as pretty JSON for scripts, every string in it made safe
/// as a log line's text is (CPR numbers masked, control characters escaped).
pub fn write_json<T: serde::Serialize>(value: &T) -> std::io::Result<()> {
    fn clean(value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(text) => {
                if let std::borrow::Cow::Owned(safe) = mask::for_log(text) {
                    *text = safe;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(clean),
            Value::Object(map) => map.values_mut().for_each(clean),
            Value::Number(_) | Value::Bool(_) | Value::Null => {}
        }
    }
    let mut value = serde_json::to_value(value)?;
    clean(&mut value);
    let text = serde_json::to_string_pretty(&value)?;
    write_stdout(format_args!("{text}\n"));
    Ok(())
}

/// `print!` for text for the operator: masked and escaped line by line (see
/// [`write_stdout_safe`](crate::logging::write_stdout_safe)).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::logging::write_stdout_safe(format_args!($($arg)*))
    };
}

/// `println!` for text for the operator: masked and escaped line by line.
#[macro_export]
macro_rules! sayln {
    ($($arg:tt)*) => {
        $crate::logging::write_stdout_safe(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for output that shows personal data on purpose (`letters`, `show`) and makes its
/// own text safe (control characters escaped by the renderer): written as given.
#[macro_export]
macro_rules! say_data {
    ($($arg:tt)*) => {
        $crate::logging::write_stdout(format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_masked_escaped_and_capped() {
        let line = safe_line("rejected file=/in/a\nERROR forged besked_id=251248-9996");
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("\\n"), "{line}");
        assert!(line.contains("251248-****"), "{line}");
        let long = safe_line(&"x".repeat(10 * 1024 * 1024));
        assert!(long.len() < MAX_LINE_BYTES + 64, "{}", long.len());
        assert!(long.contains("cut"), "{}", &long[long.len() - 40..]);
    }

    #[test]
    fn json_lines_stay_json_and_are_masked_and_capped() {
        let line = safe_json_line(
            r#"{"timestamp":"2026-11-27T10:00:00Z","level":"WARN","message":"refused file=/in/a\nb 251248-9996","besked_id":"2512489996","count":2512489996,"seq":12}"#,
        );
        let value: serde_json::Value = serde_json::from_str(&line).expect(&line);
        assert_eq!(value["level"], "WARN");
        assert_eq!(value["seq"], 12);
        assert!(!line.contains("9996"), "{line}");
        assert_eq!(value["count"], "251248****");
        assert!(
            value["message"].as_str().unwrap().contains("/in/a\nb"),
            "{line}"
        );
        let long = format!(r#"{{"level":"INFO","message":"{}"}}"#, "x".repeat(100_000));
        let line = safe_json_line(&long);
        assert!(line.len() < MAX_JSON_VALUE_BYTES + 200, "{}", line.len());
        serde_json::from_str::<serde_json::Value>(&line).expect("still JSON");
        let wrapped: serde_json::Value =
            serde_json::from_str(&safe_json_line("not json 251248-9996")).expect("wrapped");
        assert_eq!(wrapped["message"], "not json 251248-****");
    }

    #[test]
    fn library_trace_events_are_never_shown() {
        use tracing::callsite::Identifier;
        struct Site;
        impl tracing::Callsite for Site {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &tracing::Metadata<'_> {
                unreachable!("not registered")
            }
        }
        static SITE: Site = Site;
        let event = |target: &'static str, level| {
            tracing::Metadata::new(
                "event",
                target,
                level,
                None,
                None,
                None,
                tracing::field::FieldSet::new(&[], Identifier(&SITE)),
                tracing::metadata::Kind::EVENT,
            )
        };
        assert!(!shown_at_any_filter(&event(
            "lapin::frames",
            tracing::Level::TRACE
        )));
        assert!(!shown_at_any_filter(&event("hyper", tracing::Level::TRACE)));
        assert!(!shown_at_any_filter(&event(
            "beskedhentx",
            tracing::Level::TRACE
        )));
        assert!(shown_at_any_filter(&event(
            "lapin::channel",
            tracing::Level::DEBUG
        )));
        assert!(shown_at_any_filter(&event(
            "beskedhent::pull::feed",
            tracing::Level::TRACE
        )));
    }

    #[test]
    fn an_invalid_filter_is_reported_and_logging_stays_on() {
        for bad in ["beskedhent=loud", "inf", "warn,debg"] {
            let (_, problem) = filter(Some(bad));
            let problem = problem.expect(bad);
            assert!(problem.contains("BESKEDHENT_LOG"), "{problem}");
        }
        assert!(filter(Some("warn")).1.is_none());
        assert!(filter(Some("beskedhent=debug")).1.is_none());
        assert!(filter(None).1.is_none());
    }
}
