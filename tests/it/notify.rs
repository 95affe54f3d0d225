//! Notifications: which events are recorded, that each is sent at least once and, once marked,
//! never again, and that failed sends are retried.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sample::{Status, status_envelope_with};

use crate::support::{BIN, Install, outcome, rows, test_uuid, value};

/// A notify command: appends `KEY<TAB>EVENT<TAB>payload` to `sent.log`; fails while `fail`
/// exists; while `hang` exists, records its pid and sleeps after logging.
pub const SCRIPT: &str = r#"#!/bin/sh
dir=$(dirname "$0")
payload=$(cat)
if [ -e "$dir/fail" ]; then echo "refused for 0101701234" >&2; exit 1; fi
printf '%s\t%s\t%s\n' "$BESKEDHENT_KEY" "$BESKEDHENT_EVENT" "$payload" >> "$dir/sent.log"
if [ -e "$dir/hang" ]; then echo $$ > "$dir/hang.pid"; sleep 60; fi
exit 0
"#;

/// Writes [`SCRIPT`] into the installation; its path.
pub fn write_script(install: &Install) -> std::path::PathBuf {
    let script = install.path("alert.sh");
    std::fs::write(&script, SCRIPT).expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    script
}

fn install(overdue_days: u32) -> Install {
    let install = Install::new("");
    let script = write_script(&install);
    install.append_config(&format!(
        "[notify]\ncommand = [\"{}\", \"--flag\"]\noverdue_days = {overdue_days}\n",
        script.display()
    ));
    install
}

pub fn ago(hours: i64) -> String {
    beskedhent::time::format_utc(chrono::Utc::now() - chrono::Duration::hours(hours))
}

/// Writes one status envelope into `dir`.
fn status(dir: &Path, name: &str, besked_id: &str, letter: &str, at: &str, kind: Status<'_>) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let envelope = status_envelope_with(besked_id, letter, &Status { at, ..kind });
    std::fs::write(dir.join(name), envelope).expect("write");
}

/// The keys sent so far, in order.
pub fn sent(install: &Install) -> Vec<String> {
    std::fs::read_to_string(install.path("sent.log"))
        .unwrap_or_default()
        .lines()
        .map(|line| line.split('\t').next().unwrap_or_default().to_owned())
        .collect()
}

fn import(install: &Install, dir: &Path) -> (i32, String, String) {
    outcome(&install.run(&["import", dir.to_str().expect("utf-8")]))
}

