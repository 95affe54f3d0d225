//! Logging: the one layer every log line passes through on its way to standard error. Each
//! line has its CPR numbers masked, its control characters escaped (so a newline inside a file
//! name or a timestamp cannot start a forged line) and its length capped, whatever field or
//! message it came from. Errors printed by `main` go through the same function.

use std::io::Write;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::mask;

/// The environment variable holding the log level or filter.
pub const LOG_ENV: &str = "BESKEDHENT_LOG";

/// Longest log line in bytes, after escaping; longer ones are cut with a visible marker.
pub const MAX_LINE_BYTES: usize = 8 * 1024;

/// Libraries whose routine chatter is not the operator's business below this level.
const QUIET: &[&str] = &[
    "tokio_cron_scheduler=warn",
    "lapin=warn",
    "amq_protocol=warn",
];

/// Sets up logging to standard error. Returns a warning to show when `BESKEDHENT_LOG` was not
/// a valid filter (logging then stays at `info`, rather than silently going quiet).
pub fn init() {
    let requested = std::env::var(LOG_ENV).ok();
    let (filter, problem) = filter(requested.as_deref());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(SafeStderr)
        .with_ansi(false)
        .with_target(false)
        .init();
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
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
/// escaped, at most [`MAX_LINE_BYTES`] (cut with a marker).
pub fn safe_line(text: &str) -> String {
    mask::cap(&mask::for_log(text), MAX_LINE_BYTES).into_owned()
}

/// Prints an error on standard error, made safe like every log line.
pub fn print_error(text: &str) {
    let line = safe_line(&format!("error: {text}"));
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

/// Writes each formatted log line to standard error through [`safe_line`].
struct SafeStderr;

impl<'a> MakeWriter<'a> for SafeStderr {
    type Writer = LineBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        LineBuffer(Vec::with_capacity(256))
    }
}

/// Collects one event's output, then writes it as one safe line when dropped.
struct LineBuffer(Vec<u8>);

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
        let line = safe_line(text.strip_suffix('\n').unwrap_or(&text));
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{line}");
    }
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
