//! `status --check`: a Nagios/Icinga plugin, one line and an exit code, from the replica's run
//! history, refusals, overdue letters and the certificate. The metrics file is written by
//! `ops::metrics`.

use std::fmt::Write as _;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::config::{Config, MonitorConfig};
use crate::replica::{SourceHealth, Store};

/// The schema version monitoring needs (the `run` table).
const NEEDS_SCHEMA: i64 = 4;

/// A plugin state, in the order in which they combine (the worst wins): an unknown beats a
/// warning, a critical beats everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Ok,
    Warning,
    Unknown,
    Critical,
}

impl State {
    /// The plugin exit code: 0, 1, 2, 3.
    pub fn exit_code(self) -> u8 {
        match self {
            State::Ok => 0,
            State::Warning => 1,
            State::Critical => 2,
            State::Unknown => 3,
        }
    }

    fn word(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }
}

/// The result of `status --check`: one line of text and a state.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub state: State,
    /// `STATE - summary | perfdata`.
    pub line: String,
}

/// Runs every check against the configuration and the replica at `now`.
pub fn check(config: &Config, now: DateTime<Utc>) -> Verdict {
    let mut findings = Findings::default();
    match Store::open_existing(&config.database) {
        Err(error) => findings.add(
            State::Unknown,
            format!("cannot read the replica: {error:#}"),
        ),
        Ok(store) => match store.schema_version() {
            Ok(version) if version < NEEDS_SCHEMA => findings.add(
                State::Unknown,
                format!(
                    "the replica has schema version {version}; run `beskedhent init` to migrate it"
                ),
            ),
            Ok(_) => {
                if let Err(error) = check_replica(config, &store, now, &mut findings) {
                    findings.add(
                        State::Unknown,
                        format!("cannot read the replica: {error:#}"),
                    );
                }
            }
            Err(error) => findings.add(
                State::Unknown,
                format!("cannot read the replica: {error:#}"),
            ),
        },
    }
    check_certificate(config, now, &mut findings);
    findings.verdict()
}

#[derive(Default)]
struct Findings {
    /// Problems, worst first when shown.
    problems: Vec<(State, String)>,
    /// What is fine, shown when nothing is wrong.
    fine: Vec<String>,
    perfdata: Vec<String>,
}

impl Findings {
    fn add(&mut self, state: State, text: String) {
        if state == State::Ok {
            self.fine.push(text);
        } else {
            self.problems.push((state, text));
        }
    }

    /// Performance data whose thresholds are "at least this many" (in plugin range syntax: a
    /// value above threshold − 1 alerts).
    fn perf(&mut self, label: &str, value: impl std::fmt::Display, thresholds: (u64, u64)) {
        let range = |value: u64| {
            if value == 0 {
                String::new()
            } else {
                (value - 1).to_string()
            }
        };
        self.perf_ranges(label, value, (range(thresholds.0), range(thresholds.1)));
    }