#[test]
fn each_event_is_sent_once_and_old_ones_are_only_recorded() {
    let install = install(5);
    let first = install.path("first");
    let (l1, l2, l3, l4, l5) = (
        test_uuid(0xa1, 1),
        test_uuid(0xa1, 2),
        test_uuid(0xa1, 3),
        test_uuid(0xa1, 4),
        test_uuid(0xa1, 5),
    );
    // l1: its failure arrives before the earlier status (out of order).
    status(
        &first,
        "1.xml",
        &test_uuid(0xb1, 1),
        &l1,
        &ago(1),
        Status::FAILED,
    );
    // l2: failed, then a later non-final status (below): still failed, told once.
    status(
        &first,
        "2.xml",
        &test_uuid(0xb1, 2),
        &l2,
        &ago(3),
        Status::FAILED,
    );
    // l3: failed 30 days ago: recorded, not sent (max_age_days = 7 by default).
    status(
        &first,
        "3.xml",
        &test_uuid(0xb1, 3),
        &l3,
        &ago(30 * 24),
        Status::FAILED,
    );
    // l4: no final status 6 days after it was first seen: overdue.
    status(
        &first,
        "4.xml",
        &test_uuid(0xb1, 4),
        &l4,
        &ago(6 * 24),
        Status::SENT,
    );
    // l5: delivered: nothing to tell.
    status(
        &first,
        "5.xml",
        &test_uuid(0xb1, 5),
        &l5,
        &ago(2),
        Status::DELIVERED,
    );
    std::fs::write(first.join("6.xml"), b"<not-an-envelope/>").expect("write");
    let (code, stdout, stderr) = import(&install, &first);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stdout.contains("notifications: 4 sent, 0 failed"),
        "{stdout}{stderr}"
    );
    let mut keys = sent(&install);
    keys.sort();
    let mut expected = vec![
        format!("letter_failed:{l1}"),
        format!("letter_failed:{l2}"),
        format!("letter_overdue:{l4}"),
        "message_rejected:1".to_string(),
    ];
    expected.sort();
    assert_eq!(keys, expected);

    // The payload: one JSON object with the key, the event and its facts.
    let log = std::fs::read_to_string(install.path("sent.log")).expect("log");
    let payload_of = |key: &str| -> serde_json::Value {
        let line = log.lines().find(|line| line.starts_with(key)).expect(key);
        serde_json::from_str(line.splitn(3, '\t').nth(2).expect("payload")).expect("json")
    };
    let payload = payload_of(&format!("letter_failed:{l1}"));
    assert_eq!(payload["event"], "letter_failed");
    assert_eq!(payload["key"], format!("letter_failed:{l1}"));
    // An overdue letter's current status is a fact of its own; `event` stays the kind.
    let overdue = payload_of(&format!("letter_overdue:{l4}"));
    assert_eq!(overdue["event"], "letter_overdue");
    assert!(overdue["latest_event"].is_string(), "{overdue}");
    assert_eq!(overdue["message_uuid"], l4.as_str());
    assert_eq!(payload["message_uuid"], l1.as_str());
    assert_eq!(payload["fejl_kode"], "20");
    assert_eq!(payload["kanal"], "Digital Post");
    assert_eq!(payload["besked_id"], test_uuid(0xb1, 1).as_str());
    assert!(payload.get("afsendelse_id").is_some(), "{payload}");

    // Later statuses, a duplicate and the same files again: nothing new to tell.
    let second = install.path("second");
    status(
        &second,
        "1.xml",
        &test_uuid(0xb2, 1),
        &l1,
        &ago(2),
        Status::SENT,
    );
    status(
        &second,
        "2.xml",
        &test_uuid(0xb2, 2),
        &l2,
        &ago(1),
        Status::RECEIVED,
    );
    std::fs::copy(first.join("5.xml"), second.join("3.xml")).expect("duplicate");
    let (code, stdout, _) = import(&install, &second);
    assert_eq!(code, 0, "{stdout}");
    let (_, stdout, _) = import(&install, &first);
    assert!(stdout.contains("notifications: 0 sent"), "{stdout}");
    assert_eq!(sent(&install).len(), 4);
    let db = install.db();
    assert_eq!(
        rows(
            &db,
            "SELECT outcome FROM letter WHERE message_uuid = ?1 "
                .replace("?1", &format!("'{l2}'"))
                .as_str()
        ),
        ["failed"]
    );
    assert_eq!(
        value::<i64>(
            &db,
            "SELECT count(*) FROM notification WHERE suppressed = 1"
        ),
        1
    );
    assert_eq!(
        value::<String>(&db, "SELECT key FROM notification WHERE suppressed = 1"),
        format!("letter_failed:{l3}")
    );
    let (_, stdout, _) = outcome(&install.run(&["status"]));
    assert!(
        stdout.contains("notifications: 0 pending (0 failing), 4 sent, 1 not sent"),
        "{stdout}"
    );
}

#[test]
fn a_failing_command_is_retried_on_later_runs_until_it_succeeds() {
    let install = install(0);
    std::fs::write(install.path("fail"), b"").expect("flag");
    let dir = install.path("in");
    let letter = test_uuid(0xa2, 1);
    status(
        &dir,
        "1.xml",
        &test_uuid(0xb3, 1),
        &letter,
        &ago(1),
        Status::FAILED,
    );
    let (code, stdout, stderr) = import(&install, &dir);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("0 sent, 1 failed (will be retried), 1 still pending"),
        "{stdout}"
    );
    let db = install.db();
    assert_eq!(
        rows(
            &db,
            "SELECT attempts, last_error IS NOT NULL, next_attempt_at > created_at FROM notification"
        ),
        ["1|1|1"]
    );
    // What the command said is kept, masked like every logged text.
    assert_eq!(
        value::<String>(&db, "SELECT last_error FROM notification"),
        format!(
            "`{}` exited with exit status: 1: refused for 010170****",
            install.path("alert.sh").display()
        )
    );
    let (_, stdout, _) = outcome(&install.run(&["status"]));
    assert!(stdout.contains("1 pending (1 failing)"), "{stdout}");
    let (_, stdout, _) = outcome(&install.run(&["notify", "--dry-run"]));
    assert!(
        stdout.contains(&format!("letter_failed:{letter}")),
        "{stdout}"
    );
    assert!(stdout.contains("exited with"), "{stdout}");
    // Before its backoff has passed, it waits.
    let (code, stdout, _) = outcome(&install.run(&["notify"]));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("0 sent, 0 failed"), "{stdout}");
    // Due again, and the command works now.
    db.execute_batch("UPDATE notification SET next_attempt_at = NULL")
        .expect("due");
    std::fs::remove_file(install.path("fail")).expect("unflag");
    let (code, stdout, _) = outcome(&install.run(&["notify"]));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("1 sent, 0 failed"), "{stdout}");
    assert_eq!(sent(&install), [format!("letter_failed:{letter}")]);
    let (_, stdout, _) = outcome(&install.run(&["notify"]));
    assert!(stdout.contains("0 sent"), "{stdout}");
    assert_eq!(
        rows(
            &db,
            "SELECT attempts, sent_at IS NOT NULL, last_error IS NULL FROM notification"
        ),
        ["2|1|1"]
    );
}

