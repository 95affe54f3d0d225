//! Notifications: which events are recorded, that each is sent at least once and, once marked,
//! never again, that failed sends are retried, and what the command (its time, its children,
//! its environment, a signal) and the webhook (its settings, answers, redirects and secrets) may
//! and may not do.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fake_webhook::FakeWebhook;
use crate::sample::Status;
use crate::support::{
    BIN, Install, NOTIFY_SCRIPT, ago, ends_soon, failed_letter, failed_letters, outcome, rows,
    sent, sent_payload, test_uuid, value, wait_for_file, write_notify_script, write_status,
};

/// An installation whose `[notify]` runs [`NOTIFY_SCRIPT`] (with an argument), letters
/// overdue after `overdue_days`.
fn install(overdue_days: u32) -> Install {
    let install = Install::new("");
    let script = write_notify_script(&install, NOTIFY_SCRIPT);
    install.append_config(&format!(
        "[notify]\ncommand = [\"{}\", \"--flag\"]\noverdue_days = {overdue_days}\n",
        script.display()
    ));
    install
}

/// An installation whose `[notify]` runs `script` (written into it as `alert.sh`) on every
/// event, with `extra` settings.
fn install_with_script(script: &str, extra: &str) -> Install {
    let install = Install::new("");
    let path = write_notify_script(&install, script);
    install.append_config(&format!(
        "[notify]\ncommand = [\"{}\"]\noverdue_days = 0\n{extra}",
        path.display()
    ));
    install
}

fn import(install: &Install, dir: &Path) -> (i32, String, String) {
    outcome(&install.import(dir))
}

/// Makes every notification due now.
fn make_due(install: &Install) {
    install
        .db()
        .execute_batch("UPDATE notification SET next_attempt_at = NULL")
        .expect("due");
}

/// `count` failed letters imported into `install` while its command fails (`fail` exists):
/// recorded, not sent; then the command works again and every notification is due, as if
/// never tried.
fn recorded_not_sent(install: &Install, prefix: u32, count: u64) -> Vec<String> {
    let dir = install.path("in");
    let letters = failed_letters(&dir, prefix, count);
    std::fs::write(install.path("fail"), b"").expect("flag");
    let (code, stdout, stderr) = import(install, &dir);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("0 sent, {count} failed")),
        "{stdout}"
    );
    std::fs::remove_file(install.path("fail")).expect("unflag");
    install
        .db()
        .execute_batch(
            "UPDATE notification SET next_attempt_at = NULL, attempts = 0, last_error = NULL",
        )
        .expect("due");
    letters
}

/// Five letters imported into `install` (overdue after 5 days), with a message that is no
/// envelope; their ids, in order:
/// 1. its failure arrives before the earlier status (out of order);
/// 2. failed (a later non-final status comes in a later import);
/// 3. failed 30 days ago: recorded, not sent (`max_age_days` is 7 by default);
/// 4. no final status 6 days after it was first seen: overdue;
/// 5. delivered: nothing to tell.
fn first_events(install: &Install) -> Vec<String> {
    let first = install.path("first");
    let letters: Vec<String> = (1..=5).map(|n| test_uuid(0xa1, n)).collect();
    for (n, hours, kind) in [
        (1, 1, Status::FAILED),
        (2, 3, Status::FAILED),
        (3, 30 * 24, Status::FAILED),
        (4, 6 * 24, Status::SENT),
        (5, 2, Status::DELIVERED),
    ] {
        write_status(
            &first,
            &format!("{n}.xml"),
            &test_uuid(0xb1, n),
            &letters[n as usize - 1],
            &ago(hours),
            kind,
        );
    }
    std::fs::write(first.join("6.xml"), b"<not-an-envelope/>").expect("write");
    let (code, stdout, stderr) = import(install, &first);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stdout.contains("notifications: 4 sent, 0 failed"),
        "{stdout}{stderr}"
    );
    letters
}

