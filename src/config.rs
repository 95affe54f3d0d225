//! The configuration file: raw TOML in, a validated [`Config`] out.
//!
//! Unknown keys are errors that name the key. Only `database` is required; each command checks
//! for the sections it needs. Relative paths are relative to the configuration file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::message::Decoder;
use crate::payload::post_status;
use crate::payload::registration::{Channel, RegistrationType};

/// Default for `max_message_bytes`: 10 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    database: PathBuf,
    max_message_bytes: Option<usize>,
    #[serde(default)]
    types: RawTypes,
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
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
                "configuration file `{}` not found; pass --config PATH or set BESKEDHENT_CONFIG",
                path.display()
            ),
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("failed to read configuration `{}`", path.display()));
            }
        };
        Config::parse(&text, path)
            .with_context(|| format!("invalid configuration `{}`", path.display()))
    }

    /// Parses configuration text; `path` is where it lives, for relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|error| anyhow::anyhow!("{}", error.to_string().trim_end()))?;
        let base = path.parent().unwrap_or(Path::new(""));
        let max_message_bytes = raw.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        if max_message_bytes == 0 {
            bail!("`max_message_bytes` must be at least 1");
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
        Ok(Config {
            path: path.to_path_buf(),
            database: base.join(raw.database),
            max_message_bytes,
            registrations,
        })
    }

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
                "`max_message_bytes` must be at least 1",
            ),
            (
                "database = \"r.db\"\nmax_message_bytes = \"big\"",
                "max_message_bytes",
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
        }
    }

    #[test]
    fn missing_file_says_how_to_point_at_one() {
        let error = Config::load(Path::new("/nonexistent/config.toml")).expect_err("missing");
        assert!(error.to_string().contains("BESKEDHENT_CONFIG"), "{error}");
    }
}
