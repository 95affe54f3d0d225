//! The configuration file: raw TOML in, a validated [`Config`] out.
//!
//! Unknown keys are errors that name the key. Only `database` is required; each command checks
//! for the sections it needs. Relative paths are relative to the configuration file.

pub mod cron;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::decode::message::Decoder;
use crate::decode::payload::post_status;
use crate::decode::payload::registration::{Channel, RegistrationType};

/// The installed package's configuration, read when neither `--config`, `BESKEDHENT_CONFIG`
/// nor a `config.toml` in the working directory names another.
pub const SYSTEM_CONFIG: &str = "/etc/beskedhent/config.toml";

/// Default for `max_message_bytes`: 64 KiB (real envelopes are 3-7 KB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Largest allowed `max_message_bytes`: 32 MiB. Decoding a message can take about 2.75 times
/// its size (its bytes, a copy of a base64 text with character references in it, the payload
/// decoded); at this size that stays within the bound of 64 MiB + 2 × `max_message_bytes`. A
/// refused message is kept whole up to a larger size anyway.
pub const MAX_MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    database: PathBuf,
    max_message_bytes: Option<usize>,
    #[serde(default)]
    types: RawTypes,
    sts: Option<StsConfig>,
    amqp: Option<AmqpConfig>,
    #[serde(default)]
    feed: Vec<FeedConfig>,
    schedule: Option<ScheduleConfig>,
    #[serde(default)]
    sync: SyncConfig,
    notify: Option<NotifyConfig>,
    #[serde(default)]
    monitor: MonitorConfig,
    metrics: Option<MetricsConfig>,
    #[serde(default)]
    retention: RetentionConfig,
}

/// `[monitor]`: thresholds of `status --check`. Every key has a default; 0 turns a check off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// WARNING when a feed's last successful run is older than this many minutes.
    #[serde(default = "default_warn_after")]
    pub warn_after_minutes: u64,
    /// CRITICAL when it is older than this.
    #[serde(default = "default_critical_after")]
    pub critical_after_minutes: u64,
    /// WARNING when a feed failed this many runs in a row.
    #[serde(default = "default_failed_runs_warning")]
    pub failed_runs_warning: u64,
    /// CRITICAL when it failed this many runs in a row.
    #[serde(default = "default_failed_runs_critical")]
    pub failed_runs_critical: u64,
    /// WARNING when at least this many messages were refused in the last 24 hours.
    #[serde(default = "default_one")]
    pub rejected_warning: u64,
    /// CRITICAL when at least this many were (0: never).
    #[serde(default)]
    pub rejected_critical: u64,
    /// A letter is overdue when it has no final status this many days after it was first seen.
    #[serde(default = "default_overdue_days")]
    pub overdue_days: u32,
    /// WARNING when at least this many letters are overdue.
    #[serde(default = "default_one")]
    pub overdue_warning: u64,
    /// CRITICAL when at least this many are (0: never).
    #[serde(default)]
    pub overdue_critical: u64,
    /// WARNING when the [sts] certificate expires within this many days.
    #[serde(default = "default_certificate_warning")]
    pub certificate_warning_days: u64,
    /// CRITICAL when it expires within this many days.
    #[serde(default = "default_certificate_critical")]
    pub certificate_critical_days: u64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        toml::from_str("").expect("every key has a default")
    }
}

fn default_warn_after() -> u64 {
    30
}
fn default_critical_after() -> u64 {
    120
}
fn default_failed_runs_warning() -> u64 {
    1
}
fn default_failed_runs_critical() -> u64 {
    3
}
fn default_one() -> u64 {
    1
}
fn default_certificate_warning() -> u64 {
    30
}
fn default_certificate_critical() -> u64 {
    7
}

/// `[metrics]`: a Prometheus text file written after every run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where to write it, e.g. for node_exporter's textfile collector.
    pub textfile: PathBuf,
}

/// `[retention]`: how long personal data is kept. Nothing is deleted unless a key is set
/// (0 or absent: kept for ever).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Drop envelope bytes of messages older than this (the row and derived data stay).
    #[serde(default)]
    pub envelope_days: u32,
    /// Delete letters whose final status is older than this, with their statuses and messages.
    #[serde(default)]
    pub status_days: u32,
    /// Delete superseded registration rows older than this (the current one stays).
    #[serde(default)]
    pub registration_history_days: u32,
    /// Delete refused messages older than this.
    #[serde(default)]
    pub rejected_days: u32,
    /// Delete run history older than this.
    #[serde(default)]
    pub run_days: u32,
}

impl RetentionConfig {
    /// Whether any key is set.
    pub fn is_set(&self) -> bool {
        *self != RetentionConfig::default()
    }
}

/// What makes an event, from `[notify]`: given to the replica when it is opened for writing, so
/// that events are written with the changes that cause them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRules {
    /// A feed failing this many runs in a row is an event (0: never).
    pub failing_runs: u32,
    /// Events about things older than this many days are recorded but not sent (0: no limit).
    pub max_age_days: u32,
}

