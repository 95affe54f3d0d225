//! The notify command of the tests: a script that logs what it is sent, and reading that log.

use std::path::PathBuf;

use super::Install;

/// A notify command: appends `KEY<TAB>EVENT<TAB>payload` to `sent.log`; fails while `fail`
/// exists; while `hang` exists, records its pid in `hang.pid` and sleeps after logging. The
/// pid file appears whole (written beside it, then renamed), so a test that sees it can read it.
pub const NOTIFY_SCRIPT: &str = r#"#!/bin/sh
dir=$(dirname "$0")
payload=$(cat)
if [ -e "$dir/fail" ]; then echo "refused for 0101701234" >&2; exit 1; fi
printf '%s\t%s\t%s\n' "$BESKEDHENT_KEY" "$BESKEDHENT_EVENT" "$payload" >> "$dir/sent.log"
if [ -e "$dir/hang" ]; then echo $$ > "$dir/hang.pid.$$"; mv "$dir/hang.pid.$$" "$dir/hang.pid"; sleep 60; fi
exit 0
"#;

/// Writes `script` into the installation as `alert.sh`, executable; its path.
pub fn write_notify_script(install: &Install, script: &str) -> PathBuf {
    let path = install.path("alert.sh");
    std::fs::write(&path, script).expect("script");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    path
}

/// The keys [`NOTIFY_SCRIPT`] was sent so far, in order.
pub fn sent(install: &Install) -> Vec<String> {
    std::fs::read_to_string(install.path("sent.log"))
        .unwrap_or_default()
        .lines()
        .map(|line| line.split('\t').next().unwrap_or_default().to_owned())
        .collect()
}

/// The payload (JSON) [`NOTIFY_SCRIPT`] was sent with the first key starting with `key`.
pub fn sent_payload(install: &Install, key: &str) -> serde_json::Value {
    let log = std::fs::read_to_string(install.path("sent.log")).expect("sent.log");
    let line = log
        .lines()
        .find(|line| line.starts_with(key))
        .unwrap_or_else(|| panic!("nothing sent for {key}:\n{log}"));
    serde_json::from_str(line.splitn(3, '\t').nth(2).expect("payload")).expect("json")
}
