//! The configuration file: raw TOML in, a validated [`Config`] out.
//!
//! Unknown keys are errors that name the key. Only `database` is required; each command checks
//! for the sections it needs. Relative paths are relative to the configuration file.

pub mod cron;
pub mod postgres;
mod sections;
#[cfg(test)]
mod tests;
mod validate;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::decode::message::Decoder;
use crate::decode::payload::registration::{Channel, RegistrationType};

pub use sections::{
    AmqpConfig, DEFAULT_LOOKUP_ENTITY_ID, DEFAULT_OVERDUE_DAYS, EventRules, FeedConfig, Fetch,
    LookupConfig, MetricsConfig, MirrorConfig, MonitorConfig, NotifyConfig, PullConfig,
    RetentionConfig, ScheduleConfig, StsConfig, SyncConfig,
};
use sections::{RawMirror, RawTypes, default_pkcs12_password_env};
use validate::*;
pub use validate::{check_source_name, pkcs12_password};

/// The installed package's configuration, read when neither `--config`, `BESKEDHENT_CONFIG`
/// nor a `config.toml` in the working directory names another.
pub const SYSTEM_CONFIG: &str = "/etc/beskedhent/config.toml";

/// Default for `wait_for_replica_seconds`: 10 minutes.
const DEFAULT_WAIT_FOR_REPLICA_SECONDS: u64 = 600;

/// Largest allowed `wait_for_replica_seconds`: a day.
const MAX_WAIT_FOR_REPLICA_SECONDS: u64 = 86_400;

/// `wait_for_replica_seconds`, checked, or its default.
fn wait_for_replica(seconds: Option<u64>) -> Result<std::time::Duration> {
    let seconds = seconds.unwrap_or(DEFAULT_WAIT_FOR_REPLICA_SECONDS);
    if !(1..=MAX_WAIT_FOR_REPLICA_SECONDS).contains(&seconds) {
        bail!(
            "`wait_for_replica_seconds` must be between 1 and {MAX_WAIT_FOR_REPLICA_SECONDS} (a day), got {seconds}"
        );
    }
    Ok(std::time::Duration::from_secs(seconds))
}

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
    wait_for_replica_seconds: Option<u64>,
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
    mirror: Option<RawMirror>,
    lookup: Option<LookupConfig>,
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

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// The replica, absolute or relative to the working directory.
    pub database: PathBuf,
    pub max_message_bytes: usize,
    /// How long a write waits for another writer before the command gives up (exit 5).
    pub wait_for_replica: std::time::Duration,
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
    /// `[mirror]`, no mirror when absent.
    pub mirror: Option<MirrorConfig>,
    /// `[lookup]`, no PostForespoerg when absent.
    pub lookup: Option<LookupConfig>,
}

/// `[notify]` with the environment variables holding secrets that its command must not see:
/// the PKCS#12 password, the webhook header's value, the mirror's password.
fn with_secrets(
    mut notify: NotifyConfig,
    sts: Option<&StsConfig>,
    mirror: Option<&MirrorConfig>,
) -> NotifyConfig {
    notify.secret_env = [
        Some(default_pkcs12_password_env()),
        sts.map(|sts| sts.pkcs12_password_env.clone()),
        notify.header_value_env.clone(),
        mirror.map(|mirror| mirror.password_env.clone()),
    ]
    .into_iter()
    .flatten()
    .collect();
    notify
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
        let wait_for_replica = wait_for_replica(raw.wait_for_replica_seconds)?;
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
        let mirror = raw
            .mirror
            .map(|mirror| validate_mirror(mirror, base, sts.as_ref()))
            .transpose()?;
        let lookup = raw
            .lookup
            .map(|lookup| validate_lookup(lookup, base, sts.as_ref()))
            .transpose()?;
        validate_sync(&raw.sync)?;
        if let Some(schedule) = &raw.schedule {
            crate::config::cron::validate(&schedule.cron)
                .map_err(|error| anyhow::anyhow!("`schedule.cron`: {error}"))?;
        }
        let notify = raw
            .notify
            .map(|notify| validate_notify(notify, base))
            .transpose()?
            .map(|notify| with_secrets(notify, sts.as_ref(), mirror.as_ref()));
        validate_monitor(&raw.monitor)?;
        validate_retention(&raw.retention)?;
        let metrics = raw
            .metrics
            .map(|metrics| validate_metrics(metrics, base, &base.join(&raw.database)))
            .transpose()?;
        Ok(Config {
            mirror,
            lookup,
            notify,
            monitor: raw.monitor,
            metrics,
            retention: raw.retention,
            path: path.to_path_buf(),
            database: base.join(raw.database),
            max_message_bytes,
            wait_for_replica,
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

impl Config {
    /// The decoder this configuration describes.
    pub fn decoder(&self) -> Decoder {
        Decoder {
            max_message_bytes: self.max_message_bytes,
            registrations: self.registrations.clone(),
        }
    }
}