/// `[notify]`: who is told about failed and overdue letters, failing feeds and refused
/// messages. Off unless `command` or `webhook` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// A program and its arguments (no shell), run once per event with the event as JSON on
    /// standard input; exit 0 means delivered.
    #[serde(default)]
    pub command: Vec<String>,
    /// An `https://` URL the event is POSTed to as JSON; a 2xx answer means delivered.
    pub webhook: Option<String>,
    /// Extra trust roots (PEM) for the webhook's server certificate.
    pub ca_file: Option<PathBuf>,
    /// A header sent with every webhook request, e.g. `Authorization`...
    pub header_name: Option<String>,
    /// ...whose value is read from this environment variable (never from the file).
    pub header_value_env: Option<String>,
    /// Letters with no final status this many days after they were first seen (0: off).
    #[serde(default = "default_overdue_days")]
    pub overdue_days: u32,
    /// A feed that failed this many runs in a row (0: off).
    #[serde(default = "default_failing_runs")]
    pub failing_runs: u32,
    /// Events about statuses older than this are recorded but not sent (0: no limit).
    #[serde(default = "default_max_age_days")]
    pub max_age_days: u32,
    /// Seconds a command or webhook call may take.
    #[serde(default = "default_notify_timeout")]
    pub timeout_seconds: u64,
    /// Environment variables holding secrets (the PKCS#12 password, the header value): removed
    /// from the command's environment.
    #[serde(skip)]
    pub secret_env: Vec<String>,
}

impl NotifyConfig {
    /// The event rules these settings ask for.
    pub fn event_rules(&self) -> EventRules {
        EventRules {
            failing_runs: self.failing_runs,
            max_age_days: self.max_age_days,
        }
    }
}

fn default_overdue_days() -> u32 {
    5
}
fn default_failing_runs() -> u32 {
    3
}
fn default_max_age_days() -> u32 {
    7
}
fn default_notify_timeout() -> u64 {
    30
}

/// A TOML error said by its place (line and column) and its message, never by quoting the
/// line: a line may hold a secret (a token under a mistyped key, or a file that is not a
/// configuration at all, such as `/proc/self/environ`). What the message quotes has its escapes
/// read first, so that a CPR number written with them is masked too.
fn toml_error(text: &str, error: &toml::de::Error) -> anyhow::Error {
    let place = error
        .span()
        .map(|span| {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            let key = key_at(text, before.len())
                .map(|key| format!(" (`{key}`)"))
                .unwrap_or_default();
            format!("line {line}, column {column}{key}: ")
        })
        .unwrap_or_default();
    let message = crate::mask::cap(error.message().trim_end(), 512);
    anyhow::anyhow!(
        "{place}{}",
        crate::mask::mask_cpr_among_letters(&crate::mask::unescaped(&message))
    )
}

/// The key written on the line that holds byte `at` (`table.key`, under the nearest table
/// header above it), if the line reads as `key = …`: what the setting is called, never its
/// value.
fn key_at(text: &str, at: usize) -> Option<String> {
    let start = text.get(..at)?.rfind('\n').map_or(0, |newline| newline + 1);
    let line = text.get(start..)?.lines().next()?;
    let key = line.split_once('=')?.0.trim();
    let plain = |name: &str| {
        !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    if !plain(key) {
        return None;
    }
    let table = text
        .get(..start)?
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| line.starts_with('['))
        .map(|header| header.trim_matches(['[', ']']).trim())
        .filter(|table| plain(table));
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_owned(),
    })
}

/// A portable environment variable name: a letter or `_`, then letters, digits or `_`.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn validate_notify(mut notify: NotifyConfig, base: &Path) -> Result<NotifyConfig> {
    check_days("notify.overdue_days", notify.overdue_days)?;
    check_days("notify.max_age_days", notify.max_age_days)?;
    if notify.command.is_empty() && notify.webhook.is_none() {
        bail!(
            "`[notify]` needs `command` (a program and its arguments) or `webhook` (an https:// URL)"
        );
    }
    if notify
        .command
        .first()
        .is_some_and(|program| program.trim().is_empty())
    {
        bail!("`notify.command` starts with an empty program name");
    }
    if let Some(url) = &notify.webhook {
        let parsed = reqwest::Url::parse(url)
            .map_err(|error| anyhow::anyhow!("`notify.webhook` is not a URL: {error}"))?;
        if parsed.scheme() != "https" {
            bail!("`notify.webhook` must be an https:// URL (TLS verification is always on)");
        }
    }
    if notify.header_name.is_some() != notify.header_value_env.is_some() {
        bail!(
            "`notify.header_name` and `notify.header_value_env` go together: set both or neither"
        );
    }
    if let Some(name) = &notify.header_name {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            bail!("`notify.header_name` `{name}` is not a valid HTTP header name");
        }
        // Headers that say how the request travels, or that beskedhent sets itself: the
        // secret value must never go where one of them belongs.
        const RESERVED: [&str; 11] = [
            "host",
            "content-length",
            "content-type",
            "transfer-encoding",
            "connection",
            "keep-alive",
            "upgrade",
            "te",
            "trailer",
            "expect",
            "idempotency-key",
        ];
        let lower = name.to_ascii_lowercase();
        if RESERVED.contains(&lower.as_str()) || lower.starts_with("proxy-") {
            bail!(
                "`notify.header_name` `{name}` is a header beskedhent or HTTP itself sets; use the header the webhook reads its secret from, e.g. `Authorization`"
            );
        }
    }
    if let Some(env) = &notify.header_value_env
        && !is_env_name(env)
    {
        // Not repeated: it may be the secret itself, put here by mistake.
        bail!(
            "`notify.header_value_env` must be the name of the environment variable that holds the header's value (letters, digits and `_`, e.g. `BESKEDHENT_WEBHOOK_TOKEN`), never the value itself"
        );
    }
    check_wait(
        "notify.timeout_seconds",
        notify.timeout_seconds,
        1,
        MAX_WAIT_SECONDS,
    )?;
    notify.ca_file = notify.ca_file.map(|path| base.join(path));
    // Run as this user, perhaps as root: never looked up from where beskedhent happens to
    // run, nor in PATH. Who may change it is checked before each round (`owner`).
    if let Some(program) = notify.command.first()
        && !Path::new(program.as_str()).is_absolute()
    {
        bail!(
            "`notify.command` must start with the absolute path of the program (e.g. \"/usr/local/bin/alert\", or \"/usr/bin/logger\"), got `{}`: a relative name would be looked up from wherever beskedhent runs",
            crate::mask::cap(program, 200)
        );
    }
    Ok(notify)
}

