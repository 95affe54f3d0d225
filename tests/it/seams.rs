//! Where beskedhent meets an operator's system in the first month: a second writer (it says that
//! it waits and on whom, and gives up with exit 5), `notify --dry-run` before a destination is
//! configured, numbers joined to letters masked in every refusal, progress on a terminal only,
//! `letters` fitted to the terminal in Danish time, and metrics series that never vanish. The
//! package's side (upgrades that never ask) is in `package.rs`.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::sample::Status;
use crate::support::{
    BIN, Install, PullTest, envelopes, failed_letter, outcome, rows, value, write_envelopes,
    write_status,
};

/// Holds the replica's write lock (`BEGIN IMMEDIATE`) from another connection, as a person in
/// `sqlite3` who began a transaction does, until the returned sender is dropped or sent to.
fn hold_write_lock(database: &Path) -> mpsc::Sender<()> {
    let (release, released) = mpsc::channel::<()>();
    let (taken, is_taken) = mpsc::channel();
    let database = database.to_path_buf();
    std::thread::spawn(move || {
        let db = rusqlite::Connection::open(&database).expect("open");
        db.execute_batch("BEGIN IMMEDIATE")
            .expect("take the write lock");
        taken.send(()).expect("say so");
        let _ = released.recv();
        db.execute_batch("COMMIT").expect("let go");
    });
    is_taken
        .recv_timeout(Duration::from_secs(10))
        .expect("write lock taken");
    release
}

/// Lets go of a lock taken by [`hold_write_lock`] after `after`.
fn release_after(release: mpsc::Sender<()>, after: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        let _ = release.send(());
    });
}

/// An installation with an initialised replica that waits at most `seconds` for a writer.
fn waiting_at_most(seconds: u64) -> Install {
    let install = Install::new(&format!("wait_for_replica_seconds = {seconds}\n"));
    assert_eq!(outcome(&install.run(&["init"])).0, 0);
    install
}

#[test]
fn a_second_writer_says_that_it_waits_and_on_which_run() {
    let install = Install::new("");
    assert_eq!(outcome(&install.run(&["init"])).0, 0);
    let input = install.path("in");
    write_envelopes(&input, 0x5ea0, 3);
    // Another run, of source `archive`, as beskedhent leaves its lock: the file beside the
    // replica, locked, holding the run's pid (this process's).
    let lock = std::fs::File::create(install.path("replica.db-archive.lock")).expect("lock file");
    std::fs::write(
        install.path("replica.db-archive.lock"),
        std::process::id().to_string(),
    )
    .expect("pid");
    // SAFETY: flock(2) on a descriptor this test holds until the end.
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    let release = hold_write_lock(&install.db_path());
    release_after(release, Duration::from_millis(2500));

    let started = Instant::now();
    let (code, stdout, stderr) = outcome(&install.import(&input));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(started.elapsed() >= Duration::from_secs(2), "it did wait");
    let said = format!(
        "waiting for the replica (1 s so far, at most 10 min): another beskedhent run is writing it: source `archive` (pid {})",
        std::process::id()
    );
    assert!(stderr.contains(&said), "{stderr}");
    // Said once within the first 30 s, and never naming this run's own lock.
    assert_eq!(
        stderr.matches("waiting for the replica").count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("source `import`"), "{stderr}");
    assert!(stdout.contains("3 new"), "{stdout}");
    drop(lock);
}

#[test]
fn a_writer_kept_waiting_too_long_gives_up_with_exit_5_and_loses_nothing() {
    let install = waiting_at_most(2);
    let input = install.path("in");
    write_envelopes(&input, 0x5ea1, 3);
    let release = hold_write_lock(&install.db_path());

    let started = Instant::now();
    let (code, stdout, stderr) = outcome(&install.import(&input));
    assert_eq!(code, 5, "{stdout}{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "gave up in time"
    );
    assert!(
        stderr.contains("waiting for the replica (1 s so far, at most 2 s): another program holds its write lock (a `sqlite3` session in a transaction, say)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("gave up waiting for the replica after 2 s"),
        "{stderr}"
    );
    assert!(
        stderr.contains("another writer kept the replica locked for 2 s (`wait_for_replica_seconds`): run this again once it has finished"),
        "{stderr}"
    );
    drop(release);
    std::thread::sleep(Duration::from_millis(200));

    let (code, stdout, stderr) = outcome(&install.import(&input));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("3 new"), "{stdout}");
}

