//! The sections of the configuration file, as TOML reads them, with their defaults.

use std::path::PathBuf;

use serde::Deserialize;

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
    /// WARNING when the replica holds messages of a beskedtype no `[types.*]` names (kept as
    /// `other`): registrations whose identifiers are not configured, say.
    #[serde(default = "default_true")]
    pub other_types_warning: bool,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        toml::from_str("").expect("every key has a default")
    }
}

pub(super) fn default_warn_after() -> u64 {
    30
}

pub(super) fn default_critical_after() -> u64 {
    120
}

pub(super) fn default_failed_runs_warning() -> u64 {
    1
}

pub(super) fn default_failed_runs_critical() -> u64 {
    3
}

pub(super) fn default_one() -> u64 {
    1
}

pub(super) fn default_certificate_warning() -> u64 {
    30
}

pub(super) fn default_certificate_critical() -> u64 {
    7
}

/// `[metrics]`: a Prometheus text file written after every run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where to write it, e.g. for node_exporter's textfile collector.
    pub textfile: PathBuf,
}

/// `[lookup]`: asking SF1601 PostForespoerg whether a party is registered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// The service platform's base address, e.g. `https://exttest.serviceplatformen.dk`.
    pub url: String,
    /// The entity id the STS token is asked for.
    #[serde(default = "default_lookup_entity_id")]
    pub entity_id: String,
    /// The organisation to ask as; `[sts] cvr` when not set.
    pub cvr: Option<String>,
    /// Questions per second, at most.
    #[serde(default = "default_lookup_per_second")]
    pub per_second: f64,
    /// Seconds one question (or the token exchange) may take.
    #[serde(default = "default_lookup_timeout")]
    pub timeout_seconds: u64,
    /// Further tries of a question that failed on the way (a timeout, a 5xx, a lost connection).
    #[serde(default = "default_lookup_retries")]
    pub retries: u32,
    /// Extra trust roots (PEM) for the service platform's certificate.
    pub ca_file: Option<PathBuf>,
}

/// `[lookup] entity_id` when not set.
pub const DEFAULT_LOOKUP_ENTITY_ID: &str = "http://entityid.kombit.dk/service/postforespoerg/1";

pub(super) fn default_lookup_entity_id() -> String {
    DEFAULT_LOOKUP_ENTITY_ID.to_owned()
}

pub(super) fn default_lookup_per_second() -> f64 {
    5.0
}

pub(super) fn default_lookup_timeout() -> u64 {
    30
}

pub(super) fn default_lookup_retries() -> u32 {
    2
}

/// `[mirror]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMirror {
    pub postgresql: String,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub installation: Option<String>,
    pub schema: Option<String>,
    #[serde(default)]
    pub envelopes: bool,
    pub lag_warning_minutes: Option<u64>,
    pub batch: Option<u32>,
    pub timeout_seconds: Option<u64>,
}

/// `[mirror]`: a copy of the public tables in PostgreSQL, kept up to date after every run.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// Where: `postgresql`, parsed.
    pub target: super::postgres::Target,
    /// A file holding the password (its first line), readable by its owner only.
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password (default `PGPASSWORD`), read when set.
    pub password_env: String,
    /// The name every row is marked with, so that several installations share one database.
    pub installation: String,
    /// The PostgreSQL schema of the tables.
    pub schema: String,
    /// Whether to copy the envelopes' bytes too.
    pub envelopes: bool,
    /// `status --check` warns when the mirror is this many minutes behind.
    pub lag_warning_minutes: u64,
    /// Changes (and new messages) per PostgreSQL transaction.
    pub batch: u32,
    /// Seconds to wait for PostgreSQL to connect or answer.
    pub timeout_seconds: u64,
}

impl MirrorConfig {
    /// The password, from `password_file` or `password_env`; none when neither holds one.
    pub fn password(&self) -> anyhow::Result<Option<String>> {
        use std::os::unix::fs::MetadataExt as _;
        if let Some(path) = &self.password_file {
            let (bytes, metadata) = crate::files::read_small_file(path).map_err(|error| {
                anyhow::anyhow!(
                    "cannot read `mirror.password_file` `{}`: {error}",
                    path.display()
                )
            })?;
            let me = crate::owner::euid();
            if metadata.uid() != me && metadata.uid() != 0 {
                anyhow::bail!(
                    "`mirror.password_file` `{}` belongs to user {}, not to {} or root; `chown` it",
                    path.display(),
                    crate::owner::user_name(metadata.uid()),
                    crate::owner::user_name(me)
                );
            }
            if metadata.mode() & 0o077 != 0 {
                anyhow::bail!(
                    "`mirror.password_file` `{}` can be read by other users (mode {}); `chmod 600` it",
                    path.display(),
                    crate::owner::mode(&metadata)
                );
            }
            let text = String::from_utf8(bytes).map_err(|_| {
                anyhow::anyhow!("`mirror.password_file` `{}` is not text", path.display())
            })?;
            let password = text.lines().next().unwrap_or("").to_owned();
            if password.is_empty() {
                anyhow::bail!(
                    "`mirror.password_file` `{}` is empty; its first line is the password",
                    path.display()
                );
            }
            return Ok(Some(password));
        }
        Ok(crate::env::secret(&self.password_env)
            .ok()
            .filter(|password| !password.is_empty()))
    }
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
    /// Delete the change feed's tombstones (deletions told to `export`) older than this.
    #[serde(default)]
    pub deletions_days: u32,
    /// Delete PostForespoerg's answers (`registration_lookup`) older than this.
    #[serde(default)]
    pub lookup_days: u32,
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

pub(super) fn default_overdue_days() -> u32 {
    DEFAULT_OVERDUE_DAYS
}

/// `[notify] overdue_days` when not set.
pub const DEFAULT_OVERDUE_DAYS: u32 = 5;

pub(super) fn default_failing_runs() -> u32 {
    3
}

pub(super) fn default_max_age_days() -> u32 {
    7
}

pub(super) fn default_notify_timeout() -> u64 {
    30
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

pub(super) fn default_pkcs12_password_env() -> String {
    "BESKEDHENT_PKCS12_PASSWORD".into()
}

pub(super) fn default_sts_timeout() -> u64 {
    30
}

pub(super) fn default_refresh_before() -> u64 {
    120
}

pub(super) fn default_true() -> bool {
    true
}

pub(super) fn default_heartbeat() -> u16 {
    30
}

pub(super) fn default_connect_timeout() -> u64 {
    30
}

pub(super) fn default_batch_size() -> usize {
    1000
}

pub(super) fn default_flush_interval() -> u64 {
    50
}

pub(super) fn default_prefetch() -> u16 {
    2000
}

pub(super) fn default_drain_check() -> u64 {
    200
}

pub(super) fn default_retries() -> u32 {
    5
}

pub(super) fn default_retry_backoff() -> u64 {
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
pub(super) struct RawTypes {
    pub(super) digitalpost_registration: Option<RawType>,
    pub(super) nemsms_registration: Option<RawType>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawType {
    pub(super) beskedtype: String,
    #[serde(default)]
    pub(super) registered: Vec<String>,
    #[serde(default)]
    pub(super) deregistered: Vec<String>,
}