/// `[sts]`: where and how to get a token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StsConfig {
    /// The REST issue endpoint, `https://.../runtime/api/rest/wstrust/v1/issue`.
    pub url: String,
    /// The entity id of the Beskedfordeler pull service.
    pub entity_id: String,
    /// The municipality's 8-digit CVR number (a feed may override it).
    pub cvr: String,
    /// PEM certificate (chain, leaf first).
    pub certificate: Option<PathBuf>,
    /// PEM private key of `certificate`.
    pub private_key: Option<PathBuf>,
    /// PKCS#12 file holding key and certificate, instead of `certificate` and `private_key`.
    pub pkcs12: Option<PathBuf>,
    /// The environment variable holding the PKCS#12 password.
    #[serde(default = "default_pkcs12_password_env")]
    pub pkcs12_password_env: String,
    /// Extra trust roots (PEM) for the STS's server certificate.
    pub ca_file: Option<PathBuf>,
    /// Timeout of one token request.
    #[serde(default = "default_sts_timeout")]
    pub timeout_seconds: u64,
    /// A token is renewed when it has less than this left.
    #[serde(default = "default_refresh_before")]
    pub refresh_before_seconds: u64,
}

/// `[amqp]`: the Beskedfordeler's broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// `amqps://host:5671/BF`: the path is the virtual host.
    pub url: String,
    /// Extra trust roots (PEM) for the broker's server certificate.
    pub ca_file: Option<PathBuf>,
    /// Present the STS certificate in the TLS handshake.
    #[serde(default = "default_true")]
    pub client_certificate: bool,
    /// AMQP heartbeat interval; 0 turns heartbeats off.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_seconds: u16,
    /// Timeout of connecting and logging in.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: u64,
}

/// One `[[feed]]`: a dueslag queue to drain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// The source name in `message.source` and `cursor`.
    pub name: String,
    /// The queue: the dueslag UUID.
    pub dueslag: String,
    /// The CVR the token is requested for; defaults to `[sts].cvr`.
    pub cvr: Option<String>,
}

/// `[schedule]`: when `daemon` runs a pass.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Six-field cron expression with seconds, e.g. `0 */5 * * * *`.
    pub cron: String,
    /// The daemon exits (code 4) after this many passes in a row in which a feed failed, so
    /// that a service manager sees it (0: never).
    #[serde(default)]
    pub exit_after_failed_passes: u32,
}

/// `[sync]`: tuning of a run. Every key has a safe default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Most messages per transaction.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest time a received message waits, unacknowledged, for its batch to be committed.
    #[serde(default = "default_flush_interval")]
    pub flush_interval_ms: u64,
    /// Deliveries the broker may send ahead of acknowledgements (the broker may allow fewer).
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// With nothing arriving for this long, beskedhent asks the broker whether the queue is
    /// empty, and ends the feed's run if it is.
    #[serde(default = "default_drain_check")]
    pub drain_check_ms: u64,
    /// Most messages per feed in one run; 0 means no limit.
    #[serde(default)]
    pub max_messages: u64,
    /// Longest run in seconds; 0 means no limit.
    #[serde(default)]
    pub max_seconds: u64,
    /// Reconnects after a failure (connection lost, broker restarted, token refused) before the
    /// feed's run gives up.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First wait before reconnecting; doubles each time, up to 30 s.
    #[serde(default = "default_retry_backoff")]
    pub retry_backoff_ms: u64,
    /// How deliveries are fetched: `consume` (the broker pushes, fast) or `get` (one
    /// `basic.get` per message, as other Beskedfordeler clients do).
    #[serde(default)]
    pub fetch: Fetch,
}