#[test]
fn a_crash_between_sending_and_marking_sends_again_with_the_same_key() {
    let install = install(0);
    std::fs::write(install.path("hang"), b"").expect("flag");
    let dir = install.path("in");
    let letter = test_uuid(0xa3, 1);
    status(
        &dir,
        "1.xml",
        &test_uuid(0xb4, 1),
        &letter,
        &ago(1),
        Status::FAILED,
    );
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(install.config())
        .arg("import")
        .arg(&dir)
        .env("BESKEDHENT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while !install.path("hang.pid").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the command never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The event has been handed over but not marked: kill -9 now.
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    let script_pid = std::fs::read_to_string(install.path("hang.pid")).expect("pid");
    let _ = Command::new("kill").arg(script_pid.trim()).status();
    std::fs::remove_file(install.path("hang")).expect("unflag");
    assert_eq!(
        value::<i64>(
            &install.db(),
            "SELECT count(*) FROM notification WHERE sent_at IS NULL"
        ),
        1
    );
    // The killed run's claim on it holds for as long as a send may take...
    let (code, stdout, _) = outcome(&install.run(&["notify"]));
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("0 sent, 0 failed (will be retried), 1 still pending"),
        "{stdout}"
    );
    // ...and once that has passed, it is sent again.
    install
        .db()
        .execute_batch("UPDATE notification SET next_attempt_at = '2000-01-01T00:00:00.000Z'")
        .expect("time passes");
    let (code, stdout, _) = outcome(&install.run(&["notify"]));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("1 sent"), "{stdout}");
    let key = format!("letter_failed:{letter}");
    assert_eq!(sent(&install), [key.clone(), key]);
    let (_, stdout, _) = outcome(&install.run(&["notify"]));
    assert!(stdout.contains("0 sent"), "{stdout}");
    assert_eq!(sent(&install).len(), 2);
}

