//! Running unattended: run history, `status --check` (a monitoring plugin), the metrics file,
//! JSON logs, `backup` during a sync, and the daemon under a service manager.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{
    BIN, Install, PullTest, TYPES, envelopes, mode, outcome, rows, value, wait_for_commits,
};

/// The value of one sample in a Prometheus text file, by its name and labels as written.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no `{series}` in\n{text}"))
        .parse()
        .expect("a number")
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// A pulling installation (five messages queued) with a metrics file and monitoring that warns
/// at one failed run in a row and is critical at two; its replica made, nothing synced yet.
fn monitored() -> PullTest {
    let test = PullTest::new(envelopes(0xa1, 5), "");
    test.install.append_config(
        "\n[metrics]\ntextfile = \"metrics/beskedhent.prom\"\n\n[monitor]\nfailed_runs_warning = 1\nfailed_runs_critical = 2\ncertificate_warning_days = 1\ncertificate_critical_days = 0\n",
    );
    test.install.mkdir("metrics");
    outcome(&test.install.run(&["init"]));
    test
}

/// [`monitored`], synced once.
fn synced() -> PullTest {
    let test = monitored();
    let (code, stdout, stderr) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("metrics written to"), "{stdout}");
    test
}

/// `status --check`: its exit code and what it printed.
fn check(install: &Install) -> (i32, String) {
    let (code, stdout, _) = outcome(&install.run(&["status", "--check"]));
    (code, stdout)
}

fn metrics(install: &Install) -> String {
    std::fs::read_to_string(install.path("metrics/beskedhent.prom")).expect("metrics")
}

#[test]
fn the_check_is_critical_before_the_first_successful_run() {
    let test = monitored();
    let (code, stdout) = check(&test.install);
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stdout.starts_with("CRITICAL - feed status: no successful run yet"),
        "{stdout}"
    );
}

#[test]
fn after_a_successful_sync_the_check_is_ok_on_one_line_with_performance_data() {
    let test = synced();
    let (code, stdout) = check(&test.install);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("OK - 1 feed synced within 30 min"),
        "{stdout}"
    );
    assert!(stdout.contains("the certificate expires in"), "{stdout}");
    assert!(
        stdout.contains(" | 'status_since_success'=")
            && stdout.contains("'status_failed_runs'=0;0;1;0"),
        "{stdout}"
    );
}

#[test]
fn a_sync_is_recorded_in_the_run_history() {
    let test = synced();
    assert_eq!(
        rows(
            &test.install.db(),
            "SELECT source || ' ' || command || ' ' || status || ' ' || messages || ' ' || duplicates || ' ' || rejected || ' ' || (ended_at >= started_at) FROM run"
        ),
        ["status sync ok 5 0 0 1"]
    );
}

#[test]
fn a_sync_writes_the_metrics_file_whole_and_readable_by_the_collector() {
    let test = synced();
    let metrics = metrics(&test.install);
    assert_eq!(mode(&test.install.path("metrics/beskedhent.prom")), 0o644);
    assert_eq!(
        sample(&metrics, "beskedhent_run_success{feed=\"status\"}"),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            "beskedhent_messages_total{feed=\"status\",result=\"new\"}"
        ),
        5.0
    );
    assert_eq!(
        sample(
            &metrics,
            "beskedhent_messages_total{feed=\"status\",result=\"rejected\"}"
        ),
        0.0
    );
    let success = sample(
        &metrics,
        "beskedhent_last_success_timestamp_seconds{feed=\"status\"}",
    );
    assert!((now_seconds() - success).abs() < 120.0, "{success}");
    assert!(
        sample(&metrics, "beskedhent_run_duration_seconds{feed=\"status\"}") >= 0.0,
        "{metrics}"
    );
    assert!(
        sample(&metrics, "beskedhent_certificate_expiry_timestamp_seconds") > now_seconds(),
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "beskedhent_notifications_pending"), 0.0);
    assert!(metrics.contains("beskedhent_letters{outcome="), "{metrics}");
    assert!(
        metrics.contains("# TYPE beskedhent_messages_total counter"),
        "{metrics}"
    );
    // No temporary file is left beside it.
    assert_eq!(
        std::fs::read_dir(test.install.path("metrics"))
            .expect("dir")
            .count(),
        1
    );
}