/// `[sync] fetch`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fetch {
    #[default]
    Consume,
    Get,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            batch_size: default_batch_size(),
            flush_interval_ms: default_flush_interval(),
            prefetch: default_prefetch(),
            drain_check_ms: default_drain_check(),
            max_messages: 0,
            max_seconds: 0,
            retries: default_retries(),
            retry_backoff_ms: default_retry_backoff(),
            fetch: Fetch::default(),
        }
    }
}

fn default_pkcs12_password_env() -> String {
    "BESKEDHENT_PKCS12_PASSWORD".into()
}
fn default_sts_timeout() -> u64 {
    30
}
fn default_refresh_before() -> u64 {
    120
}
fn default_true() -> bool {
    true
}
fn default_heartbeat() -> u16 {
    30
}
fn default_connect_timeout() -> u64 {
    30
}
fn default_batch_size() -> usize {
    500
}
fn default_flush_interval() -> u64 {
    50
}
fn default_prefetch() -> u16 {
    2000
}
fn default_drain_check() -> u64 {
    200
}
fn default_retries() -> u32 {
    5
}
fn default_retry_backoff() -> u64 {
    500
}

/// Everything `sync`, `daemon` and `check` need, validated.
#[derive(Debug, Clone)]
pub struct PullConfig {
    pub sts: StsConfig,
    pub amqp: AmqpConfig,
    pub feeds: Vec<FeedConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTypes {
    digitalpost_registration: Option<RawType>,
    nemsms_registration: Option<RawType>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawType {
    beskedtype: String,
    #[serde(default)]
    registered: Vec<String>,
    #[serde(default)]
    deregistered: Vec<String>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// The replica, absolute or relative to the working directory.
    pub database: PathBuf,
    pub max_message_bytes: usize,
    pub registrations: Vec<RegistrationType>,
    sts: Option<StsConfig>,
    amqp: Option<AmqpConfig>,
    feeds: Vec<FeedConfig>,
    schedule: Option<ScheduleConfig>,
    pub sync: SyncConfig,
    /// `[notify]`, when configured.
    pub notify: Option<NotifyConfig>,
    /// `[monitor]`, defaults when absent.
    pub monitor: MonitorConfig,
    /// `[metrics]`, when configured.
    pub metrics: Option<MetricsConfig>,
    /// `[retention]`, nothing deleted when absent.
    pub retention: RetentionConfig,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match crate::files::read_small_file(path) {
            Ok((bytes, metadata)) => {
                crate::owner::check_instructions(path, &metadata, "configuration")?;
                String::from_utf8(bytes).map_err(|_| {
                    anyhow::anyhow!(
                        "failed to read configuration `{}`: it is not UTF-8 text",
                        path.display()
                    )
                })?
            }
            Err(error)
                if error.kind() == std::io::ErrorKind::NotFound
                    && std::fs::symlink_metadata(path).is_ok() =>
            {
                bail!(
                    "configuration `{}` is a symbolic link to `{}`, which does not exist; pass --config with the file itself",
                    path.display(),
                    std::fs::read_link(path).unwrap_or_default().display()
                )
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
                "configuration file `{}` not found{}; pass --config PATH or set BESKEDHENT_CONFIG",
                path.display(),
                if path == Path::new(SYSTEM_CONFIG) {
                    " (nor `config.toml` in the working directory)".to_owned()
                } else {
                    String::new()
                }
            ),
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("failed to read configuration `{}`", path.display()));
            }
        };
        // Relative paths in it are relative to the file itself: through a link, to where the
        // link leads, never to the link's own directory (which another user may fill).
        let path =
            if std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink()) {
                std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
            } else {
                path.to_path_buf()
            };
        Config::parse(&text, &path)
            .with_context(|| format!("invalid configuration `{}`", path.display()))
    }

    /// Parses configuration text; `path` is where it lives, for relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|error| toml_error(text, &error))?;
        let base = path.parent().unwrap_or(Path::new(""));
        let max_message_bytes = raw.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        if max_message_bytes == 0 || max_message_bytes > MAX_MAX_MESSAGE_BYTES {
            bail!(
                "`max_message_bytes` must be between 1 and {MAX_MAX_MESSAGE_BYTES} (32 MiB), got {max_message_bytes}"
            );
        }
        if raw.database.as_os_str().is_empty() {
            bail!(
                "`database` is empty; give the path of the replica, e.g. database = \"replica.db\""
            );
        }
        let mut registrations = Vec::new();
        for (channel, raw_type) in [
            (Channel::DigitalPost, raw.types.digitalpost_registration),
            (Channel::NemSms, raw.types.nemsms_registration),
        ] {
            if let Some(raw_type) = raw_type {
                registrations.push(registration_type(channel, raw_type)?);
            }
        }
        if let [first, second] = registrations.as_slice()
            && first.beskedtype.eq_ignore_ascii_case(&second.beskedtype)
        {
            bail!(
                "`types.digitalpost_registration.beskedtype` and `types.nemsms_registration.beskedtype` are the same"
            );
        }
        let sts = raw.sts.map(|sts| validate_sts(sts, base)).transpose()?;
        let amqp = raw.amqp.map(|amqp| validate_amqp(amqp, base)).transpose()?;
        let feeds = validate_feeds(raw.feed)?;
        validate_sync(&raw.sync)?;
        if let Some(schedule) = &raw.schedule {
            crate::config::cron::validate(&schedule.cron)
                .map_err(|error| anyhow::anyhow!("`schedule.cron`: {error}"))?;
        }
        let mut notify = raw
            .notify
            .map(|notify| validate_notify(notify, base))
            .transpose()?;
        if let Some(notify) = &mut notify {
            notify.secret_env = [
                Some(default_pkcs12_password_env()),
                sts.as_ref().map(|sts| sts.pkcs12_password_env.clone()),
                notify.header_value_env.clone(),
            ]
            .into_iter()
            .flatten()
            .collect();
        }
        validate_monitor(&raw.monitor)?;
        validate_retention(&raw.retention)?;
        let metrics = raw
            .metrics
            .map(|metrics| validate_metrics(metrics, base, &base.join(&raw.database)))
            .transpose()?;
        Ok(Config {
            notify,
            monitor: raw.monitor,
            metrics,
            retention: raw.retention,
            path: path.to_path_buf(),
            database: base.join(raw.database),
            max_message_bytes,
            registrations,
            sts,
            amqp,
            feeds,
            schedule: raw.schedule,
            sync: raw.sync,
        })
    }

    /// The sections pulling needs: `[sts]`, `[amqp]` and at least one `[[feed]]`.
    pub fn pull(&self) -> Result<PullConfig> {
        let missing = |what: &str| {
            anyhow::anyhow!(
                "`{}` has no {what}; `sync`, `daemon` and `check` need [sts], [amqp] and at least one [[feed]] (see docs/configuration.md)",
                self.path.display()
            )
        };
        Ok(PullConfig {
            sts: self.sts.clone().ok_or_else(|| missing("[sts] section"))?,
            amqp: self.amqp.clone().ok_or_else(|| missing("[amqp] section"))?,
            feeds: if self.feeds.is_empty() {
                return Err(missing("[[feed]] section"));
            } else {
                self.feeds.clone()
            },
        })
    }

    /// The events to record with the changes that cause them: `[notify]`'s rules, or none.
    pub fn event_rules(&self) -> Option<EventRules> {
        self.notify.as_ref().map(NotifyConfig::event_rules)
    }

    /// The names of the configured `[[feed]]`s.
    pub fn feed_names(&self) -> Vec<String> {
        self.feeds.iter().map(|feed| feed.name.clone()).collect()
    }

    /// The CVR numbers of the `[[feed]]`s that name their own.
    pub fn feed_cvrs(&self) -> Vec<String> {
        self.feeds
            .iter()
            .filter_map(|feed| feed.cvr.clone())
            .collect()
    }

    /// `[sts]`, when configured.
    pub fn sts(&self) -> Option<&StsConfig> {
        self.sts.as_ref()
    }

    /// The `[schedule]` section `daemon` needs.
    pub fn schedule(&self) -> Result<&ScheduleConfig> {
        self.schedule.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "`{}` has no [schedule] section; `daemon` needs one, e.g. cron = \"0 */5 * * * *\"",
                self.path.display()
            )
        })
    }
}