#[test]
fn each_event_is_sent_once_and_old_ones_are_only_recorded() {
    let install = install(5);
    let letters = first_events(&install);
    let (l1, l2, l3, l4) = (&letters[0], &letters[1], &letters[2], &letters[3]);
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

    // Later statuses, a duplicate and the same files again: nothing new to tell.
    let (first, second) = (install.path("first"), install.path("second"));
    write_status(
        &second,
        "1.xml",
        &test_uuid(0xb2, 1),
        l1,
        &ago(2),
        Status::SENT,
    );
    write_status(
        &second,
        "2.xml",
        &test_uuid(0xb2, 2),
        l2,
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
            &format!("SELECT outcome FROM letter WHERE message_uuid = '{l2}'")
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
fn an_events_payload_is_one_json_object_with_the_key_the_event_and_its_facts() {
    let install = install(5);
    let letters = first_events(&install);
    let (l1, l4) = (&letters[0], &letters[3]);
    let payload = sent_payload(&install, &format!("letter_failed:{l1}"));
    assert_eq!(payload["event"], "letter_failed");
    assert_eq!(payload["key"], format!("letter_failed:{l1}"));
    // An overdue letter's current status is a fact of its own; `event` stays the kind.
    let overdue = sent_payload(&install, &format!("letter_overdue:{l4}"));
    assert_eq!(overdue["event"], "letter_overdue");
    assert!(overdue["latest_event"].is_string(), "{overdue}");
    assert_eq!(overdue["message_uuid"], l4.as_str());
    assert_eq!(payload["message_uuid"], l1.as_str());
    assert_eq!(payload["fejl_kode"], "20");
    assert_eq!(payload["kanal"], "Digital Post");
    assert_eq!(payload["besked_id"], test_uuid(0xb1, 1).as_str());
    assert!(payload.get("afsendelse_id").is_some(), "{payload}");
}

#[test]
fn a_failing_command_is_retried_on_later_runs_until_it_succeeds() {
    let install = install(0);
    std::fs::write(install.path("fail"), b"").expect("flag");
    let dir = install.path("in");
    let letter = failed_letter(&dir, 0xa2, 1);
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
    make_due(&install);
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
    let letter = failed_letter(&dir, 0xa3, 1);
    let mut child = install
        .command(["import", dir.to_str().expect("utf-8")])
        .env("BESKEDHENT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for_file(
        &install.path("hang.pid"),
        "the command ran",
        Duration::from_secs(30),
    );
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
}

#[test]
fn a_file_that_is_no_configuration_at_all_is_refused_by_its_place_without_its_secrets() {
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

/// An installation that notifies the webhook at `url`, trusting the test CA.
fn webhook_install(url: &str) -> Install {
    let install = Install::new("");
    install.append_config(&webhook_settings(
        url,
        &crate::broker::certs().path("ca.pem"),
    ));
    install
}

/// Runs beskedhent with `HOOK_TOKEN` set to `token`.
fn run_with_token(install: &Install, args: &[&str], token: &str) -> (i32, String, String) {
    outcome(&install.run_with_env(args, &[("HOOK_TOKEN", token)]))
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
fn a_webhook_that_fails_first_gets_the_event_on_a_later_run() {
    let hook = FakeWebhook::start(1);
    let install = webhook_install(&hook.url());
    let dir = install.path("in");
    let letter = failed_letter(&dir, 0xa4, 1);
    let run = |args: &[&str]| run_with_token(&install, args, "Bearer s3cret");
    let (code, stdout, stderr) = run(&["import", dir.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("0 sent, 1 failed"), "{stdout}{stderr}");
    assert!(stderr.contains("503"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    make_due(&install);
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
    // It says something, leaves a child that holds its standard error open, and hangs.
    let install = install_with_script(
        "#!/bin/sh\necho \"stuck on 0101701234\" >&2\nsleep 1000 &\necho $! > \"$(dirname \"$0\")/child.pid\"\nsleep 1000\n",
        "timeout_seconds = 1\nmax_age_days = 0\n",
    );
    let dir = install.path("in");
    failed_letters(&dir, 0xa5, 1);
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
            install.path("alert.sh").display()
        )
    );
    // The child it left behind was stopped with it.
    let pid = std::fs::read_to_string(install.path("child.pid")).expect("child pid");
    assert!(
        ends_soon(&pid),
        "the command's child {} still runs",
        pid.trim()
    );
}

#[test]
fn deliveries_at_the_same_time_send_each_event_once() {
    // Slow enough that two deliveries overlap for the whole round.
    let install = install_with_script(
        "#!/bin/sh\ndir=$(dirname \"$0\")\ncat >/dev/null\n[ -e \"$dir/fail\" ] && exit 1\nprintf '%s\\n' \"$BESKEDHENT_KEY\" >> \"$dir/sent.log\"\nsleep 0.2\n",
        "",
    );
    let letters = recorded_not_sent(&install, 0xc1, 8);
    let start = || {
        install
            .command(["notify"])
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
    let mut keys = sent(&install);
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
    // Another server, which must never see the event or the secret header.
    let elsewhere = FakeWebhook::start(0);
    let hook = FakeWebhook::answering(vec![
        "302 Found\r\nLocation: /moved".into(),
        format!("307 Temporary Redirect\r\nLocation: {}", elsewhere.url()),
        "308 Permanent Redirect\r\nLocation: /moved".into(),
    ]);
    let install = webhook_install(&hook.url());
    let dir = install.path("in");
    failed_letters(&dir, 0xc3, 1);
    let run = |args: &[&str]| run_with_token(&install, args, "Bearer s3cret");
    let (code, stdout, stderr) = run(&["import", dir.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("0 sent, 1 failed"), "{stdout}{stderr}");
    for answer in ["307 Temporary Redirect", "308 Permanent Redirect"] {
        make_due(&install);
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
    make_due(&install);
    let (code, stdout, _) = run(&["notify"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("1 sent, 0 failed"), "{stdout}");
}

#[test]
fn a_letter_is_overdue_from_when_it_became_so_whatever_max_age_days() {
    // overdue_days beyond max_age_days: the event is the letter becoming overdue.
    let install = Install::new("");
    let script = write_notify_script(&install, NOTIFY_SCRIPT);
    install.append_config(&format!(
        "[notify]\ncommand = [\"{}\"]\noverdue_days = 10\nmax_age_days = 7\n",
        script.display()
    ));
    let dir = install.path("in");
    let (recent, old) = (test_uuid(0xc5, 1), test_uuid(0xc5, 2));
    // Overdue for a day: told.
    write_status(
        &dir,
        "1.xml",
        &test_uuid(0xc6, 1),
        &recent,
        &ago(11 * 24),
        Status::SENT,
    );
    // Overdue for 20 days, longer than max_age_days: recorded, not told.
    write_status(
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

/// Runs `import` (for the first settings) or `notify` with the webhook's `ca_file` set to
/// `ca_file` and `HOOK_TOKEN` to `token`, and checks that both events failed for `expected`:
/// said by the run, recorded with the events, seen by monitoring and named first by `check`.
fn unusable_settings_are_said_and_recorded(
    install: &Install,
    config: &str,
    url: &str,
    (ca_file, token, expected): (&Path, &str, &str),
) {
    install.write_config(&format!("{config}{}", webhook_settings(url, ca_file)));
    if install.db_path().exists() {
        make_due(install);
    }
    let dir = install.path("in");
    let run = |args: &[&str]| run_with_token(install, args, token);
    let (code, stdout, stderr) = run(&["import", dir.to_str().expect("utf-8")]);
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
    let (code, stdout, _) = run(&["status", "--check"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("2 notifications cannot be delivered"),
        "{stdout}"
    );
    // And `check` names it before anything else.
    let (code, stdout, stderr) = run(&["check"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains(expected),
        "{stdout}{stderr}"
    );
}

#[test]
fn unusable_webhook_settings_are_recorded_with_the_events_and_checked() {
    let hook = FakeWebhook::start(0);
    let install = Install::new("");
    let not_pem = install.path("not-a-ca.pem");
    std::fs::write(&not_pem, "just some text\n").expect("write");
    let bad_pem = install.path("bad-ca.pem");
    std::fs::write(
        &bad_pem,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    failed_letters(&install.path("in"), 0xc7, 2);
    let config = install.config_text();
    let ca = crate::broker::certs().path("ca.pem");
    let bad_expected = format!(
        "`notify.ca_file` `{}`: certificate 1 of 1 cannot be read",
        bad_pem.display()
    );
    for case in [
        (
            install.path("missing.pem").as_path(),
            "Bearer s3cret",
            "cannot read `notify.ca_file`",
        ),
        (install.path("in").as_path(), "Bearer s3cret", "a directory"),
        (
            not_pem.as_path(),
            "Bearer s3cret",
            "holds no PEM certificate",
        ),
        (bad_pem.as_path(), "Bearer s3cret", bad_expected.as_str()),
        (
            ca.as_path(),
            "Bearer s3cret\r\nX-Forged: 1",
            "`HOOK_TOKEN` (`notify.header_value_env`, for header `authorization`) is not a valid HTTP header value",
        ),
    ] {
        unusable_settings_are_said_and_recorded(&install, &config, &hook.url(), case);
    }
    assert!(hook.received().is_empty());
    let attempts: i64 = value(&install.db(), "SELECT min(attempts) FROM notification");
    assert_eq!(attempts, 5);
    // Fixed: delivered.
    install.write_config(&format!("{config}{}", webhook_settings(&hook.url(), &ca)));
    make_due(&install);
    let (code, stdout, stderr) = run_with_token(&install, &["notify"], "Bearer s3cret");
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("2 sent, 0 failed"), "{stdout}");
    assert_eq!(hook.received().len(), 2);
}

#[test]
fn a_signal_stops_the_round_after_the_send_under_way() {
    let install = install_with_script(NOTIFY_SCRIPT, "timeout_seconds = 600\n");
    std::fs::write(install.path("hang"), b"").expect("flag");
    recorded_not_sent(&install, 0xc9, 3);
    for signal in ["TERM", "INT"] {
        let child = install
            .command(["notify"])
            .env("BESKEDHENT_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        wait_for_file(
            &install.path("hang.pid"),
            "the command ran",
            Duration::from_secs(30),
        );
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
        assert!(
            ends_soon(&script_pid),
            "the command still runs after SIG{signal}: {:?}",
            std::fs::read_to_string(format!("/proc/{}/stat", script_pid.trim()))
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
    let (code, stdout, stderr) = outcome(&install.run_with_env(
        &["import", dir.to_str().expect("utf-8")],
        &[
            ("BESKEDHENT_PKCS12_PASSWORD", "p12-s3cret"),
            ("KEEP_ME", "visible"),
        ],
    ));
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
    // Letter ids with a CPR number in them, overdue and failed.
    write_status(
        &dir,
        "1.xml",
        &test_uuid(0xcd, 1),
        "brev-0101701234",
        &ago(6 * 24),
        Status::SENT,
    );
    write_status(
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
    write_status(
        &later,
        "3.xml",
        &test_uuid(0xcd, 3),
        "brev-0303701234",
        &ago(3 * 24),
        Status::SENT,
    );
    let (code, stdout, stderr) = import(&install, &later);
    assert_eq!(code, 0, "{stdout}{stderr}");
    install.replace_in_config("overdue_days = 5", "overdue_days = 2");
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
        stdout.contains("2 pending; 1 overdue letter not recorded yet"),
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

#[test]
fn a_webhook_secret_in_its_path_is_never_shown() {
    let hook = FakeWebhook::start(1);
    let install = webhook_install(&format!(
        "https://localhost:{}/services/T0001/B0001/s3cr3tWebhookToken",
        hook.port
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
    let hook = FakeWebhook::start(0);
    let install = webhook_install(&hook.url());
    let dir = install.path("in");
    // A MessageUUID with a line feed written as a character reference: the letter's key,
    // and so the event's, holds a line break.
    write_status(
        &dir,
        "1.xml",
        &test_uuid(0xc8, 1),
        "brev-a&#10;Injected: yes",
        &ago(1),
        Status::FAILED,
    );
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