#[test]
fn failed_runs_in_a_row_warn_then_turn_critical_and_keep_the_last_success() {
    let test = synced();
    let install = &test.install;
    let success = sample(
        &metrics(install),
        "beskedhent_last_success_timestamp_seconds{feed=\"status\"}",
    );
    // A mistyped dueslag: one failed run warns, two in a row are critical.
    test.mistype_the_dueslag();
    assert_eq!(outcome(&install.run(&["sync"])).0, 4);
    let (code, stdout) = check(install);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.starts_with("WARNING - feed status: 1 failed run in a row: "),
        "{stdout}"
    );
    assert_eq!(outcome(&install.run(&["sync"])).0, 4);
    let (code, stdout) = check(install);
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stdout.starts_with("CRITICAL - feed status: 2 failed runs in a row"),
        "{stdout}"
    );
    let metrics = metrics(install);
    assert_eq!(
        sample(&metrics, "beskedhent_run_success{feed=\"status\"}"),
        0.0
    );
    assert_eq!(
        sample(
            &metrics,
            "beskedhent_last_success_timestamp_seconds{feed=\"status\"}"
        ),
        success
    );
    // Plain `status` names the last successful run.
    let (_, stdout, _) = outcome(&install.run(&["status"]));
    assert!(stdout.contains("LAST SUCCESS"), "{stdout}");
    assert_eq!(
        value::<i64>(
            &install.db(),
            "SELECT count(*) FROM run WHERE status = 'failed' AND error LIKE '%does not exist%'"
        ),
        2
    );
}

#[test]
fn a_last_success_hours_ago_is_critical() {
    let test = synced();
    // As if the timer had stopped three hours ago.
    test.install
        .db()
        .execute_batch(
            "UPDATE run SET started_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-3 hours'),
                 ended_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-3 hours')",
        )
        .expect("age the runs");
    let (code, stdout) = check(&test.install);
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stdout.starts_with("CRITICAL - feed status: last successful run 3 h 0 min ago"),
        "{stdout}"
    );
}

#[test]
fn whatever_goes_wrong_with_the_check_itself_is_unknown_on_one_line() {
    let test = synced();
    let install = &test.install;
    let config = install.config_text();
    install.append_config("\n[monitor]\nbogus = 1\n");
    let (code, stdout) = check(install);
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.starts_with("UNKNOWN - invalid configuration"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    install.write_config(&config);
    std::fs::rename(install.db_path(), install.path("moved.db")).expect("move");
    let (code, stdout) = check(install);
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.starts_with("UNKNOWN - cannot read the replica: database"),
        "{stdout}"
    );
}