fn validate_retention(retention: &RetentionConfig) -> Result<()> {
    for (key, days) in [
        ("retention.envelope_days", retention.envelope_days),
        ("retention.status_days", retention.status_days),
        (
            "retention.registration_history_days",
            retention.registration_history_days,
        ),
        ("retention.rejected_days", retention.rejected_days),
        ("retention.run_days", retention.run_days),
    ] {
        check_days(key, days)?;
    }
    Ok(())
}

fn validate_monitor(monitor: &MonitorConfig) -> Result<()> {
    check_days("monitor.overdue_days", monitor.overdue_days)?;
    for (key, value, max) in [
        (
            "monitor.warn_after_minutes",
            monitor.warn_after_minutes,
            u64::from(MAX_DAYS) * 24 * 60,
        ),
        (
            "monitor.critical_after_minutes",
            monitor.critical_after_minutes,
            u64::from(MAX_DAYS) * 24 * 60,
        ),
        (
            "monitor.certificate_warning_days",
            monitor.certificate_warning_days,
            u64::from(MAX_DAYS),
        ),
        (
            "monitor.certificate_critical_days",
            monitor.certificate_critical_days,
            u64::from(MAX_DAYS),
        ),
    ] {
        if value > max {
            bail!("`{key}` is {value}; at most {max} (100 years)");
        }
    }
    let pairs = [
        (
            "warn_after_minutes",
            monitor.warn_after_minutes,
            "critical_after_minutes",
            monitor.critical_after_minutes,
        ),
        (
            "failed_runs_warning",
            monitor.failed_runs_warning,
            "failed_runs_critical",
            monitor.failed_runs_critical,
        ),
        (
            "rejected_warning",
            monitor.rejected_warning,
            "rejected_critical",
            monitor.rejected_critical,
        ),
        (
            "overdue_warning",
            monitor.overdue_warning,
            "overdue_critical",
            monitor.overdue_critical,
        ),
    ];
    for (warn_key, warn, critical_key, critical) in pairs {
        if warn > 0 && critical > 0 && warn > critical {
            bail!(
                "`monitor.{warn_key}` ({warn}) is above `monitor.{critical_key}` ({critical}); the warning threshold must come first"
            );
        }
    }
    if monitor.certificate_critical_days > monitor.certificate_warning_days
        && monitor.certificate_warning_days > 0
    {
        bail!(
            "`monitor.certificate_critical_days` ({}) is above `monitor.certificate_warning_days` ({}); the warning must come first",
            monitor.certificate_critical_days,
            monitor.certificate_warning_days
        );
    }
    Ok(())
}