#[test]
fn notify_settings_are_checked() {
    for (text, expected) in [
        ("[notify]\n", "needs `command`"),
        (
            "[notify]\nwebhook = \"http://example.org/hook\"\n",
            "must be an https:// URL",
        ),
        ("[notify]\ncommand = [\"\"]\n", "empty program name"),
        (
            "[notify]\ncommand = [\"/bin/true\"]\nheader_name = \"Authorization\"\n",
            "go together",
        ),
        (
            "[notify]\ncommand = [\"/bin/true\"]\novrdue_days = 3\n",
            "ovrdue_days",
        ),
        (
            "[notify]\nwebhook = \"https://example.org/hook\"\nheader_name = \"Authorization\"\nheader_value_env = \"\"\n",
            "must be the name of the environment variable",
        ),
        (
            "[notify]\nwebhook = \"https://example.org/hook\"\nheader_name = \"Host\"\nheader_value_env = \"HOOK_TOKEN\"\n",
            "a header beskedhent or HTTP itself sets",
        ),
        (
            "[notify]\nwebhook = \"https://example.org/hook\"\nheader_name = \"Idempotency-Key\"\nheader_value_env = \"HOOK_TOKEN\"\n",
            "a header beskedhent or HTTP itself sets",
        ),
        // A secret under a mistyped key: the error says where, never what.
        (
            "[notify]\nwebhook = \"https://example.org/hook\"\nheader_value = \"Bearer s3cret\"\n",
            "line 4, column 1 (`notify.header_value`): unknown field `header_value`",
        ),
        (
            "[notify]\nwebhook = \"https://example.org/hook\"\nheader_name = \"Authorization\"\nheader_value_env = \"Bearer s3cret\"\n",
            "never the value itself",
        ),
    ] {
        let install = Install::new(text);
        let (code, _, stderr) = outcome(&install.run(&["import", "/dev/null/none"]));
        assert_eq!(code, 1, "{text}");
        assert!(stderr.contains(expected), "{text}: {stderr}");
        assert!(!stderr.contains("s3cret"), "{text}: {stderr}");
    }
    let install = Install::new("");
    let (code, _, stderr) = outcome(&install.run(&["notify"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("no [notify] section"), "{stderr}");
    // A file that is not a configuration at all, full of secrets: refused by its place.
    let (code, stdout, stderr) = outcome(
        &Command::new(BIN)
            .args(["--config", "/proc/self/environ", "status"])
            .env("HOOK_TOKEN", "Bearer s3cret")
            .output()
            .expect("run"),
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("invalid configuration `/proc/self/environ`: line 1, column"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

/// `[notify]` for a webhook at `url` trusting `ca`, with a secret header from `HOOK_TOKEN`.
fn webhook_settings(url: &str, ca: &Path) -> String {
    format!(
        "[notify]\nwebhook = \"{url}\"\nca_file = \"{}\"\nheader_name = \"Authorization\"\nheader_value_env = \"HOOK_TOKEN\"\noverdue_days = 0\n",
        ca.display()
    )
}

/// Runs beskedhent with `HOOK_TOKEN` set to `token`.
fn run_with_token(install: &Install, args: &[&str], token: &str) -> (i32, String, String) {
    outcome(
        &Command::new(BIN)
            .arg("--config")
            .arg(install.config())
            .args(args)
            .env("BESKEDHENT_LOG", "warn")
            .env("HOOK_TOKEN", token)
            .output()
            .expect("run"),
    )
}

#[test]
fn a_webhook_that_fails_first_gets_the_event_on_a_later_run() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let hook = crate::fake_webhook::FakeWebhook::start(1);
    let install = Install::new("");
    install.append_config(&webhook_settings(
        &hook.url(),
        &crate::broker::certs().path("ca.pem"),
    ));
    let dir = install.path("in");
    let letter = test_uuid(0xa4, 1);
    status(
        &dir,
        "1.xml",
        &test_uuid(0xb5, 1),
        &letter,
        &ago(1),
        Status::FAILED,
    );
    let run = |args: &[&str]| run_with_token(&install, args, "Bearer s3cret");
    let (code, stdout, stderr) = run(&["import", dir.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("0 sent, 1 failed"), "{stdout}{stderr}");
    assert!(stderr.contains("503"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    install
        .db()
        .execute_batch("UPDATE notification SET next_attempt_at = NULL")
        .expect("due");
    let (code, stdout, stderr) = run(&["notify"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("1 sent, 0 failed"), "{stdout}");
    let received = hook.received();
    assert_eq!(received.len(), 2);
    for request in &received {
        assert!(request.head.starts_with("post /hook "), "{}", request.head);
        assert!(
            request.head.contains("authorization: bearer s3cret"),
            "{}",
            request.head
        );
        assert!(
            request.head.contains(&format!(
                "idempotency-key: {}",
                sha256_hex(&format!("letter_failed:{letter}"))
            )),
            "{}",
            request.head
        );
        assert_eq!(request.body["event"], "letter_failed");
        assert_eq!(request.body["message_uuid"], letter.as_str());
    }
    let (_, stdout, _) = run(&["notify"]);
    assert!(stdout.contains("0 sent"), "{stdout}");
    assert_eq!(hook.received().len(), 2);
}

#[test]
fn a_command_that_hangs_is_stopped_with_everything_it_started() {
    let install = Install::new("");
    // It says something, leaves a child that holds its standard error open, and hangs.
    let script = install.path("hang.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"stuck on 0101701234\" >&2\nsleep 1000 &\necho $! > \"$(dirname \"$0\")/child.pid\"\nsleep 1000\n",
    )
    .expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    install.append_config(&format!(
        "[notify]\ncommand = [\"{}\"]\ntimeout_seconds = 1\nmax_age_days = 0\n",
        script.display()
    ));
    let dir = install.path("in");
    status(
        &dir,
        "1.xml",
        &test_uuid(0xb5, 1),
        &test_uuid(0xa5, 1),
        &ago(1),
        Status::FAILED,
    );
    let started = Instant::now();
    let (code, stdout, stderr) = import(&install, &dir);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the run waited for the command's child: {:?}",
        started.elapsed()
    );
    assert!(stdout.contains("0 sent, 1 failed"), "{stdout}");
    assert_eq!(
        value::<String>(&install.db(), "SELECT last_error FROM notification"),
        format!(
            "`{}` did not finish within 1 s (notify.timeout_seconds): stuck on 010170****",
            script.display()
        )
    );
    // The child it left behind was stopped with it.
    let pid = std::fs::read_to_string(install.path("child.pid")).expect("child pid");
    let alive = Path::new("/proc").join(pid.trim());
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !alive.exists(),
        "the command's child {} still runs",
        pid.trim()
    );
}

/// An installation whose `[notify]` runs `script` (written into it) on every event.
fn install_with_script(script: &str, extra: &str) -> Install {
    let install = Install::new("");
    let path = install.path("alert.sh");
    std::fs::write(&path, script).expect("script");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    install.append_config(&format!(
        "[notify]\ncommand = [\"{}\"]\noverdue_days = 0\n{extra}",
        path.display()
    ));
    install
}

/// `count` failed letters, one envelope each, in `dir`.
fn failed_letters(dir: &Path, prefix: u32, count: u64) -> Vec<String> {
    (1..=count)
        .map(|n| {
            let letter = test_uuid(prefix, n);
            status(
                dir,
                &format!("{n}.xml"),
                &test_uuid(prefix + 1, n),
                &letter,
                &ago(1),
                Status::FAILED,
            );
            letter
        })
        .collect()
}

#[test]
fn deliveries_at_the_same_time_send_each_event_once() {
    // Slow enough that two deliveries overlap for the whole round.
    let install = install_with_script(
        "#!/bin/sh\ndir=$(dirname \"$0\")\ncat >/dev/null\n[ -e \"$dir/fail\" ] && exit 1\nprintf '%s\\n' \"$BESKEDHENT_KEY\" >> \"$dir/sent.log\"\nsleep 0.2\n",
        "",
    );
    let dir = install.path("in");
    let letters = failed_letters(&dir, 0xc1, 8);
    // Recorded, not sent: the command fails while `import` runs.
    std::fs::write(install.path("fail"), b"").expect("flag");
    let (code, stdout, stderr) = import(&install, &dir);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("0 sent, 8 failed"), "{stdout}");
    std::fs::remove_file(install.path("fail")).expect("unflag");
    install
        .db()
        .execute_batch("UPDATE notification SET next_attempt_at = NULL, attempts = 0")
        .expect("due");
    let start = || {
        Command::new(BIN)
            .arg("--config")
            .arg(install.config())
            .arg("notify")
            .env("BESKEDHENT_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (first, second, third) = (start(), start(), start());
    let mut sent_total = 0;
    for child in [first, second, third] {
        let (code, stdout, stderr) = outcome(&child.wait_with_output().expect("wait"));
        assert_eq!(code, 0, "{stdout}{stderr}");
        let sent: u64 = stdout
            .split("notifications: ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {stdout}"));
        sent_total += sent;
    }
    let mut keys = std::fs::read_to_string(install.path("sent.log"))
        .expect("sent.log")
        .lines()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    keys.sort();
    let mut expected: Vec<String> = letters
        .iter()
        .map(|letter| format!("letter_failed:{letter}"))
        .collect();
    expected.sort();
    assert_eq!(
        keys, expected,
        "each event once, across the three deliveries"
    );
    assert_eq!(sent_total, 8);
    assert_eq!(
        value::<i64>(
            &install.db(),
            "SELECT count(*) FROM notification WHERE sent_at IS NOT NULL AND attempts = 1"
        ),
        8
    );
}

#[test]
fn a_redirecting_webhook_is_a_failure_and_is_not_followed() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // Another server, which must never see the event or the secret header.
    let elsewhere = crate::fake_webhook::FakeWebhook::start(0);
    let hook = crate::fake_webhook::FakeWebhook::answering(vec![
        "302 Found\r\nLocation: /moved".into(),
        format!("307 Temporary Redirect\r\nLocation: {}", elsewhere.url()),
        "308 Permanent Redirect\r\nLocation: /moved".into(),
    ]);
    let install = Install::new("");
    install.append_config(&webhook_settings(
        &hook.url(),
        &crate::broker::certs().path("ca.pem"),
    ));
    let dir = install.path("in");
    failed_letters(&dir, 0xc3, 1);
    let run = |args: &[&str]| run_with_token(&install, args, "Bearer s3cret");
    let (code, stdout, stderr) = run(&["import", dir.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("0 sent, 1 failed"), "{stdout}{stderr}");
    for answer in ["307 Temporary Redirect", "308 Permanent Redirect"] {
        install
            .db()
            .execute_batch("UPDATE notification SET next_attempt_at = NULL")
            .expect("due");
        let (code, stdout, stderr) = run(&["notify"]);
        assert_eq!(code, 1, "{stdout}{stderr}");
        assert!(stdout.contains("0 sent, 1 failed"), "{stdout}");
        assert!(stderr.contains(answer), "{stderr}");
    }
    let error: String = value(&install.db(), "SELECT last_error FROM notification");
    assert!(error.contains("redirects are not followed"), "{error}");
    // Each answer was the end of its request: nothing followed, nothing sent elsewhere.
    let received = hook.received();
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|r| r.head.starts_with("post /hook ")));
    assert!(elsewhere.received().is_empty());
    // Once it answers 2xx, it is delivered.
    install
        .db()
        .execute_batch("UPDATE notification SET next_attempt_at = NULL")
        .expect("due");
    let (code, stdout, _) = run(&["notify"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("1 sent, 0 failed"), "{stdout}");
}

#[test]
fn a_letter_is_overdue_from_when_it_became_so_whatever_max_age_days() {
    // overdue_days beyond max_age_days: the event is the letter becoming overdue.
    let install = Install::new("");
    let script = write_script(&install);
    install.append_config(&format!(
        "[notify]\ncommand = [\"{}\"]\noverdue_days = 10\nmax_age_days = 7\n",
        script.display()
    ));
    let dir = install.path("in");
    let (recent, old) = (test_uuid(0xc5, 1), test_uuid(0xc5, 2));
    // Overdue for a day: told.
    status(
        &dir,
        "1.xml",
        &test_uuid(0xc6, 1),
        &recent,
        &ago(11 * 24),
        Status::SENT,
    );
    // Overdue for 20 days, longer than max_age_days: recorded, not told.
    status(
        &dir,
        "2.xml",
        &test_uuid(0xc6, 2),
        &old,
        &ago(30 * 24),
        Status::SENT,
    );
    let (code, stdout, stderr) = import(&install, &dir);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(sent(&install), [format!("letter_overdue:{recent}")]);
    let mut expected = vec![
        format!("letter_overdue:{recent}|0"),
        format!("letter_overdue:{old}|1"),
    ];
    expected.sort();
    assert_eq!(
        rows(
            &install.db(),
            "SELECT key, suppressed FROM notification ORDER BY key"
        ),
        expected
    );
}

#[test]
fn unusable_webhook_settings_are_recorded_with_the_events_and_checked() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let hook = crate::fake_webhook::FakeWebhook::start(0);
    let install = Install::new("");
    let not_pem = install.path("not-a-ca.pem");
    std::fs::write(&not_pem, "just some text\n").expect("write");
    let bad_pem = install.path("bad-ca.pem");
    std::fs::write(
        &bad_pem,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let dir = install.path("in");
    failed_letters(&dir, 0xc7, 2);
    let settings = |ca: &Path| webhook_settings(&hook.url(), ca);
    let config = std::fs::read_to_string(install.config()).expect("config");
    let run = |args: &[&str], token: &str| run_with_token(&install, args, token);
    let ca = crate::broker::certs().path("ca.pem");
    let bad_expected = format!(
        "`notify.ca_file` `{}`: certificate 1 of 1 cannot be read",
        bad_pem.display()
    );
    for (ca_file, token, expected) in [
        (
            install.path("missing.pem"),
            "Bearer s3cret",
            "cannot read `notify.ca_file`",
        ),
        (install.path("in"), "Bearer s3cret", "a directory"),
        (not_pem.clone(), "Bearer s3cret", "holds no PEM certificate"),
        (bad_pem.clone(), "Bearer s3cret", bad_expected.as_str()),
        (
            ca.clone(),
            "Bearer s3cret\r\nX-Forged: 1",
            "`HOOK_TOKEN` (`notify.header_value_env`, for header `authorization`) is not a valid HTTP header value",
        ),
    ] {
        std::fs::write(install.config(), format!("{config}{}", settings(&ca_file)))
            .expect("config");
        if install.db_path().exists() {
            install
                .db()
                .execute_batch("UPDATE notification SET next_attempt_at = NULL")
                .expect("due");
        }
        let (code, stdout, stderr) = run(&["import", dir.to_str().expect("utf-8")], token);
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(stdout.contains("0 sent, 2 failed"), "{expected}: {stdout}");
        assert!(stdout.contains(expected), "{expected}: {stdout}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(
            !format!("{stdout}{stderr}").contains("s3cret"),
            "{stdout}{stderr}"
        );
        let errors = rows(
            &install.db(),
            "SELECT DISTINCT last_error FROM notification",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains(expected), "{errors:?}");
        // Monitoring sees it.
        let (code, stdout, _) = run(&["status", "--check"], token);
        assert_eq!(code, 1, "{stdout}");
        assert!(
            stdout.contains("2 notifications cannot be delivered"),
            "{stdout}"
        );
        // And `check` names it before anything else.
        let (code, stdout, stderr) = run(&["check"], token);
        assert_eq!(code, 1, "{stdout}{stderr}");
        assert!(
            format!("{stdout}{stderr}").contains(expected),
            "{stdout}{stderr}"
        );
    }
    assert!(hook.received().is_empty());
    let attempts: i64 = value(&install.db(), "SELECT min(attempts) FROM notification");
    assert_eq!(attempts, 5);
    // Fixed: delivered.
    std::fs::write(install.config(), format!("{config}{}", settings(&ca))).expect("config");
    install
        .db()
        .execute_batch("UPDATE notification SET next_attempt_at = NULL")
        .expect("due");
    let (code, stdout, stderr) = run(&["notify"], "Bearer s3cret");
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("2 sent, 0 failed"), "{stdout}");
    assert_eq!(hook.received().len(), 2);
}

#[test]
fn a_signal_stops_the_round_after_the_send_under_way() {
    let install = install_with_script(SCRIPT, "timeout_seconds = 600\n");
    std::fs::write(install.path("hang"), b"").expect("flag");
    let dir = install.path("in");
    failed_letters(&dir, 0xc9, 3);
    // Recorded, not sent: the command fails while `import` runs.
    std::fs::write(install.path("fail"), b"").expect("flag");
    let (code, stdout, stderr) = import(&install, &dir);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("0 sent, 3 failed"), "{stdout}");
    std::fs::remove_file(install.path("fail")).expect("unflag");
    install
        .db()
        .execute_batch(
            "UPDATE notification SET next_attempt_at = NULL, attempts = 0, last_error = NULL",
        )
        .expect("due");
    for signal in ["TERM", "INT"] {
        let child = Command::new(BIN)
            .arg("--config")
            .arg(install.config())
            .arg("notify")
            .env("BESKEDHENT_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let started = Instant::now();
        while !install.path("hang.pid").exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the command never ran"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let script_pid = std::fs::read_to_string(install.path("hang.pid")).expect("pid");
        std::fs::remove_file(install.path("hang.pid")).expect("rm");
        let stopped = Instant::now();
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        let (code, stdout, stderr) = outcome(&child.wait_with_output().expect("wait"));
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "{:?}",
            stopped.elapsed()
        );
        assert_eq!(code, 130, "{stdout}{stderr}");
        assert!(stdout.contains("0 sent, 1 failed"), "{stdout}");
        assert!(stdout.contains("round stopped early (signal)"), "{stdout}");
        // The command was stopped with it.
        let alive = Path::new("/proc").join(script_pid.trim());
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !alive.exists(),
            "the command still runs after SIG{signal}: {:?}",
            std::fs::read_to_string(alive.join("stat"))
        );
    }
    // Cut off: not marked sent, due again at once, nothing else tried.
    let db = install.db();
    assert_eq!(
        rows(
            &db,
            "SELECT attempts, sent_at IS NULL,
                 coalesce(next_attempt_at, '') <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
             FROM notification ORDER BY id"
        ),
        ["2|1|1", "0|1|1", "0|1|1"]
    );
    let error: String = value(
        &db,
        "SELECT last_error FROM notification ORDER BY id LIMIT 1",
    );
    assert!(error.contains("stopped by a signal"), "{error}");
    std::fs::remove_file(install.path("hang")).expect("unflag");
    let (code, stdout, _) = outcome(&install.run(&["notify"]));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("3 sent, 0 failed"), "{stdout}");
}

#[test]
fn the_command_gets_no_secret_from_beskedhents_environment() {
    let install = install_with_script(
        "#!/bin/sh\ncat >/dev/null\nenv > \"$(dirname \"$0\")/env.txt\"\n",
        "",
    );
    let dir = install.path("in");
    failed_letters(&dir, 0xcb, 1);
    let (code, stdout, stderr) = outcome(
        &Command::new(BIN)
            .arg("--config")
            .arg(install.config())
            .args(["import", dir.to_str().expect("utf-8")])
            .env("BESKEDHENT_PKCS12_PASSWORD", "p12-s3cret")
            .env("KEEP_ME", "visible")
            .output()
            .expect("run"),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("1 sent"), "{stdout}");
    let env = std::fs::read_to_string(install.path("env.txt")).expect("env");
    assert!(!env.contains("p12-s3cret"), "{env}");
    assert!(env.contains("KEEP_ME=visible"), "{env}");
    assert!(env.contains("BESKEDHENT_EVENT=letter_failed"), "{env}");
}

#[test]
fn a_dry_run_changes_nothing_and_masks_cpr_numbers() {
    let install = install(5);
    let dir = install.path("in");
    // A letter id with a CPR number in it, overdue and failed.
    status(
        &dir,
        "1.xml",
        &test_uuid(0xcd, 1),
        "brev-0101701234",
        &ago(6 * 24),
        Status::SENT,
    );
    status(
        &dir,
        "2.xml",
        &test_uuid(0xcd, 2),
        "brev-0202701234",
        &ago(1),
        Status::FAILED,
    );
    std::fs::write(install.path("fail"), b"").expect("flag");
    let (code, stdout, stderr) = import(&install, &dir);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("2 failed"), "{stdout}");
    // Overdue once `overdue_days` is 2: not recorded yet.
    let later = install.path("later");
    status(
        &later,
        "3.xml",
        &test_uuid(0xcd, 3),
        "brev-0303701234",
        &ago(3 * 24),
        Status::SENT,
    );
    let (code, stdout, stderr) = import(&install, &later);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let config = std::fs::read_to_string(install.config()).expect("config");
    std::fs::write(
        install.config(),
        config.replace("overdue_days = 5", "overdue_days = 2"),
    )
    .expect("config");
    let before = rows(&install.db(), "SELECT * FROM notification ORDER BY id");
    let db_bytes = std::fs::read(install.db_path()).expect("db");
    let (code, stdout, stderr) = outcome(&install.run(&["notify", "--dry-run"]));
    assert_eq!(std::fs::read(install.db_path()).expect("db"), db_bytes);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for cpr in ["0101701234", "0202701234", "0303701234"] {
        assert!(!stdout.contains(cpr), "{stdout}");
    }
    assert!(
        stdout.contains("letter_overdue:brev-010170****"),
        "{stdout}"
    );
    assert!(stdout.contains("letter_failed:brev-020270****"), "{stdout}");
    assert!(
        stdout.contains("2 pending; 1 overdue letters not recorded yet"),
        "{stdout}"
    );
    assert!(stdout.contains("nothing sent or changed"), "{stdout}");
    assert_eq!(
        rows(&install.db(), "SELECT * FROM notification ORDER BY id"),
        before
    );
    // The next delivery records it.
    let (_, stdout, _) = outcome(&install.run(&["notify"]));
    assert!(
        stdout.contains("1 overdue letters newly recorded"),
        "{stdout}"
    );
}

