//! The Prometheus text file of `[metrics]`, for node_exporter's textfile collector: written
//! whole under a private name and renamed into place, readable by all (it holds no personal
//! data), after every run.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use crate::replica::{SourceHealth, Store};

/// Writes the Prometheus text file: to a temporary file beside `path`, then renamed over it,
/// so a collector never reads half a file. Readable by all (it holds no personal data).
pub fn write_metrics(
    store: &Store,
    path: &Path,
    certificate_expiry: Option<DateTime<Utc>>,
) -> Result<()> {
    let text = metrics_text(store, certificate_expiry)?;
    // Only a file of this user's is replaced (renaming over another user's is refused).
    if let Ok(existing) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::MetadataExt;
        let me = crate::owner::euid();
        if !existing.is_file() || existing.uid() != me {
            anyhow::bail!(
                "cannot write the metrics file `{}` (`metrics.textfile`): {} is there, and beskedhent replaces only a metrics file of its own; remove it, or name another file",
                path.display(),
                if existing.is_file() {
                    format!("a file of user {}", crate::owner::user_name(existing.uid()))
                } else {
                    crate::files::kind(&existing.file_type()).to_owned()
                }
            );
        }
    }
    let mut temporary = None;
    let written = (|| -> std::io::Result<()> {
        // Readable by all whatever the umask (the service units set 0077): the collector runs
        // as another user.
        let (mut file, name) = crate::files::create_beside(path, 0o644)?;
        temporary = Some(name.clone());
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&name, path)
    })();
    if let Err(error) = written {
        if let Some(temporary) = temporary {
            let _ = std::fs::remove_file(temporary);
        }
        return Err(error).with_context(|| {
            format!(
                "cannot write the metrics file `{}` (`metrics.textfile`); check that its directory exists and is writable by this user",
                path.display()
            )
        });
    }
    Ok(())
}

/// The metrics in the Prometheus text exposition format.
pub fn metrics_text(store: &Store, certificate_expiry: Option<DateTime<Utc>>) -> Result<String> {
    let mut out = Families::default();
    let health = store.source_health()?;
    feed_families(&mut out, &health);
    if let Some(expiry) = certificate_expiry {
        out.family(
            "beskedhent_certificate_expiry_timestamp_seconds",
            "gauge",
            "When the [sts] certificate expires, Unix time.",
            vec![(String::new(), expiry.timestamp() as f64)],
        );
    }
    let letters = store.letters_by_outcome()?;
    out.family(
        "beskedhent_letters",
        "gauge",
        "Letters by the outcome of their current status (pending: no final status yet).",
        letters
            .into_iter()
            .map(|(outcome, count)| {
                (
                    format!("{{outcome=\"{}\"}}", label_value(&outcome)),
                    count as f64,
                )
            })
            .collect(),
    );
    let counts = store.notification_counts()?;
    out.family(
        "beskedhent_notifications_pending",
        "gauge",
        "Notifications not delivered yet.",
        vec![(String::new(), counts.pending as f64)],
    );
    Ok(out.text)
}

/// The text being written, family by family.
#[derive(Default)]
struct Families {
    text: String,
}

impl Families {
    /// One metric family: its help, its type and its samples (labels, value).
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            // Milliseconds are precision enough, and keep the numbers short.
            let value = (value * 1000.0).round() / 1000.0;
            let _ = writeln!(self.text, "{name}{labels} {value}");
        }
    }
}

/// Unix time of a stored timestamp, in seconds.
fn seconds(text: Option<&str>) -> Option<f64> {
    text.and_then(crate::time::parse_stored)
        .map(|t| t.timestamp_millis() as f64 / 1000.0)
}

/// The families with one sample per feed: its runs and its messages.
fn feed_families(out: &mut Families, health: &[SourceHealth]) {
    let feed = |row: &SourceHealth| format!("{{feed=\"{}\"}}", label_value(&row.source));
    let per_feed = |value: &dyn Fn(&SourceHealth) -> Option<f64>| -> Vec<(String, f64)> {
        health
            .iter()
            .filter_map(|row| value(row).map(|value| (feed(row), value)))
            .collect()
    };
    out.family(
        "beskedhent_last_run_timestamp_seconds",
        "gauge",
        "When the newest run of the feed ended (or started, while it runs), Unix time.",
        per_feed(&|row| {
            seconds(row.last_ended_at.as_deref()).or(seconds(row.last_started_at.as_deref()))
        }),
    );
    out.family(
        "beskedhent_last_success_timestamp_seconds",
        "gauge",
        "When the newest successful run of the feed ended, Unix time.",
        per_feed(&|row| seconds(row.last_success_at.as_deref())),
    );
    out.family(
        "beskedhent_run_success",
        "gauge",
        "1 if the newest finished run of the feed succeeded, else 0.",
        per_feed(&|row| {
            row.last_status
                .as_deref()
                .map(|status| if status == "ok" { 1.0 } else { 0.0 })
        }),
    );
    let totals = health
        .iter()
        .flat_map(|row| {
            [
                ("new", row.messages),
                ("duplicate", row.duplicates),
                ("rejected", row.rejected),
            ]
            .map(|(result, value)| {
                (
                    format!(
                        "{{feed=\"{}\",result=\"{result}\"}}",
                        label_value(&row.source)
                    ),
                    value as f64,
                )
            })
        })
        .collect();
    out.family(
        "beskedhent_messages_total",
        "counter",
        "Messages received from the feed, by what became of them.",
        totals,
    );
    out.family(
        "beskedhent_run_duration_seconds",
        "gauge",
        "How long the newest finished run of the feed took.",
        per_feed(&|row| {
            let started = seconds(row.last_started_at.as_deref())?;
            let ended = seconds(row.last_ended_at.as_deref())?;
            Some((ended - started).max(0.0))
        }),
    );
}

/// A label value escaped for the text format (and masked: the file is readable by all).
fn label_value(text: &str) -> String {
    let text = crate::mask::mask_cpr_among_letters(text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}