fn validate_metrics(
    mut metrics: MetricsConfig,
    base: &Path,
    database: &Path,
) -> Result<MetricsConfig> {
    if metrics.textfile.as_os_str().is_empty() {
        bail!(
            "`metrics.textfile` is empty; give a file path, e.g. \"/var/lib/prometheus/node-exporter/beskedhent.prom\""
        );
    }
    metrics.textfile = base.join(&metrics.textfile);
    // Renamed into place: over the replica or a file SQLite keeps beside it, it would destroy
    // the replica.
    let (file, replica) = (
        crate::files::real_path(&metrics.textfile),
        crate::files::real_path(database),
    );
    let beside = file.parent() == replica.parent();
    let (name, own) = (file.file_name(), replica.file_name());
    if let (true, Some(name), Some(own)) = (beside, name, own) {
        use std::os::unix::ffi::OsStrExt;
        if crate::files::is_own_file_name(own.as_bytes(), name.as_bytes()) {
            bail!(
                "`metrics.textfile` `{}` is the replica or one of its own files; name a file of its own, e.g. in node_exporter's textfile directory",
                metrics.textfile.display()
            );
        }
    }
    if metrics.textfile.is_dir() {
        bail!(
            "`metrics.textfile` `{}` is a directory; name a file in it, e.g. `{}`",
            metrics.textfile.display(),
            metrics.textfile.join("beskedhent.prom").display()
        );
    }
    Ok(metrics)
}

/// The PKCS#12 password, from the environment variable named in the configuration.
pub fn pkcs12_password(sts: &StsConfig) -> Result<String> {
    crate::env::secret(&sts.pkcs12_password_env).with_context(|| {
        format!(
            "the PKCS#12 password is read from the environment variable `{}`, which is not set",
            sts.pkcs12_password_env
        )
    })
}

fn validate_sts(mut sts: StsConfig, base: &Path) -> Result<StsConfig> {
    if !sts.url.starts_with("https://") {
        bail!("`sts.url` must be an https:// URL, got `{}`", sts.url);
    }
    if sts.entity_id.trim().is_empty() {
        bail!("`sts.entity_id` is empty; e.g. http://entityid.kombit.dk/service/bfo_modtag/2");
    }
    check_cvr("sts.cvr", &sts.cvr)?;
    match (&sts.certificate, &sts.private_key, &sts.pkcs12) {
        (Some(_), Some(_), None) | (None, None, Some(_)) => {}
        _ => bail!(
            "`[sts]` needs either `certificate` and `private_key` (PEM files) or `pkcs12` (a .p12 file), not both"
        ),
    }
    for path in [
        &mut sts.certificate,
        &mut sts.private_key,
        &mut sts.pkcs12,
        &mut sts.ca_file,
    ]
    .into_iter()
    .flatten()
    {
        *path = base.join(&*path);
    }
    check_wait(
        "sts.timeout_seconds",
        sts.timeout_seconds,
        1,
        MAX_WAIT_SECONDS,
    )?;
    check_wait(
        "sts.refresh_before_seconds",
        sts.refresh_before_seconds,
        0,
        MAX_WAIT_SECONDS,
    )?;
    Ok(sts)
}

fn validate_amqp(mut amqp: AmqpConfig, base: &Path) -> Result<AmqpConfig> {
    if !amqp.url.starts_with("amqps://") {
        bail!(
            "`amqp.url` must be an amqps:// URL (AMQP over TLS), got `{}`",
            amqp.url
        );
    }
    if let Some(path) = &mut amqp.ca_file {
        *path = base.join(&*path);
    }
    check_wait(
        "amqp.connect_timeout_seconds",
        amqp.connect_timeout_seconds,
        1,
        MAX_WAIT_SECONDS,
    )?;
    Ok(amqp)
}

/// A source name (a feed's `name`, `import --source`): 1 to 64 letters, digits, `-`, `_` or
/// `.`, starting with a letter, so that it is safe in file names, metrics labels and plugin
/// output, and never looks like a CPR number.
pub fn check_source_name(what: &str, name: &str) -> Result<()> {
    // First whether it could hold a CPR number, so that no other error shows its digits.
    check_source_name_digits(what, name)?;
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid {
        bail!(
            "{what} `{}` must be 1 to 64 letters, digits, `-`, `_` or `.`, starting with a letter",
            crate::mask::cap(name, 80)
        );
    }
    Ok(())
}

