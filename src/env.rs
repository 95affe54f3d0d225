//! The environment, read in one place: every variable beskedhent looks at is named here, with
//! what it is for. The configuration's `*_env` keys name further variables holding secrets,
//! read through [`secret`] when they are needed and never logged.

use std::ffi::OsString;

/// The configuration file (as `--config`; the command line wins). Read by the command line.
pub const CONFIG: &str = "BESKEDHENT_CONFIG";

/// The log level or filter (`warn`, `info`, `debug`, `beskedhent=debug`).
pub const LOG: &str = "BESKEDHENT_LOG";

/// The log format: `text` (the default) or `json`.
pub const LOG_FORMAT: &str = "BESKEDHENT_LOG_FORMAT";

/// Set to migrate a replica without the copy taken first (when a backup was made another way).
pub const SKIP_UPGRADE_BACKUP: &str = "BESKEDHENT_SKIP_UPGRADE_BACKUP";

/// Set by systemd for a `Type=notify` service: where the daemon says it is ready.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Set by systemd when standard error goes to the journal, which adds its own timestamps.
pub const JOURNAL_STREAM: &str = "JOURNAL_STREAM";

/// `BESKEDHENT_LOG`, if set.
pub fn log_filter() -> Option<String> {
    std::env::var(LOG).ok()
}

/// `BESKEDHENT_LOG_FORMAT`, or empty.
pub fn log_format() -> String {
    std::env::var(LOG_FORMAT).unwrap_or_default()
}

/// Whether standard error goes to systemd's journal.
pub fn under_journal() -> bool {
    std::env::var_os(JOURNAL_STREAM).is_some()
}

/// Whether `BESKEDHENT_SKIP_UPGRADE_BACKUP` is set.
pub fn skip_upgrade_backup() -> bool {
    std::env::var_os(SKIP_UPGRADE_BACKUP).is_some()
}

/// systemd's notification socket, if there is one.
pub fn notify_socket() -> Option<OsString> {
    std::env::var_os(NOTIFY_SOCKET)
}

/// The secret in the variable `name` (a `*_env` key's value).
pub fn secret(name: &str) -> Result<String, std::env::VarError> {
    std::env::var(name)
}