/// The SHA-256 of `text` in hex: an event's `Idempotency-Key`.
fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[test]
fn a_webhook_secret_in_its_path_is_never_shown() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let hook = crate::fake_webhook::FakeWebhook::start(1);
    let url = format!(
        "https://localhost:{}/services/T0001/B0001/s3cr3tWebhookToken",
        hook.port
    );
    let install = Install::new("");
    install.append_config(&webhook_settings(
        &url,
        &crate::broker::certs().path("ca.pem"),
    ));
    let dir = install.path("in");
    failed_letters(&dir, 0xc7, 1);
    let (code, stdout, stderr) = run_with_token(
        &install,
        &["import", dir.to_str().expect("utf-8")],
        "Bearer t",
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("0 sent, 1 failed"), "{stdout}{stderr}");
    assert!(stderr.contains("503"), "{stderr}");
    let error: String = value(&install.db(), "SELECT last_error FROM notification");
    let (_, check_out, check_err) = run_with_token(&install, &["check"], "Bearer t");
    assert!(
        check_out.contains(&format!("webhook https://localhost:{}/", hook.port)),
        "{check_out}"
    );
    for said in [&stdout, &stderr, &error, &check_out, &check_err] {
        for secret in ["s3cr3tWebhookToken", "T0001", "services"] {
            assert!(!said.contains(secret), "{secret} in: {said}");
        }
    }
    // The request itself still goes to the whole address.
    let received = hook.received();
    assert!(
        received[0]
            .head
            .starts_with("post /services/t0001/b0001/s3cr3twebhooktoken "),
        "{}",
        received[0].head
    );
}