/// A name is kept in every row it stores, the run history and file names: never a CPR number,
/// however it is joined to the rest or split: ten of its digits in a row (whatever stands
/// between them) whose first four are a day and a month are refused.
fn check_source_name_digits(what: &str, name: &str) -> Result<()> {
    let digits: Vec<u8> = name
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    let cpr_like = digits.windows(10).any(|ten| {
        let (day, month) = (ten[0] * 10 + ten[1], ten[2] * 10 + ten[3]);
        matches!(day, 1..=31 | 61..=91) && matches!(month, 1..=12)
    });
    if cpr_like {
        let hidden: String = name
            .chars()
            .map(|c| if c.is_ascii_digit() { '*' } else { c })
            .collect();
        bail!(
            "{what} `{hidden}` holds what could be a CPR number (ten digits starting with a date); choose a name with fewer digits"
        );
    }
    Ok(())
}

/// Longest period a `*_days` key may give: 100 years.
const MAX_DAYS: u32 = 36_500;

/// Longest a timeout or a wait may be: a day. Longer is a mistake (and would overflow clocks).
const MAX_WAIT_SECONDS: u64 = 86_400;

/// A time value within `min..=max` (in its key's unit).
fn check_wait(key: &str, value: u64, min: u64, max: u64) -> Result<()> {
    if value < min || value > max {
        bail!("`{key}` is {value}; it must be from {min} to {max}");
    }
    Ok(())
}

fn check_days(key: &str, days: u32) -> Result<()> {
    if days > MAX_DAYS {
        bail!("`{key}` is {days} days; at most {MAX_DAYS} (100 years), or 0 where 0 means off");
    }
    Ok(())
}

fn validate_feeds(feeds: Vec<FeedConfig>) -> Result<Vec<FeedConfig>> {
    let mut seen = std::collections::HashSet::new();
    for feed in &feeds {
        check_source_name("`feed.name`", &feed.name)?;
        if !seen.insert(feed.name.as_str()) {
            bail!("two [[feed]] sections are named `{}`", feed.name);
        }
        if feed.name == "import" {
            bail!("`feed.name` `import` is the default source of `import`; choose another name");
        }
        if feed.dueslag.trim().is_empty() {
            bail!(
                "`dueslag` of feed `{}` is empty; give the queue's UUID",
                feed.name
            );
        }
        if let Some(cvr) = &feed.cvr {
            check_cvr(&format!("cvr of feed `{}`", feed.name), cvr)?;
        }
    }
    Ok(feeds)
}

fn validate_sync(sync: &SyncConfig) -> Result<()> {
    if sync.batch_size == 0 {
        bail!("`sync.batch_size` must be at least 1");
    }
    if sync.prefetch == 0 {
        bail!("`sync.prefetch` must be at least 1");
    }
    for (key, value) in [
        ("sync.flush_interval_ms", sync.flush_interval_ms),
        ("sync.drain_check_ms", sync.drain_check_ms),
    ] {
        check_wait(key, value, 1, MAX_WAIT_SECONDS * 1000)?;
    }
    check_wait(
        "sync.retry_backoff_ms",
        sync.retry_backoff_ms,
        0,
        MAX_WAIT_SECONDS * 1000,
    )?;
    check_wait(
        "sync.max_seconds",
        sync.max_seconds,
        0,
        u64::from(MAX_DAYS) * 86_400,
    )?;
    Ok(())
}

fn check_cvr(key: &str, cvr: &str) -> Result<()> {
    if cvr.len() != 8 || !cvr.bytes().all(|b| b.is_ascii_digit()) {
        bail!("`{key}` must be an 8-digit CVR number, got `{cvr}`");
    }
    Ok(())
}

impl Config {
    /// The decoder this configuration describes.
    pub fn decoder(&self) -> Decoder {
        Decoder {
            max_message_bytes: self.max_message_bytes,
            registrations: self.registrations.clone(),
        }
    }
}