#[test]
fn a_sync_kept_waiting_too_long_gives_up_with_exit_5_and_acknowledges_nothing() {
    let test = PullTest::new(envelopes(0x5ea2, 20), "");
    test.install.replace_in_config(
        "database = \"replica.db\"\n",
        "database = \"replica.db\"\nwait_for_replica_seconds = 2\n",
    );
    assert_eq!(outcome(&test.install.run(&["init"])).0, 0);
    let release = hold_write_lock(&test.install.db_path());

    let (code, stdout, stderr) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 5, "{stdout}{stderr}");
    assert!(
        stderr.contains("gave up waiting for the replica after 2 s"),
        "{stderr}"
    );
    assert_eq!(test.depth(), 20, "nothing was acknowledged");
    drop(release);
    std::thread::sleep(Duration::from_millis(200));

    let (code, stdout, stderr) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("20 new"), "{stdout}");
    assert_eq!(test.depth(), 0);
}

#[test]
fn notify_dry_run_without_a_destination_shows_what_the_defaults_would_do() {
    let install = Install::new("");
    let input = install.path("in");
    write_status(
        &input,
        "old.xml",
        "5ea30000-0000-4000-8000-000000000001",
        "5ea30000-0000-4000-8000-000000000002",
        "2026-01-01T10:00:00.000Z",
        Status::SENT,
    );
    assert_eq!(outcome(&install.import(&input)).0, 0);

    let (code, stdout, stderr) = outcome(&install.run(&["notify", "--dry-run"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "no [notify] section in `{}`: nothing can be sent yet",
            install.config().display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "the first delivery would record the 1 letter without a final status after 5 days"
        ),
        "{stdout}"
    );
    assert!(
        stdout.starts_with("0 pending; 1 overdue letter not recorded yet (the next delivery records them); nothing sent or changed (--dry-run)\n"),
        "{stdout}"
    );
    assert_eq!(
        value::<i64>(&install.db(), "SELECT count(*) FROM notification"),
        0
    );
}

#[test]
fn numbers_joined_to_letters_are_masked_in_every_refusal_and_log_line() {
    const CPR: &str = "2512489996";
    let hostile = [
        format!("<a{CPR}/>"),
        format!("<x>&c{CPR};</x>"),
        format!("<!DOCTYPE x [<!ENTITY c{CPR} \"x\">]><x>&c{CPR};</x>"),
        format!("<c{CPR}:x/>"),
        format!("<c{CPR}:x xmlns:c{CPR}=\"urn:x{CPR}\"/>"),
        format!("<x a{CPR}=\"1\" a{CPR}=\"2\"/>"),
        format!("<x></y{CPR}>"),
    ];
    for format in ["text", "json"] {
        let install = Install::new("");
        let input = install.path("in");
        std::fs::create_dir(&input).expect("mkdir");
        for (n, text) in hostile.iter().enumerate() {
            std::fs::write(input.join(format!("n{n}x{CPR}.xml")), text).expect("write");
        }
        let (code, stdout, stderr) = outcome(&install.run_with_env(
            &["import", input.to_str().expect("utf-8")],
            &[
                ("BESKEDHENT_LOG_FORMAT", format),
                ("BESKEDHENT_LOG", "info"),
            ],
        ));
        assert_eq!(code, 3, "{stdout}{stderr}");
        assert!(!stdout.contains(CPR), "{format}: {stdout}");
        assert!(!stderr.contains(CPR), "{format}: {stderr}");
        assert_eq!(
            stderr.matches("251248****").count(),
            // Each file's name, and its reason but for the DOCTYPE's.
            2 * hostile.len() - 1,
            "{format}: {stderr}"
        );
        let reasons = rows(&install.db(), "SELECT reason FROM rejected");
        assert_eq!(reasons.len(), hostile.len(), "{reasons:?}");
        for reason in &reasons {
            assert!(!reason.contains(CPR), "{reason}");
        }
        // The raw bytes are kept as received: what is said is masked, not the data.
        assert_eq!(
            value::<i64>(
                &install.db(),
                &format!("SELECT count(*) FROM rejected WHERE CAST(raw AS TEXT) LIKE '%{CPR}%'")
            ),
            hostile.len() as i64
        );
    }
}

/// `command` run in a pseudo-terminal `columns` wide, as a person at a terminal runs it: what it
/// wrote there (standard output and error together), and its exit code.
fn on_a_terminal(command: &str, columns: u16, env: &[(&str, &str)]) -> (i32, String) {
    let output: Output = Command::new("script")
        .args([
            "-qec",
            &format!("stty cols {columns} rows 50; {command}"),
            "/dev/null",
        ])
        .env("BESKEDHENT_LOG", "warn")
        .envs(env.iter().copied())
        .current_dir(std::env::temp_dir())
        .output()
        .expect("script(1) from util-linux");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// `beskedhent --config CONFIG args` as one shell word list.
fn shell_command(install: &Install, args: &[&str]) -> String {
    let mut words = vec![
        BIN.to_string(),
        "--config".into(),
        install.config().display().to_string(),
    ];
    words.extend(args.iter().map(|arg| arg.to_string()));
    words
        .iter()
        .map(|word| format!("'{}'", word.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The seconds an `import` summary line says it took.
fn seconds_taken(summary: &str) -> f64 {
    summary
        .split(" in ")
        .nth(1)
        .and_then(|rest| rest.split(" s").next())
        .and_then(|seconds| seconds.trim().parse().ok())
        .unwrap_or_else(|| panic!("no time in {summary:?}"))
}

#[test]
fn long_work_shows_progress_on_a_terminal_and_never_in_logs() {
    // Enough files for more than a second of work (when progress starts to show); more if
    // this machine is faster than that.
    let mut count = 20_000;
    loop {
        let piped = Install::new("");
        let shown = Install::new("");
        let input = piped.path("in");
        write_envelopes(&input, 0x5ea4, count);
        let path = input.to_str().expect("utf-8");

        // Piped (cron mail, a log file), and as JSON on a terminal: the summary only.
        let (code, stdout, stderr) = outcome(&piped.import(&input));
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(
            !stderr.contains("import:") && !stderr.contains('\r'),
            "{stderr}"
        );
        let (code, json) = on_a_terminal(
            &shell_command(&piped, &["import", "--source", "again", path]),
            100,
            &[("BESKEDHENT_LOG_FORMAT", "json")],
        );
        assert_eq!(code, 0, "{json}");
        assert!(!json.contains("import:"), "{json}");

        let (code, screen) = on_a_terminal(&shell_command(&shown, &["import", path]), 100, &[]);
        assert_eq!(code, 0, "{screen}");
        let summary = screen
            .lines()
            .last()
            .expect("a summary")
            .rsplit('\r')
            .find(|part| part.contains("imported"))
            .expect("the summary line")
            .to_owned();
        assert!(summary.contains(&format!("{count} new")), "{screen}");
        if seconds_taken(&summary) < 1.6 {
            count *= 2;
            assert!(
                count <= 400_000,
                "an import of {count} files never took a second"
            );
            continue;
        }
        // Counts, rate and time left, redrawn in place; wiped before the summary.
        assert!(screen.contains(&format!(" of {count} files (")), "{screen}");
        assert!(
            screen.contains("/s, ") && screen.contains(" s left"),
            "{screen}"
        );
        assert!(screen.contains("\r\u{1b}[Kimported"), "{screen}");
        break;
    }
}

#[test]
fn letters_fit_the_terminal_in_danish_time_and_keep_every_column_behind_options() {
    let install = Install::new("");
    let input = install.path("in");
    let long = "Modtager kan ikke modtage Digital Post, fordi modtageren er fritaget, og brevet skal derfor sendes med fysisk post i stedet for";
    for (name, letter, at) in [
        (
            "winter.xml",
            "5ea50000-0000-4000-8000-00000000000a",
            "2026-03-01T10:05:56.000Z",
        ),
        (
            "summer.xml",
            "5ea50000-0000-4000-8000-00000000000b",
            "2026-07-01T10:05:56.000Z",
        ),
    ] {
        write_status(
            &input,
            name,
            &letter.replace("5ea50000", "5ea60000"),
            letter,
            at,
            Status {
                fejl: Some(("20", long)),
                ..Status::FAILED
            },
        );
    }
    assert_eq!(outcome(&install.import(&input)).0, 0);

    // Not a terminal: at most 120 columns, four of them, Danish time (CET, CEST).
    let (code, table, stderr) = outcome(&install.run(&["letters"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        table.lines().all(|line| line.chars().count() <= 120),
        "{table}"
    );
    let header: Vec<&str> = table
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["message_uuid", "event", "occurred_at", "fejl_tekst"]
    );
    assert!(table.contains("2026-03-01 11:05:56"), "{table}");
    assert!(table.contains("2026-07-01 12:05:56"), "{table}");

    // A terminal 80 wide: fitted to it.
    let (code, screen) = on_a_terminal(&shell_command(&install, &["letters"]), 80, &[]);
    assert_eq!(code, 0, "{screen}");
    assert!(
        screen
            .lines()
            .all(|line| line.trim_end_matches('\r').chars().count() <= 80),
        "{screen}"
    );
    assert!(screen.contains("2026-07-01 12:05:56"), "{screen}");

    // --utc, --wide, and CSV and JSON in UTC with every column.
    let (_, utc, _) = outcome(&install.run(&["letters", "--utc"]));
    assert!(utc.contains("2026-07-01T10:05:56.000Z"), "{utc}");
    let (_, wide, _) = outcome(&install.run(&["letters", "--wide"]));
    assert!(wide.contains(&format!("{}…", &long[..59])), "{wide}");
    for column in ["outcome", "kanal", "first_seen_at", "final_at", "fejl_kode"] {
        assert!(
            wide.lines().next().expect("header").contains(column),
            "{wide}"
        );
    }
    let (_, csv, _) = outcome(&install.run(&["letters", "--csv"]));
    assert!(
        csv.contains("2026-07-01T10:05:56.000Z") && csv.contains(long),
        "{csv}"
    );
    let (_, json, _) = outcome(&install.run(&["letters", "--json"]));
    assert!(json.contains("\"2026-07-01T10:05:56.000Z\""), "{json}");
}

#[test]
fn the_metrics_file_has_every_letter_outcome_even_at_zero() {
    let install = Install::new("\n[metrics]\ntextfile = \"metrics/beskedhent.prom\"\n");
    install.mkdir("metrics");
    failed_letter(&install.path("in"), 0x5ea7, 1);
    assert_eq!(outcome(&install.import(&install.path("in"))).0, 0);
    let metrics =
        std::fs::read_to_string(install.path("metrics/beskedhent.prom")).expect("metrics");
    for (outcome, count) in [
        ("delivered", 0),
        ("failed", 1),
        ("pending", 0),
        ("recalled", 0),
    ] {
        assert!(
            metrics.contains(&format!(
                "beskedhent_letters{{outcome=\"{outcome}\"}} {count}\n"
            )),
            "{metrics}"
        );
    }
}

#[test]
fn messages_of_a_beskedtype_no_types_section_names_make_check_and_status_warn() {
    let install = Install::new("");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/envelopes");
    assert_eq!(outcome(&install.import(&examples)).0, 0);
    let warning = "3 messages kept as `other`: no [types.*] names beskedtype 5b1e4a32-7d0c-4a58-9b0e-1c2f3a4b5c6d (2), 6c2f5b43-8e1d-4b69-8c1f-2d3e4f5a6b7c (1); if they are registrations, set [types.digitalpost_registration] or [types.nemsms_registration] and run `beskedhent reprocess`";

    let (code, line, _) = outcome(&install.run(&["status", "--check"]));
    assert_eq!(code, 1, "{line}");
    assert!(
        line.starts_with("WARNING - ") && line.contains(warning),
        "{line}"
    );
    let (_, checked, _) = outcome(&install.run(&["check"]));
    assert!(checked.contains(&format!("WARN  {warning}")), "{checked}");

    // Switched off where such messages are expected.
    install.append_config("\n[monitor]\nother_types_warning = false\n");
    let (_, line, _) = outcome(&install.run(&["status", "--check"]));
    assert!(!line.contains("kept as `other`"), "{line}");

    // Named, and the messages already received derived again: nothing left to warn about.
    install.write_config(&format!(
        "database = \"replica.db\"\n{}",
        crate::support::TYPES
    ));
    let (code, stdout, stderr) = outcome(&install.run(&["reprocess"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (_, line, _) = outcome(&install.run(&["status", "--check"]));
    assert!(!line.contains("kept as `other`"), "{line}");
    assert_eq!(
        value::<i64>(
            &install.db(),
            "SELECT count(*) FROM message WHERE kind = 'other'"
        ),
        0
    );
}