    /// Performance data with its warning and critical ranges as written.
    fn perf_ranges(
        &mut self,
        label: &str,
        value: impl std::fmt::Display,
        ranges: (String, String),
    ) {
        let label: String = label
            .chars()
            .map(|c| {
                if c == '\'' || c == '=' || c == '|' || c.is_control() {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        self.perfdata
            .push(format!("'{label}'={value};{};{};0", ranges.0, ranges.1));
    }

    fn verdict(mut self) -> Verdict {
        let state = self
            .problems
            .iter()
            .map(|(state, _)| *state)
            .max()
            .unwrap_or(State::Ok);
        self.problems
            .sort_by_key(|(state, _)| std::cmp::Reverse(*state));
        let summary = if self.problems.is_empty() {
            self.fine.join("; ")
        } else {
            self.problems
                .iter()
                .map(|(_, text)| text.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mut line = format!("{} - {}", state.word(), summary);
        if !self.perfdata.is_empty() {
            let _ = write!(line, " | {}", self.perfdata.join(" "));
        }
        Verdict { state, line }
    }
}

fn plural(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

fn level(value: u64, warning: u64, critical: u64) -> State {
    if critical > 0 && value >= critical {
        State::Critical
    } else if warning > 0 && value >= warning {
        State::Warning
    } else {
        State::Ok
    }
}

/// "3 h 5 min" for a number of minutes.
fn minutes_text(minutes: i64) -> String {
    if minutes >= 60 * 48 {
        format!("{} days", minutes / (60 * 24))
    } else if minutes >= 60 {
        format!("{} h {} min", minutes / 60, minutes % 60)
    } else {
        format!("{minutes} min")
    }
}

/// The PostgreSQL mirror: a warning when what it has not copied yet waits longer than
/// `lag_warning_minutes` (since the oldest message not copied was received, or since the last
/// copy that caught up), with the last failure's reason.
fn check_mirror(
    mirror: &crate::config::MirrorConfig,
    store: &Store,
    now: DateTime<Utc>,
    findings: &mut Findings,
) -> Result<()> {
    if store.schema_version()? < 9 {
        findings.add(
            State::Warning,
            "the mirror needs replica schema 9: run `beskedhent init` to migrate".to_owned(),
        );
        return Ok(());
    }
    let state = store.mirror_state(&mirror.installation)?;
    let backlog = store.mirror_backlog(state.change_seq, state.message_seq)?;
    if backlog.changes + backlog.messages == 0 {
        findings.add(State::Ok, "the PostgreSQL mirror is up to date".to_owned());
        findings.perf_ranges("mirror_lag_seconds", 0, (String::new(), String::new()));
        return Ok(());
    }
    let since = backlog
        .oldest_received_at
        .iter()
        .chain(&state.mirrored_at)
        .filter_map(|text| crate::time::parse_stored(text))
        .min();
    let lag = since.map_or(0, |since| (now - since).num_seconds().max(0));
    let limit = mirror.lag_warning_minutes as i64 * 60;
    findings.perf_ranges(
        "mirror_lag_seconds",
        lag,
        (limit.to_string(), String::new()),
    );
    if since.is_some() && limit > 0 && lag <= limit {
        findings.add(
            State::Ok,
            format!("the PostgreSQL mirror is {} min behind", lag / 60),
        );
        return Ok(());
    }
    let failure = state
        .error
        .as_deref()
        .map(|error| format!("; the last try failed: {}", crate::mask::cap(error, 300)))
        .unwrap_or_default();
    findings.add(
        State::Warning,
        format!(
            "the PostgreSQL mirror is {} min behind ({} changes and {} messages not copied{failure}); see `beskedhent mirror`",
            lag / 60,
            backlog.changes,
            backlog.messages
        ),
    );
    Ok(())
}

fn check_replica(
    config: &Config,
    store: &Store,
    now: DateTime<Utc>,
    findings: &mut Findings,
) -> Result<()> {
    check_feeds(config, store, now, findings)?;
    let monitor: &MonitorConfig = &config.monitor;
    let since = crate::time::format_utc(now - chrono::Duration::hours(24));
    let rejected = store.rejected_since(&since)?.max(0) as u64;
    let state = level(
        rejected,
        monitor.rejected_warning,
        monitor.rejected_critical,
    );
    findings.add(
        state,
        format!(
            "{} refused in the last 24 h (see the `rejected` table)",
            plural(rejected, "message", "messages")
        ),
    );
    findings.perf(
        "rejected_24h",
        rejected,
        (monitor.rejected_warning, monitor.rejected_critical),
    );
    if monitor.overdue_days > 0 {
        check_overdue(monitor, store, now, findings)?;
    }
    if monitor.other_types_warning {
        check_other_types(store, findings)?;
    }
    if let Some(mirror) = &config.mirror {
        check_mirror(mirror, store, now, findings)?;
    }
    let counts = store.notification_counts()?;
    findings.perf("notifications_pending", counts.pending, (0, 0));
    if counts.failing > 0 {
        findings.add(
            State::Warning,
            format!(
                "{} cannot be delivered (see `beskedhent notify --dry-run`)",
                plural(counts.failing as u64, "notification", "notifications")
            ),
        );
    }
    Ok(())
}

/// Each feed's last run and last success (the configured feeds, or the sources the replica
/// knows when none is configured).
fn check_feeds(
    config: &Config,
    store: &Store,
    now: DateTime<Utc>,
    findings: &mut Findings,
) -> Result<()> {
    let monitor: &MonitorConfig = &config.monitor;
    let health = store.source_health()?;
    let mut feeds = config.feed_names();
    if feeds.is_empty() {
        feeds = health.iter().map(|row| row.source.clone()).collect();
    }
    if feeds.is_empty() {
        findings.add(
            State::Critical,
            "no feed configured and nothing received yet".into(),
        );
    }
    let mut recent = 0;
    for feed in &feeds {
        let row = health.iter().find(|row| &row.source == feed);
        check_feed(monitor, feed, row, now, findings, &mut recent);
    }
    if recent > 0 && recent == feeds.len() {
        findings.add(
            State::Ok,
            format!(
                "{recent} feed{} synced within {} min",
                if recent == 1 { "" } else { "s" },
                monitor.warn_after_minutes
            ),
        );
    }
    Ok(())
}

/// Messages of a beskedtype no `[types.*]` names: a warning that says how to take them in.
fn check_other_types(store: &Store, findings: &mut Findings) -> Result<()> {
    if let Some(line) = other_types_line(store)? {
        findings.add(State::Warning, line);
    }
    Ok(())
}

/// What `check` and `status --check` say of the messages kept as `other`, if there are any.
pub fn other_types_line(store: &Store) -> Result<Option<String>> {
    let types = store.other_beskedtypes()?;
    if types.is_empty() {
        return Ok(None);
    }
    let total: i64 = types.iter().map(|(_, count)| count).sum();
    let named: Vec<String> = types
        .iter()
        .take(3)
        .map(|(beskedtype, count)| format!("{beskedtype} ({count})"))
        .collect();
    Ok(Some(format!(
        "{} kept as `other`: no [types.*] names beskedtype {}{}; if they are registrations, set [types.digitalpost_registration] or [types.nemsms_registration] and run `beskedhent reprocess` (or [monitor] other_types_warning = false)",
        plural(total.unsigned_abs(), "message", "messages"),
        named.join(", "),
        if types.len() > 3 { ", ..." } else { "" }
    )))
}

/// Letters without a final status `overdue_days` after their latest status.
fn check_overdue(
    monitor: &MonitorConfig,
    store: &Store,
    now: DateTime<Utc>,
    findings: &mut Findings,
) -> Result<()> {
    let before = crate::time::format_utc(now - chrono::Duration::days(monitor.overdue_days.into()));
    let overdue = store.overdue_letters(&before)?.max(0) as u64;
    let state = level(overdue, monitor.overdue_warning, monitor.overdue_critical);
    findings.add(
        state,
        format!(
            "{} without a final status after {} days (`beskedhent letters --overdue {}`)",
            plural(overdue, "letter", "letters"),
            monitor.overdue_days,
            monitor.overdue_days
        ),
    );
    findings.perf(
        "overdue_letters",
        overdue,
        (monitor.overdue_warning, monitor.overdue_critical),
    );
    Ok(())
}

fn check_feed(
    monitor: &MonitorConfig,
    feed: &str,
    row: Option<&SourceHealth>,
    now: DateTime<Utc>,
    findings: &mut Findings,
    recent: &mut usize,
) {
    let thresholds = (
        monitor.warn_after_minutes * 60,
        monitor.critical_after_minutes * 60,
    );
    let last_success = row
        .and_then(|row| row.last_success_at.as_deref())
        .and_then(crate::time::parse_stored);
    match last_success {
        None => {
            findings.add(
                State::Critical,
                format!("feed {feed}: no successful run yet"),
            );
        }
        Some(at) => {
            let seconds = (now - at).num_seconds().max(0) as u64;
            let state = level(seconds, thresholds.0, thresholds.1);
            if state == State::Ok {
                *recent += 1;
            } else {
                findings.add(
                    state,
                    format!(
                        "feed {feed}: last successful run {} ago (at {})",
                        minutes_text((seconds / 60) as i64),
                        at.format("%Y-%m-%d %H:%M UTC")
                    ),
                );
            }
            findings.perf(
                &format!("{feed}_since_success"),
                format!("{seconds}s"),
                thresholds,
            );
        }
    }
    let failed = row.map_or(0, |row| row.failed_runs.max(0) as u64);
    let state = level(
        failed,
        monitor.failed_runs_warning,
        monitor.failed_runs_critical,
    );
    if state != State::Ok {
        let error = row
            .and_then(|row| row.last_error.as_deref())
            .map(|error| format!(": {}", crate::mask::cap(error, 300)))
            .unwrap_or_default();
        findings.add(
            state,
            format!(
                "feed {feed}: {} in a row{error}",
                plural(failed, "failed run", "failed runs")
            ),
        );
    }
    findings.perf(
        &format!("{feed}_failed_runs"),
        failed,
        (monitor.failed_runs_warning, monitor.failed_runs_critical),
    );
}

fn check_certificate(config: &Config, now: DateTime<Utc>, findings: &mut Findings) {
    let Some(sts) = config.sts() else {
        return;
    };
    let monitor = &config.monitor;
    match crate::pull::credentials::Credentials::load(sts)
        .and_then(|credentials| credentials.info())
    {
        Err(error) => findings.add(
            State::Unknown,
            format!("cannot read the [sts] certificate: {error:#}"),
        ),
        Ok(info) => {
            let days = info.days_left(now);
            let state = if days < 0
                || (monitor.certificate_critical_days > 0
                    && (days as u64) < monitor.certificate_critical_days)
            {
                State::Critical
            } else if monitor.certificate_warning_days > 0
                && (days as u64) < monitor.certificate_warning_days
            {
                State::Warning
            } else {
                State::Ok
            };
            let text = if days < 0 {
                format!(
                    "the certificate expired on {}; renew it",
                    info.not_after.format("%Y-%m-%d")
                )
            } else {
                format!(
                    "the certificate expires in {days} days ({})",
                    info.not_after.format("%Y-%m-%d")
                )
            };
            findings.add(state, text);
            // Fewer days is worse: `N:` alerts below N.
            let below = |value: u64| {
                if value == 0 {
                    String::new()
                } else {
                    format!("{value}:")
                }
            };
            findings.perf_ranges(
                "certificate_days",
                days,
                (
                    below(monitor.certificate_warning_days),
                    below(monitor.certificate_critical_days),
                ),
            );
        }
    }
}