fn registration_type(channel: Channel, raw: RawType) -> Result<RegistrationType> {
    let key = channel.config_key();
    let trimmed = |values: Vec<String>| -> Vec<String> {
        values.into_iter().map(|v| v.trim().to_owned()).collect()
    };
    let beskedtype = raw.beskedtype.trim().to_owned();
    if beskedtype.is_empty() {
        bail!(
            "`types.{key}.beskedtype` is empty; give the beskedtype UUID from the Beskedfordeler"
        );
    }
    if beskedtype.eq_ignore_ascii_case(post_status::BESKEDTYPE) {
        bail!("`types.{key}.beskedtype` is the PKO_PostStatus beskedtype, which is built in");
    }
    let registered = trimmed(raw.registered);
    let deregistered = trimmed(raw.deregistered);
    if let Some(both) = registered
        .iter()
        .find(|id| deregistered.iter().any(|d| d.eq_ignore_ascii_case(id)))
    {
        bail!("`{both}` is in both `types.{key}.registered` and `types.{key}.deregistered`");
    }
    Ok(RegistrationType {
        channel,
        beskedtype,
        registered,
        deregistered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/etc/beskedhent/config.toml"))
    }

    #[test]
    fn a_source_name_never_holds_a_cpr_number() {
        for name in [
            "a-0101901234",
            "b.010190-1234",
            "import_0101901234",
            "a0101701234",
            "x010170.1234",
            "q01-01-70-12-34",
            // Against the character rule too: the digits are not shown by that error either.
            "a0101701234 ",
            "a010170\u{a0}1234",
        ] {
            let error = check_source_name("--source", name)
                .expect_err(name)
                .to_string();
            assert!(error.contains("CPR"), "{error}");
            assert!(!error.contains("1234"), "masked: {error}");
        }
        check_source_name("--source", "feed-2026").expect("a plain name");
        check_source_name("--source", "feed-2026-11-28").expect("a date");
        check_source_name("--source", "a9999999999").expect("no date");
        check_source_name("--source", "import").expect("the default");
    }

    #[test]
    fn a_notify_program_must_be_an_absolute_path() {
        for relative in ["./alert.sh", "bin/alert", "logger", "../x"] {
            let error = check(&format!(
                "database = \"replica.db\"\n[notify]\ncommand = [\"{relative}\", \"--flag\"]\n"
            ))
            .expect_err("relative");
            assert!(format!("{error:#}").contains("absolute path"), "{error:#}");
        }
        let config =
            check("database = \"replica.db\"\n[notify]\ncommand = [\"/usr/bin/logger\"]\n")
                .expect("valid");
        assert_eq!(config.notify.expect("notify").command, ["/usr/bin/logger"]);
    }

    #[test]
    fn minimal_config_has_defaults() {
        let config = check("database = \"replica.db\"").expect("valid");
        assert_eq!(config.database, Path::new("/etc/beskedhent/replica.db"));
        assert_eq!(config.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
        assert!(config.registrations.is_empty());
    }

    #[test]
    fn absolute_database_path_is_kept() {
        let config = check("database = \"/var/lib/b/r.db\"").expect("valid");
        assert_eq!(config.database, Path::new("/var/lib/b/r.db"));
    }

    #[test]
    fn registration_types_are_read() {
        let config = check(
            r#"
database = "r.db"
[types.nemsms_registration]
beskedtype = " B "
registered = ["r1", "r2"]
deregistered = ["d1"]
"#,
        )
        .expect("valid");
        assert_eq!(
            config.registrations,
            [RegistrationType {
                channel: Channel::NemSms,
                beskedtype: "B".into(),
                registered: vec!["r1".into(), "r2".into()],
                deregistered: vec!["d1".into()],
            }]
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("database = \"r.db\"\ncolour = 1", "unknown field `colour`"),
            (
                "database = \"r.db\"\n[types.fax]\nbeskedtype = \"x\"",
                "unknown field `fax`",
            ),
            (
                "database = \"r.db\"\n[types.nemsms_registration]\nbeskedtype = \"x\"\nregisterd = []",
                "unknown field `registerd`",
            ),
            ("max_message_bytes = 5", "missing field `database`"),
            (
                "database = \"r.db\"\nmax_message_bytes = 0",
                "`max_message_bytes` must be between 1 and 33554432",
            ),
            (
                "database = \"r.db\"\nmax_message_bytes = 33554433",
                "`max_message_bytes` must be between 1 and 33554432",
            ),
            (
                "database = \"r.db\"\nmax_message_bytes = \"big\"",
                "line 2, column 21 (`max_message_bytes`): invalid type",
            ),
            (
                "database = \"r.db\"\n[notify]\ncommand = [\"x\"]\nheader_value = \"Bearer s3cret\"",
                "line 4, column 1 (`notify.header_value`): unknown field `header_value`",
            ),
            ("database = \"\"", "`database` is empty"),
            (
                "database = \"r.db\"\n[types.nemsms_registration]\nbeskedtype = \"d2bed63c-4853-4008-b6e0-a74c15b15fbf\"",
                "built in",
            ),
            (
                "database = \"r.db\"\n[types.nemsms_registration]\nbeskedtype = \"x\"\nregistered = [\"a\"]\nderegistered = [\"A\"]",
                "in both",
            ),
            (
                "database = \"r.db\"\n[types.nemsms_registration]\nbeskedtype = \"x\"\n[types.digitalpost_registration]\nbeskedtype = \"X\"",
                "are the same",
            ),
            ("database = ", "line 1"),
        ];
        for (text, expected) in cases {
            let error = format!("{:#}", check(text).expect_err(text));
            assert!(
                error.contains(expected),
                "{text:?}: got `{error}`, want `{expected}`"
            );
            assert!(!error.contains("s3cret"), "{error}");
        }
    }

    #[test]
    fn missing_file_says_how_to_point_at_one() {
        let error = Config::load(Path::new("/nonexistent/config.toml")).expect_err("missing");
        assert!(error.to_string().contains("BESKEDHENT_CONFIG"), "{error}");
    }
}