#[test]
fn backup_during_a_sync_is_consistent_private_and_verified() {
    let test = PullTest::new(envelopes(0xb1, 3000), "batch_size = 50\n");
    let install = &test.install;
    let mut child = install.spawn(&["sync"]);
    wait_for_commits(install, 100, &mut child);
    let copy = install.path("backup.db");
    let (code, stdout, stderr) = outcome(&install.run(&["backup", copy.to_str().expect("utf-8")]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("integrity ok"), "{stdout}");
    let (sync_code, sync_out, sync_err) = outcome(&child.wait_with_output().expect("sync"));
    assert_eq!(sync_code, 0, "{sync_out}{sync_err}");

    assert_eq!(mode(&copy), 0o600);
    // One self-contained file, consistent: every status has its message and letter.
    assert!(!install.path("backup.db-wal").exists());
    let db = rusqlite::Connection::open(&copy).expect("open copy");
    assert_eq!(value::<String>(&db, "PRAGMA integrity_check"), "ok");
    let messages = value::<i64>(&db, "SELECT count(*) FROM message");
    assert!((100..=3000).contains(&messages), "{messages}");
    assert_eq!(
        value::<i64>(&db, "SELECT count(*) FROM print_status"),
        messages
    );
    assert_eq!(
        value::<i64>(&db, "SELECT sum(messages) FROM cursor"),
        messages
    );
    assert_eq!(
        value::<i64>(&install.db(), "SELECT count(*) FROM message"),
        3000
    );
    // Never over an existing file.
    let (code, _, stderr) = outcome(&install.run(&["backup", copy.to_str().expect("utf-8")]));
    assert_eq!(code, 1);
    assert!(stderr.contains("exists already"), "{stderr}");
}

#[test]
fn json_logs_are_one_masked_object_per_line() {
    let install = Install::new(TYPES);
    let dir = install.mkdir("in");
    std::fs::write(dir.join("cpr 251248-9996\nforged.xml"), "<a>").expect("write");
    let output = install.run_with_env(
        &["import", dir.to_str().expect("utf-8")],
        &[
            ("BESKEDHENT_LOG", "info"),
            ("BESKEDHENT_LOG_FORMAT", "json"),
        ],
    );
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(!stderr.contains("9996"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(!lines.is_empty());
    for line in lines {
        let event: serde_json::Value = serde_json::from_str(line).expect(line);
        assert!(event["timestamp"].is_string(), "{line}");
        assert!(event["level"].is_string(), "{line}");
        assert!(event["message"].is_string(), "{line}");
    }
    assert!(stderr.contains("\"file\":"), "{stderr}");
}

#[test]
fn with_json_logging_a_fatal_error_is_a_json_line_too() {
    let output = std::process::Command::new(BIN)
        .args(["--config", "/nonexistent/beskedhent.toml", "status"])
        .env("BESKEDHENT_LOG_FORMAT", "json")
        .output()
        .expect("run");
    let (code, _, stderr) = outcome(&output);
    assert_eq!(code, 1);
    let event: serde_json::Value = serde_json::from_str(stderr.trim()).expect(&stderr);
    assert_eq!(event["level"], "ERROR");
    assert!(
        event["message"]
            .as_str()
            .expect("message")
            .contains("not found"),
        "{stderr}"
    );
}

#[test]
fn daemon_tells_systemd_and_exits_after_failing_passes() {
    use std::os::unix::net::UnixDatagram;
    let test = PullTest::new(envelopes(0xc1, 1), "retries = 0\n");
    let install = &test.install;
    test.mistype_the_dueslag();
    install.append_config("\n[schedule]\ncron = \"* * * * * *\"\nexit_after_failed_passes = 2\n");
    let socket_path = install.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut child = install
        .command(["daemon"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("BESKEDHENT_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("daemon");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut messages = Vec::new();
    let status = loop {
        let mut buffer = [0u8; 4096];
        if let Ok(n) = socket.recv(&mut buffer) {
            messages.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not give up: {messages:?}"
        );
    };
    let mut buffer = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buffer) {
        messages.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
    }
    let output = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(status.code(), Some(4), "{stderr}");
    assert!(messages[0].starts_with("READY=1"), "{messages:?}");
    assert!(
        messages
            .iter()
            .any(|m| m.contains("FAILED (status); 2 failing passes in a row")),
        "{messages:?}"
    );
    assert!(messages.iter().any(|m| m == "STOPPING=1"), "{messages:?}");
    assert!(stderr.contains("exit_after_failed_passes"), "{stderr}");
    assert_eq!(
        value::<i64>(
            &install.db(),
            "SELECT count(*) FROM run WHERE command = 'daemon' AND status = 'failed'"
        ),
        2
    );
}