#[test]
fn a_letter_id_no_header_may_hold_is_delivered_all_the_same() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let hook = crate::fake_webhook::FakeWebhook::start(0);
    let install = Install::new("");
    install.append_config(&webhook_settings(
        &hook.url(),
        &crate::broker::certs().path("ca.pem"),
    ));
    let dir = install.path("in");
    // A MessageUUID with a line feed written as a character reference: the letter's key,
    // and so the event's, holds a line break.
    std::fs::create_dir_all(&dir).expect("mkdir");
    let envelope = status_envelope_with(
        &test_uuid(0xc8, 1),
        "brev-a&#10;Injected: yes",
        &Status {
            at: &ago(1),
            ..Status::FAILED
        },
    );
    std::fs::write(dir.join("1.xml"), envelope).expect("write");
    let (code, stdout, stderr) = run_with_token(
        &install,
        &["import", dir.to_str().expect("utf-8")],
        "Bearer t",
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("1 sent, 0 failed"), "{stdout}{stderr}");
    let key: String = value(&install.db(), "SELECT key FROM notification");
    assert!(key.contains('\n'), "{key:?}");
    let received = hook.received();
    assert_eq!(received.len(), 1);
    assert!(
        received[0]
            .head
            .contains(&format!("idempotency-key: {}\r\n", sha256_hex(&key))),
        "{}",
        received[0].head
    );
    assert!(
        !received[0].head.contains("injected"),
        "{}",
        received[0].head
    );
}

#[test]
fn what_a_command_starts_outside_its_process_group_ends_with_it() {
    // The command starts a grandchild in a session of its own (out of reach of a kill of the
    // command's process group), then outstays its timeout.
    let install = install_with_script(
        "#!/bin/sh\ndir=$(dirname \"$0\")\ncat >/dev/null\nsetsid sh -c 'echo $$ > \"$1/escaped.pid\"; exec sleep 300' sh \"$dir\" &\nsleep 300\n",
        "timeout_seconds = 1\n",
    );
    let dir = install.path("in");
    failed_letters(&dir, 0xc9, 1);
    let (code, stdout, stderr) = import(&install, &dir);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("0 sent, 1 failed"), "{stdout}{stderr}");
    let pid: i32 = std::fs::read_to_string(install.path("escaped.pid"))
        .expect("the grandchild started")
        .trim()
        .parse()
        .expect("pid");
    // SAFETY: kill(2) with signal 0 only asks whether the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(
        !alive,
        "the grandchild {pid} outlived the command's timeout"
    );
}
