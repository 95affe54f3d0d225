//! Running unattended: run history, `status --check`, the metrics file, JSON logs, retention,
//! `forget`, `backup`, and the daemon under a service manager.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::pull::{PullTest, envelopes, spawn_sync, wait_for_commits};
use crate::support::{BIN, Install, TYPES, fixtures, outcome, rows, value};

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

#[test]
fn check_mode_and_metrics_follow_successful_and_failed_syncs() {
    let test = PullTest::new(envelopes(0xa1, 5), "");
    let install = &test.install;
    install.append_config(
        "\n[metrics]\ntextfile = \"metrics/beskedhent.prom\"\n\n[monitor]\nfailed_runs_warning = 1\nfailed_runs_critical = 2\ncertificate_warning_days = 1\ncertificate_critical_days = 0\n",
    );
    std::fs::create_dir(install.path("metrics")).expect("dir");

    // Before any run: the feed has never succeeded, which is critical.
    outcome(&install.run(&["init"]));
    let (code, stdout, _) = outcome(&install.run(&["status", "--check"]));
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stdout.starts_with("CRITICAL - feed status: no successful run yet"),
        "{stdout}"
    );

    let (code, stdout, stderr) = outcome(&install.run(&["sync"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("metrics written to"), "{stdout}");
    let (code, stdout, _) = outcome(&install.run(&["status", "--check"]));
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
    // The run history.
    let db = install.db();
    assert_eq!(
        rows(
            &db,
            "SELECT source || ' ' || command || ' ' || status || ' ' || messages || ' ' || duplicates || ' ' || rejected || ' ' || (ended_at >= started_at) FROM run"
        ),
        ["status sync ok 5 0 0 1"]
    );
    let metrics_path = install.path("metrics/beskedhent.prom");
    let metrics = std::fs::read_to_string(&metrics_path).expect("metrics");
    let mode = std::fs::metadata(&metrics_path)
        .expect("metrics")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
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
        std::fs::read_dir(install.path("metrics"))
            .expect("dir")
            .count(),
        1
    );

    // A mistyped dueslag: one failed run warns, two in a row are critical.
    let config = std::fs::read_to_string(install.config()).expect("config");
    let wrong = config.replace(&test.queue, "00000000-0000-4000-8000-000000000bad");
    std::fs::write(install.config(), &wrong).expect("config");
    assert_eq!(outcome(&install.run(&["sync"])).0, 4);
    let (code, stdout, _) = outcome(&install.run(&["status", "--check"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.starts_with("WARNING - feed status: 1 failed run in a row: "),
        "{stdout}"
    );
    assert_eq!(outcome(&install.run(&["sync"])).0, 4);
    let (code, stdout, _) = outcome(&install.run(&["status", "--check"]));
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stdout.starts_with("CRITICAL - feed status: 2 failed runs in a row"),
        "{stdout}"
    );
    let metrics = std::fs::read_to_string(&metrics_path).expect("metrics");
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

    // Fixed, but the last success is old (as if the timer had stopped three hours ago).
    std::fs::write(install.config(), &config).expect("config");
    assert_eq!(outcome(&install.run(&["sync"])).0, 0);
    install
        .db()
        .execute_batch(
            "UPDATE run SET started_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-3 hours'),
                 ended_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-3 hours')",
        )
        .expect("age the runs");
    let (code, stdout, _) = outcome(&install.run(&["status", "--check"]));
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stdout.starts_with("CRITICAL - feed status: last successful run 3 h 0 min ago"),
        "{stdout}"
    );

    // Whatever goes wrong with the check itself is UNKNOWN, on one line.
    std::fs::write(
        install.config(),
        format!("{config}\n[monitor]\nbogus = 1\n"),
    )
    .expect("config");
    let (code, stdout, _) = outcome(&install.run(&["status", "--check"]));
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.starts_with("UNKNOWN - invalid configuration"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    std::fs::write(install.config(), &config).expect("config");
    std::fs::rename(install.db_path(), install.path("moved.db")).expect("move");
    let (code, stdout, _) = outcome(&install.run(&["status", "--check"]));
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.starts_with("UNKNOWN - cannot read the replica: database"),
        "{stdout}"
    );
}

/// Every place in the replica's files where `needle` occurs.
fn occurrences(install: &Install, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for name in ["replica.db", "replica.db-wal"] {
        let Ok(bytes) = std::fs::read(install.path(name)) else {
            continue;
        };
        let count = bytes
            .windows(needle.len())
            .filter(|window| *window == needle.as_bytes())
            .count();
        if count > 0 {
            found.push(format!("{name}: {count}"));
        }
    }
    found
}

/// `rows` with each `forget` run's tag (`#` and eight hex digits) written as `#TAG`.
fn untagged(rows: Vec<String>) -> Vec<String> {
    rows.into_iter()
        .map(|row| {
            let mut out = String::new();
            let mut rest = row.as_str();
            while let Some(at) = rest.find('#') {
                out.push_str(&rest[..at]);
                let tag = rest.get(at + 1..at + 9);
                if tag.is_some_and(|tag| tag.bytes().all(|b| b.is_ascii_hexdigit())) {
                    out.push_str("#TAG");
                    rest = &rest[at + 9..];
                } else {
                    out.push('#');
                    rest = &rest[at + 1..];
                }
            }
            out.push_str(rest);
            out
        })
        .collect()
}

#[test]
fn forget_erases_a_party_from_the_files_bytes() {
    let install = Install::new(TYPES);
    let good = fixtures().join("good");
    // A letter's status stored from a file whose name holds the number (`message.origin`).
    let named = install.path("named");
    std::fs::create_dir(&named).expect("dir");
    std::fs::copy(
        good.join("10-status-digital-received.xml"),
        named.join("status-0101701234.xml"),
    )
    .expect("copy");
    outcome(&install.run(&["import", named.to_str().expect("utf-8")]));
    outcome(&install.run(&["import", good.to_str().expect("utf-8")]));
    // A status whose base64 payload (only) names the party, in its error text.
    let payload_only = install.path("payload");
    std::fs::create_dir(&payload_only).expect("dir");
    std::fs::write(
        payload_only.join("failed.xml"),
        crate::sample::status_envelope_with(
            "e1000000-0000-4000-8000-0000000000b1",
            "e1000000-0000-4000-8000-0000000000b2",
            &crate::sample::Status {
                fejl: Some(("3", "Modtager 010170-1234 er fritaget")),
                ..crate::sample::Status::FAILED
            },
        ),
    )
    .expect("write");
    // One written with a no-break space, as word processors do.
    std::fs::write(
        payload_only.join("nbsp.xml"),
        crate::sample::status_envelope_with(
            "e1000000-0000-4000-8000-0000000000b4",
            "e1000000-0000-4000-8000-0000000000b5",
            &crate::sample::Status {
                fejl: Some(("3", "Modtager 010170\u{a0}1234 er fritaget")),
                ..crate::sample::Status::FAILED
            },
        ),
    )
    .expect("write");
    // A status whose letter id (and so the letter's key, its transmission and correlation
    // ids) is the number.
    std::fs::write(
        payload_only.join("letter.xml"),
        crate::sample::status_envelope_with(
            "e1000000-0000-4000-8000-0000000000b3",
            "010170-1234",
            &crate::sample::Status::SENT,
        ),
    )
    .expect("write");
    outcome(&install.run(&["import", payload_only.to_str().expect("utf-8")]));
    // A refused message that names the party, one whose file name does, and one that does
    // not.
    let refused = install.path("refused");
    std::fs::create_dir(&refused).expect("dir");
    std::fs::write(refused.join("0101701234-broken.xml"), "<Haendelsesbesked>").expect("write");
    std::fs::write(
        refused.join("a.xml"),
        "<Haendelsesbesked><cpr>010170-1234</cpr>",
    )
    .expect("write");
    std::fs::write(refused.join("b.xml"), "<Haendelsesbesked><x>other</x>").expect("write");
    outcome(&install.run(&["import", refused.to_str().expect("utf-8")]));
    for form in [
        "0101701234",
        "010170-1234",
        "010170\u{a0}1234",
        "0202802345",
    ] {
        assert!(!occurrences(&install, form).is_empty(), "{form} is stored");
    }
    let rejected_before = value::<i64>(&install.db(), "SELECT count(*) FROM rejected");

    let (code, stdout, stderr) = outcome(&install.run(&["forget", "010170-1234"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("registrations deleted") && !stdout.contains("1234"),
        "{stdout}"
    );
    // Gone from the database file and its WAL, in both forms...
    assert_eq!(occurrences(&install, "0101701234"), Vec::<String>::new());
    assert_eq!(occurrences(&install, "010170-1234"), Vec::<String>::new());
    assert_eq!(
        occurrences(&install, "010170\u{a0}1234"),
        Vec::<String>::new()
    );
    // ...while everyone else is still there.
    assert!(!occurrences(&install, "0202802345").is_empty());
    let db = install.db();
    assert_eq!(
        value::<i64>(
            &db,
            "SELECT count(*) FROM registration WHERE party = '0101701234'"
        ),
        0
    );
    assert!(
        value::<i64>(
            &db,
            "SELECT count(*) FROM registration WHERE party = '0202802345'"
        ) > 0
    );
    assert_eq!(
        value::<i64>(&db, "SELECT count(*) FROM rejected"),
        rejected_before - 2
    );
    // The status named it only in its payload: its envelope is dropped, its error text masked,
    // and `reprocess` does not bring it back.
    assert_eq!(
        untagged(rows(
            &db,
            "SELECT (envelope_pruned_at IS NOT NULL) || ' ' || fejl_tekst FROM message JOIN print_status USING (seq) WHERE message.besked_id = 'e1000000-0000-4000-8000-0000000000b1'"
        )),
        ["1 Modtager ******-****#TAG er fritaget"]
    );
    // The letter named by the number keeps its statuses under the masked id.
    assert_eq!(
        untagged(rows(
            &db,
            "SELECT letter.message_uuid || ' ' || statuses || ' ' || print_status.transmission_id FROM letter JOIN print_status USING (seq)
             WHERE print_status.besked_id = 'e1000000-0000-4000-8000-0000000000b3'"
        )),
        ["******-****#TAG 1 ******-****#TAG"]
    );
    outcome(&install.run(&["reprocess"]));
    assert_eq!(occurrences(&install, "010170-1234"), Vec::<String>::new());
    assert_eq!(
        value::<i64>(
            &db,
            "SELECT count(*) FROM message WHERE origin LIKE '%status-**********#%.xml'"
        ),
        1
    );
    // The messages stay (so a copy received again is still a duplicate), without envelope.
    let pruned = value::<i64>(
        &db,
        "SELECT count(*) FROM message WHERE envelope_pruned_at IS NOT NULL AND length(envelope) = 0",
    );
    assert!(pruned >= 3, "{pruned}");
    // The same envelopes delivered again are duplicates: nothing erased comes back, not even
    // as a refused copy.
    let (_, stdout, _) = outcome(&install.run(&["import", good.to_str().expect("utf-8")]));
    assert!(
        stdout.contains(" 0 new,") && stdout.contains(" 0 rejected"),
        "{stdout}"
    );
    assert_eq!(
        value::<i64>(
            &install.db(),
            "SELECT count(*) FROM registration WHERE party = '0101701234'"
        ),
        0
    );
    install
        .db()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    assert_eq!(occurrences(&install, "0101701234"), Vec::<String>::new());

    // Another process reading the replica keeps old pages from being written over: `forget`
    // says so and fails; once the reader is gone, running it again finishes the job.
    let reader = install.db();
    reader.execute_batch("BEGIN").expect("begin");
    let _: i64 = reader
        .query_row("SELECT count(*) FROM message", [], |row| row.get(0))
        .expect("read");
    let (code, _, stderr) = outcome(&install.run(&["forget", "0202802345"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("another process has the replica open"),
        "{stderr}"
    );
    drop(reader);
    let (code, stdout, stderr) = outcome(&install.run(&["forget", "0202802345"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("nothing in "), "{stdout}");
    assert_eq!(occurrences(&install, "0202802345"), Vec::<String>::new());

    // A number of the wrong form is a usage error (exit 2).
    for party in ["12345", "", "0101701234x"] {
        let (code, _, stderr) = outcome(&install.run(&["forget", party]));
        assert_eq!(code, 2, "{party}: {stderr}");
        assert!(stderr.contains("is not a CPR number"), "{stderr}");
    }
    // The installation's own CVR is in every envelope: refused, not a wipe.
    install.append_config("\n[[feed]]\nname = \"status\"\ndueslag = \"x\"\ncvr = \"55133018\"\n");
    let (code, _, stderr) = outcome(&install.run(&["forget", "55133018"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("own CVR number"), "{stderr}");
}

#[test]
fn forget_finds_the_number_however_it_is_written_and_masks_stay_apart() {
    use crate::sample::{Status, padded, status_envelope_with};
    let install = Install::new(TYPES);
    let dir = install.path("in");
    std::fs::create_dir(&dir).expect("dir");
    let failed = |fejl| Status {
        fejl: Some(("3", fejl)),
        ..Status::FAILED
    };
    let uuid = |n: u32| format!("e2000000-0000-4000-8000-{n:012}");
    let write = |name: &str, bytes: Vec<u8>| std::fs::write(dir.join(name), bytes).expect("write");
    // Two letters whose ids hold two people's numbers: after both are forgotten they must
    // still be two letters.
    write(
        "a.xml",
        status_envelope_with(&uuid(1), "brev-0101701234", &Status::SENT).into(),
    );
    write(
        "b.xml",
        status_envelope_with(&uuid(2), "brev-0202802345", &Status::SENT).into(),
    );
    // The number written so that only a reader of the XML sees it.
    for (n, fejl) in [
        (3, "Modtager 01017&#48;1234"),
        (4, "Modtager 0101<!-- x -->701234"),
        (5, "Modtager <![CDATA[0101]]><![CDATA[701234]]>"),
        (9, "Modtager 0101<b/>701234"),
        // Base64 of "cpr 0101701234", copied into the text as it is.
        (10, "Svar Y3ByIDAxMDE3MDEyMzQ="),
    ] {
        write(
            &format!("{n}.xml"),
            status_envelope_with(&uuid(n), &uuid(100 + n), &failed(fejl)).into(),
        );
    }
    // An eleven-digit number is someone else's.
    write(
        "6.xml",
        status_envelope_with(&uuid(6), &uuid(106), &failed("Konto 01017012345")).into(),
    );
    // Refused: base64 broken by a character too few, and a message over the size limit with
    // the number in its payload, past the first megabyte.
    let named = status_envelope_with(&uuid(7), &uuid(107), &failed("Modtager 0101701234"));
    let at = named.find("file-type=\".xml\">").expect("payload") + 40;
    write(
        "7.xml",
        format!("{}{}", &named[..at], &named[at + 1..]).into(),
    );
    write(
        "8.xml",
        padded(
            status_envelope_with(&uuid(8), &uuid(108), &failed("Modtager 0101701234")),
            3 << 20,
        ),
    );
    let (code, stdout, stderr) = outcome(&install.run(&["import", dir.to_str().expect("utf-8")]));
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stdout.contains("8 new") && stdout.contains("2 rejected"),
        "{stdout}"
    );

    let (code, stdout, stderr) = outcome(&install.run(&["forget", "0101701234"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = outcome(&install.run(&["forget", "0202802345"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let db = install.db();
    let letters = rows(
        &db,
        "SELECT message_uuid FROM letter WHERE message_uuid LIKE 'brev-%' ORDER BY 1",
    );
    assert_eq!(
        untagged(letters.clone()),
        ["brev-**********#TAG", "brev-**********#TAG"]
    );
    assert_ne!(letters[0], letters[1]);
    // Each letter's statuses are still found under its masked id.
    assert_eq!(
        value::<i64>(
            &db,
            "SELECT count(*) FROM letter JOIN print_status USING (message_uuid) WHERE message_uuid LIKE 'brev-%'"
        ),
        2
    );
    // Every envelope that named the party is dropped; the eleven digits stay.
    assert_eq!(
        rows(
            &db,
            "SELECT besked_id FROM message WHERE envelope_pruned_at IS NOT NULL ORDER BY 1"
        ),
        [
            uuid(1),
            uuid(2),
            uuid(3),
            uuid(4),
            uuid(5),
            uuid(9),
            uuid(10)
        ]
    );
    assert_eq!(
        rows(
            &db,
            "SELECT fejl_tekst FROM print_status WHERE besked_id = 'e2000000-0000-4000-8000-000000000006'"
        ),
        ["Konto 01017012345"]
    );
    assert_eq!(value::<i64>(&db, "SELECT count(*) FROM rejected"), 0);
    // The text that held it only encoded goes whole.
    assert_eq!(
        untagged(rows(
            &db,
            "SELECT substr(fejl_tekst, 1, 27) FROM print_status WHERE besked_id = 'e2000000-0000-4000-8000-000000000010'"
        )),
        ["[erased by forget]#TAG"]
    );
    // `reprocess` cannot bring any of it back.
    outcome(&install.run(&["reprocess"]));
    db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    for form in ["01017&#48;1234", "0101<!-- x -->701234", "0202802345"] {
        assert_eq!(occurrences(&install, form), Vec::<String>::new(), "{form}");
    }
    // The party's ten digits are left only inside the eleven.
    assert!(!occurrences(&install, "01017012345").is_empty());
    assert_eq!(
        occurrences(&install, "0101701234"),
        occurrences(&install, "01017012345")
    );
}

#[test]
fn a_cpr_number_in_a_broken_configuration_is_masked_however_it_is_quoted() {
    let install = Install::new("");
    // The parser's message quotes the value in its debug form (`\u{a0}`).
    for value in [
        "\"010170\\u00a01234\"",
        "\"010170\u{a0}1234\"",
        "\"010170\u{202f}1234\"",
        "\"010170\u{2013}1234\"",
        "'0101701234'",
        "\"010170\\U000000A01234\"",
        "\"010170\\u002d1234\"",
        "\"010170\\u00201234\"",
        "\"01017\\u00301234\"",
        "\"\\t0101701234\\b\"",
        "'a0101701234b'",
    ] {
        std::fs::write(
            install.config(),
            format!("database = \"replica.db\"\nmax_message_bytes = {value}\n"),
        )
        .expect("write");
        let (code, _, stderr) = outcome(&install.run(&["status"]));
        assert_eq!(code, 1, "{value}: {stderr}");
        assert!(
            stderr.contains("invalid configuration"),
            "{value}: {stderr}"
        );
        assert!(!stderr.contains("1234"), "{value}: {stderr}");
    }
    // The same for the log filter's variable, which a bad value is quoted from.
    std::fs::write(install.config(), "database = \"replica.db\"\n").expect("write");
    for filter in [
        r"010170\U000000A01234",
        r"01017\u00301234",
        "010170\u{a0}1234",
        r"\t0101701234",
    ] {
        let output = Command::new(BIN)
            .arg("--config")
            .arg(install.config())
            .arg("status")
            .env("BESKEDHENT_LOG", filter)
            .output()
            .expect("run");
        let (_, _, stderr) = outcome(&output);
        assert!(stderr.contains("BESKEDHENT_LOG"), "{filter}: {stderr}");
        assert!(!stderr.contains("1234"), "{filter}: {stderr}");
    }
}

#[test]
fn a_cpr_number_in_a_mistyped_argument_is_masked() {
    use std::os::unix::ffi::OsStrExt;
    let install = Install::new("");
    let run = |args: &[&std::ffi::OsStr]| {
        Command::new(BIN)
            .arg("--config")
            .arg(install.config())
            .args(args)
            .output()
            .expect("run")
    };
    for args in [
        vec![
            std::ffi::OsStr::new("import"),
            "--source".as_ref(),
            "a0101701234".as_ref(),
            "x".as_ref(),
        ],
        vec![
            "import".as_ref(),
            "--source".as_ref(),
            "a0101701234 ".as_ref(),
            "x".as_ref(),
        ],
        vec![
            "forget".as_ref(),
            std::ffi::OsStr::from_bytes(b"0101701234\xff"),
        ],
        vec![
            "status".as_ref(),
            "--check".as_ref(),
            std::ffi::OsStr::from_bytes(b"0101701234\xff"),
        ],
        vec![
            "letters".as_ref(),
            "--overdue".as_ref(),
            "0101701234".as_ref(),
        ],
    ] {
        let (code, stdout, stderr) = outcome(&run(&args));
        assert!(code == 2 || code == 3, "{args:?}: {code} {stdout}{stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            !format!("{stdout}{stderr}").contains("1234"),
            "{args:?}: {stdout}{stderr}"
        );
    }
}

#[test]
fn prune_takes_the_refused_copies_of_what_it_deletes() {
    use crate::sample::{Status, padded, status_envelope_with};
    let install = Install::new(&format!("max_message_bytes = 4096\n{TYPES}"));
    let dir = install.path("in");
    std::fs::create_dir(&dir).expect("dir");
    let envelope = status_envelope_with(
        "e3000000-0000-4000-8000-000000000001",
        "e3000000-0000-4000-8000-000000000002",
        &Status::DELIVERED,
    );
    std::fs::write(dir.join("big.xml"), padded(envelope, 8000)).expect("write");
    let (code, stdout, _) = outcome(&install.run(&["import", dir.to_str().expect("utf-8")]));
    assert_eq!(code, 3, "{stdout}");
    // A larger limit takes it in: the refused row points at its message.
    let config = std::fs::read_to_string(install.config()).expect("read");
    std::fs::write(
        install.config(),
        config.replace("max_message_bytes = 4096", "max_message_bytes = 65536")
            + "\n[retention]\nstatus_days = 1\n",
    )
    .expect("write");
    let (code, stdout, stderr) = outcome(&install.run(&["reprocess"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        rows(
            &install.db(),
            "SELECT resolved_seq IS NOT NULL FROM rejected"
        ),
        ["1"]
    );
    // Retention deletes the letter, and with its message the copy it was taken in from:
    // nothing counts as refused, and `reprocess` does not bring it back.
    let (code, stdout, stderr) = outcome(&install.run(&["prune"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("1 letters deleted") && stdout.contains("1 refused messages"),
        "{stdout}"
    );
    let (code, stdout, stderr) = outcome(&install.run(&["reprocess"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let db = install.db();
    for table in ["rejected", "message", "letter", "print_status"] {
        assert_eq!(
            value::<i64>(&db, &format!("SELECT count(*) FROM {table}")),
            0,
            "{table}"
        );
    }
}

#[test]
fn retention_takes_the_refused_copies_never_resolved_and_the_bytes_of_dropped_envelopes() {
    use crate::sample::{Status, padded, status_envelope_with};
    let envelope = |n: u32| {
        padded(
            status_envelope_with(
                &format!("e4000000-0000-4000-8000-{n:012}"),
                &format!("e4000000-0000-4000-8000-{:012}", 100 + n),
                &Status::DELIVERED,
            ),
            8000,
        )
    };
    // The refused copy as it came, with its BeskedId in upper case (which the refusal reads
    // from the bytes as they are), or with a byte order mark and white space around it.
    let upper = |bytes: Vec<u8>| {
        String::from_utf8(bytes)
            .expect("utf-8")
            .replace(
                "e4000000-0000-4000-8000-000000000001",
                "E4000000-0000-4000-8000-000000000001",
            )
            .into_bytes()
    };
    let bom = |bytes: Vec<u8>| [&b"\xEF\xBB\xBF"[..], &bytes, b"\n\n"].concat();
    let same = |bytes: Vec<u8>| bytes;
    for (retention, kept_messages, copy) in [
        ("status_days", 0, &same as &dyn Fn(Vec<u8>) -> Vec<u8>),
        ("status_days", 0, &upper),
        ("status_days", 0, &bom),
        ("envelope_days", 1, &same),
        ("envelope_days", 1, &upper),
        ("envelope_days", 1, &bom),
    ] {
        let install = Install::new(&format!("max_message_bytes = 4096\n{TYPES}"));
        let dir = install.path("in");
        std::fs::create_dir(&dir).expect("dir");
        let refused = install.path("refused");
        std::fs::create_dir(&refused).expect("dir");
        std::fs::write(dir.join("a.xml"), envelope(1)).expect("write");
        std::fs::write(refused.join("a.xml"), copy(envelope(1))).expect("write");
        // Refused under the small limit...
        let (code, stdout, _) =
            outcome(&install.run(&["import", refused.to_str().expect("utf-8")]));
        assert_eq!(code, 3, "{stdout}");
        let config = std::fs::read_to_string(install.config()).expect("read");
        std::fs::write(
            install.config(),
            config.replace("max_message_bytes = 4096", "max_message_bytes = 65536")
                + &format!("\n[retention]\n{retention} = 1\n"),
        )
        .expect("write");
        // ...then the same bytes stored, in a run of their own, without `reprocess`.
        let (code, stdout, stderr) =
            outcome(&install.run(&["import", dir.to_str().expect("utf-8")]));
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert_eq!(
            value::<i64>(&install.db(), "SELECT count(*) FROM rejected"),
            1
        );
        let (code, stdout, stderr) = outcome(&install.run(&["prune"]));
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(
            stdout.contains("1 refused messages"),
            "{retention}: {stdout}"
        );
        let (code, stdout, stderr) = outcome(&install.run(&["reprocess"]));
        assert_eq!(code, 0, "{stdout}{stderr}");
        let db = install.db();
        assert_eq!(
            value::<i64>(&db, "SELECT count(*) FROM rejected"),
            0,
            "{retention}"
        );
        assert_eq!(
            value::<i64>(&db, "SELECT count(*) FROM message"),
            kept_messages,
            "{retention}"
        );
        assert_eq!(
            value::<i64>(
                &db,
                "SELECT count(*) FROM message WHERE length(envelope) > 0"
            ),
            0,
            "{retention}"
        );
    }
}

#[test]
fn prune_applies_retention_and_keeps_the_current_registration() {
    let install = Install::new(TYPES);
    let good = fixtures().join("good");
    let bad = fixtures().join("bad");
    outcome(&install.run(&["import", good.to_str().expect("utf-8")]));
    outcome(&install.run(&["import", bad.to_str().expect("utf-8")]));
    // Nothing is deleted unless configured.
    let (code, _, stderr) = outcome(&install.run(&["prune"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("sets no retention period"), "{stderr}");

    let db = install.db();
    let letters = value::<i64>(&db, "SELECT count(*) FROM letter");
    let final_letters = value::<i64>(&db, "SELECT count(*) FROM letter WHERE final = 1");
    let parties = value::<i64>(&db, "SELECT count(*) FROM registration_current");
    assert!(value::<i64>(&db, "SELECT count(*) FROM rejected") > 0);
    drop(db);
    // The fixtures are from 2026; a day is enough to make all of them old.
    install.append_config(
        "\n[retention]\nenvelope_days = 1\nstatus_days = 1\nregistration_history_days = 1\nrejected_days = 1\nrun_days = 1\n",
    );
    // A refused message from now is kept. (Told apart from the others by its row, not by its
    // path: the fixtures' own path may hold any word.)
    let older = value::<i64>(&install.db(), "SELECT max(id) FROM rejected");
    let fresh = install.path("fresh");
    std::fs::create_dir(&fresh).expect("dir");
    std::fs::write(fresh.join("x.xml"), "not xml").expect("write");
    outcome(&install.run(&["import", fresh.to_str().expect("utf-8")]));
    install
        .db()
        .execute_batch(&format!(
            "UPDATE rejected SET received_at = '2026-01-01T00:00:00.000Z' WHERE id <= {older};
             UPDATE run SET started_at = '2026-01-01T00:00:00.000Z', ended_at = '2026-01-01T00:00:01.000Z';
             INSERT INTO run (source, command, started_at, ended_at, status, error)
                 VALUES ('import', 'import', '2026-01-02T00:00:00.000Z', '2026-01-02T00:00:01.000Z', 'failed', 'x');",
        ))
        .expect("age");

    let (code, stdout, stderr) = outcome(&install.run(&["prune"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("pruned: "), "{stdout}");
    let db = install.db();
    assert_eq!(
        value::<i64>(&db, "SELECT count(*) FROM letter"),
        letters - final_letters
    );
    assert_eq!(
        value::<i64>(
            &db,
            "SELECT count(*) FROM print_status WHERE message_uuid NOT IN (SELECT message_uuid FROM letter)"
        ),
        0
    );
    assert_eq!(
        value::<i64>(&db, "SELECT count(*) FROM registration_current"),
        parties
    );
    assert_eq!(
        value::<i64>(&db, "SELECT count(*) FROM registration"),
        parties,
        "only the current registrations stay"
    );
    // Age counts from the message's own time; without one, from its arrival (today).
    assert_eq!(
        rows(
            &db,
            "SELECT DISTINCT (created_at IS NULL) || ' ' || (length(envelope) > 0) || ' ' || (envelope_pruned_at IS NULL) FROM message ORDER BY 1"
        ),
        ["0 0 0", "1 1 1"]
    );
    assert_eq!(
        rows(
            &db,
            &format!("SELECT id > {older} AND origin LIKE '%x.xml' FROM rejected")
        ),
        ["1"]
    );
    // The dropped bytes are gone from the files, not only from the rows: the envelopes with
    // a Dannelsestidspunkt (created_at) were old enough, and not one of them is left (the
    // element, that is: the schema names it in a comment).
    assert_eq!(
        occurrences(&install, "Dannelsestidspunkt>"),
        Vec::<String>::new()
    );
    // Old runs go, but not each source's newest run and newest success (monitoring needs
    // them).
    assert_eq!(
        rows(&db, "SELECT status FROM run ORDER BY id"),
        ["ok", "failed"]
    );
    // Nothing left to do: a second prune removes nothing.
    let (code, stdout, _) = outcome(&install.run(&["prune"]));
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("pruned: 0 envelopes dropped, 0 letters deleted (0 statuses), 0 superseded registrations, 0 refused messages, 0 runs"),
        "{stdout}"
    );
}

#[test]
fn backup_during_a_sync_is_consistent_private_and_verified() {
    let test = PullTest::new(envelopes(0xb1, 3000), "batch_size = 50\n");
    let install = &test.install;
    let mut child = spawn_sync(install);
    wait_for_commits(install, 100, &mut child);
    let copy = install.path("backup.db");
    let (code, stdout, stderr) = outcome(&install.run(&["backup", copy.to_str().expect("utf-8")]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("integrity ok"), "{stdout}");
    let (sync_code, sync_out, sync_err) = outcome(&child.wait_with_output().expect("sync"));
    assert_eq!(sync_code, 0, "{sync_out}{sync_err}");

    let mode = std::fs::metadata(&copy).expect("copy").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
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
    let dir = install.path("in");
    std::fs::create_dir(&dir).expect("dir");
    std::fs::write(dir.join("cpr 251248-9996\nforged.xml"), "<a>").expect("write");
    let output = Command::new(BIN)
        .arg("--config")
        .arg(install.config())
        .args(["import", dir.to_str().expect("utf-8")])
        .env("BESKEDHENT_LOG", "info")
        .env("BESKEDHENT_LOG_FORMAT", "json")
        .output()
        .expect("run");
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
fn daemon_tells_systemd_and_exits_after_failing_passes() {
    use std::os::unix::net::UnixDatagram;
    let test = PullTest::new(envelopes(0xc1, 1), "retries = 0\n");
    let install = &test.install;
    let config = std::fs::read_to_string(install.config()).expect("config");
    std::fs::write(
        install.config(),
        config.replace(&test.queue, "00000000-0000-4000-8000-000000000bad")
            + "\n[schedule]\ncron = \"* * * * * *\"\nexit_after_failed_passes = 2\n",
    )
    .expect("config");
    let socket_path = install.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(install.config())
        .arg("daemon")
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

#[test]
fn operations_mistakes_are_refused_plainly() {
    let install = Install::new(TYPES);
    outcome(&install.run(&["init"]));
    // A retention period no calendar can subtract is a configuration error naming the key.
    install.append_config("\n[retention]\nrun_days = 100000000\n");
    let (code, _, stderr) = outcome(&install.run(&["prune"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("`retention.run_days` is 100000000 days"),
        "{stderr}"
    );
    let (code, stdout, _) = outcome(&install.run(&["status", "--check"]));
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.starts_with("UNKNOWN - invalid configuration"),
        "{stdout}"
    );
    let config = std::fs::read_to_string(install.config()).expect("config");
    std::fs::write(install.config(), config.replace("100000000", "0")).expect("config");
    let (code, _, stderr) = outcome(&install.run(&["prune"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("sets no retention period"), "{stderr}");

    // A plugin given a wrong option is UNKNOWN, not CRITICAL.
    for args in [
        &["status", "--check", "--json"][..],
        &["status", "--check=yes"],
        &["status", "--check="],
    ] {
        let (code, stdout, stderr) = outcome(&install.run(args));
        assert_eq!(code, 3, "{args:?}: {stdout}{stderr}");
        assert!(stdout.starts_with("UNKNOWN - "), "{stdout}");
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
    }

    // `import --source` follows the rule of feed names.
    for source in ["a|b", "0101701234", ""] {
        let (code, _, stderr) = outcome(&install.run(&["import", "--source", source, "."]));
        assert_eq!(code, 2, "{source}");
        assert!(
            stderr.contains("must be 1 to 64 letters") || stderr.contains("could be a CPR number"),
            "{stderr}"
        );
        assert!(!stderr.contains("1234"), "{stderr}");
    }
    // Every usage mistake is said like any error: CPR numbers masked, and a newline in an
    // argument cannot start a line of its own.
    for args in [
        &["status", "0101701234"][..],
        &["letters", "--limit", "010170-1234"],
        &["letters", "--overdue", "5\nERROR forged"],
        &["letters", "--overdue=5\nERROR forged"],
        &["letters", "--since", "2026-13-01"],
        &["letters", "--overdue", "4294967295"],
    ] {
        let (code, stdout, stderr) = outcome(&install.run(args));
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(!stderr.contains("1234"), "{stderr}");
        assert!(
            stderr.lines().all(|line| !line.starts_with("ERROR")),
            "{stderr}"
        );
    }

    // A command that changes a replica never creates one: an erasure on a mistyped path
    // must not look done.
    let elsewhere = Install::new(TYPES);
    elsewhere.append_config("\n[notify]\ncommand = [\"/bin/true\"]\n[retention]\nrun_days = 30\n");
    for args in [
        &["forget", "0101701234"][..],
        &["reprocess"],
        &["notify", "--dry-run"],
        &["prune"],
    ] {
        let (code, stdout, stderr) = outcome(&elsewhere.run(args));
        assert_eq!(code, 1, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains("does not exist"), "{args:?}: {stderr}");
        assert!(!elsewhere.path("replica.db").exists(), "{args:?}");
    }

    // Nor is another program's database, or an empty file, taken for one, whatever schema
    // version it sets for itself.
    for version in [0, 3, 5] {
        let foreign = Install::new(TYPES);
        foreign.append_config("\n[retention]\nrun_days = 30\n");
        rusqlite::Connection::open(foreign.path("replica.db"))
            .and_then(|db| {
                db.execute_batch(&format!(
                    "CREATE TABLE customers (id INTEGER PRIMARY KEY); PRAGMA user_version = {version};"
                ))
            })
            .expect("foreign database");
        let before = std::fs::read(foreign.path("replica.db")).expect("read");
        for args in [
            &["forget", "0101701234"][..],
            &["reprocess"],
            &["prune"],
            &["init"],
            &["import", "/nonexistent"],
            &["status"],
        ] {
            let (code, _, stderr) = outcome(&foreign.run(args));
            assert_eq!(code, 1, "{version} {args:?}: {stderr}");
            assert!(
                stderr.contains("another program") || stderr.contains("not a beskedhent database"),
                "{version} {args:?}: {stderr}"
            );
        }
        assert_eq!(
            std::fs::read(foreign.path("replica.db")).expect("read"),
            before,
            "nothing was written into it (version {version})"
        );
        assert!(!foreign.path("replica.db-wal").exists());
    }
    // Nor one whose last transactions are in its WAL, or half-way in a journal: deciding
    // must not let SQLite checkpoint, delete or roll back another program's files.
    for journal_mode in ["wal", "delete"] {
        let foreign = Install::new(TYPES);
        foreign.append_config("\n[retention]\nrun_days = 30\n");
        let scratch = foreign.path("scratch.db");
        let db = rusqlite::Connection::open(&scratch).expect("open");
        db.execute_batch(&format!(
            "PRAGMA journal_mode = {journal_mode}; PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
             INSERT INTO customers (name) SELECT hex(randomblob(200)) FROM n;"
        ))
        .expect("foreign database");
        let side = if journal_mode == "wal" {
            "-wal"
        } else {
            // A transaction larger than the page cache spills into the file, so the journal
            // is hot: whoever opens the database next must roll it back.
            db.execute_batch(
                "PRAGMA cache_size = 2; BEGIN; UPDATE customers SET name = lower(name);",
            )
            .expect("spill");
            "-journal"
        };
        for suffix in ["", side] {
            std::fs::copy(
                format!("{}{suffix}", scratch.display()),
                format!("{}{suffix}", foreign.path("replica.db").display()),
            )
            .expect("copy");
        }
        drop(db);
        let files = |install: &Install| {
            ["replica.db", &format!("replica.db{side}")]
                .map(|name| std::fs::read(install.path(name)).expect("still there"))
        };
        let before = files(&foreign);
        assert!(!before[1].is_empty(), "{side}");
        for args in [&["init"][..], &["import", "/nonexistent"], &["prune"]] {
            let (code, _, stderr) = outcome(&foreign.run(args));
            assert_eq!(code, 1, "{side} {args:?}: {stderr}");
            assert!(
                stderr.contains("another program") || stderr.contains("not a beskedhent database"),
                "{side} {args:?}: {stderr}"
            );
            assert!(files(&foreign) == before, "{side} {args:?}: files changed");
        }
    }
    // An empty file (or none) with another program's WAL beside it: SQLite would discard the
    // WAL on opening. And a database with no tables but a version of its own.
    {
        let foreign = Install::new(TYPES);
        let scratch = foreign.path("scratch.db");
        let db = rusqlite::Connection::open(&scratch).expect("open");
        db.execute_batch(
            "PRAGMA journal_mode = wal; PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE customers (id INTEGER PRIMARY KEY); INSERT INTO customers DEFAULT VALUES;",
        )
        .expect("wal");
        std::fs::copy(
            format!("{}-wal", scratch.display()),
            foreign.path("replica.db-wal"),
        )
        .expect("copy");
        drop(db);
        let wal = std::fs::read(foreign.path("replica.db-wal")).expect("wal");
        for empty in [false, true] {
            if empty {
                std::fs::write(foreign.path("replica.db"), b"").expect("empty");
            }
            let (code, _, stderr) = outcome(&foreign.run(&["init"]));
            assert_eq!(code, 1, "{stderr}");
            assert!(stderr.contains("would discard it"), "{stderr}");
            assert_eq!(
                std::fs::read(foreign.path("replica.db-wal")).expect("wal"),
                wal
            );
            assert_eq!(
                std::fs::metadata(foreign.path("replica.db"))
                    .map(|m| m.len())
                    .ok(),
                empty.then_some(0)
            );
        }
        let versioned = Install::new(TYPES);
        rusqlite::Connection::open(versioned.path("replica.db"))
            .and_then(|db| db.execute_batch("PRAGMA user_version = 7"))
            .expect("version");
        let before = std::fs::read(versioned.path("replica.db")).expect("read");
        for args in [&["init"][..], &["import", "/nonexistent"], &["status"]] {
            let (code, _, stderr) = outcome(&versioned.run(args));
            assert_eq!(code, 1, "{args:?}: {stderr}");
            assert!(
                stderr.contains("another program") || stderr.contains("not a beskedhent database"),
                "{args:?}: {stderr}"
            );
        }
        assert_eq!(
            std::fs::read(versioned.path("replica.db")).expect("read"),
            before
        );
    }
    std::fs::write(elsewhere.path("replica.db"), b"").expect("empty file");
    let (code, _, stderr) = outcome(&elsewhere.run(&["forget", "0101701234"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not a beskedhent database"), "{stderr}");

    // `backup` never writes where SQLite looks for the replica's own files.
    let journal = format!("{}-journal", install.db_path().display());
    let (code, _, stderr) = outcome(&install.run(&["backup", &journal]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("one of the replica's own files"),
        "{stderr}"
    );
    assert!(!Path::new(&journal).exists());
    // Nor where a feed's or an import's run keeps its lock, nor beside the real file when
    // `database` is a symbolic link to it.
    let lock = format!("{}-status.lock", install.db_path().display());
    let (code, _, stderr) = outcome(&install.run(&["backup", &lock]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("one of the replica's own files"),
        "{stderr}"
    );
    assert!(!Path::new(&lock).exists());
    let linked = Install::new(TYPES);
    std::os::unix::fs::symlink(install.db_path(), linked.path("link.db")).expect("link");
    std::fs::write(
        linked.config(),
        format!("database = \"{}\"\n", linked.path("link.db").display()),
    )
    .expect("config");
    let (code, _, stderr) = outcome(&linked.run(&["backup", &journal]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("one of the replica's own files"),
        "{stderr}"
    );
    assert!(!Path::new(&journal).exists());

    // `forget`: an impossible date is refused; a number stored nowhere changes nothing, and
    // says so.
    let (code, _, stderr) = outcome(&install.run(&["forget", "3201701234"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("must be a date"), "{stderr}");
    let (code, stdout, _) = outcome(&install.run(&["forget", "0101701235"]));
    assert_eq!(code, 0);
    assert!(stdout.starts_with("nothing in "), "{stdout}");
    assert!(!stdout.contains("1235"), "{stdout}");

    // `backup` to a directory.
    let (code, _, stderr) =
        outcome(&install.run(&["backup", install.dir.path().to_str().expect("utf-8")]));
    assert_eq!(code, 1);
    assert!(stderr.contains("is a directory"), "{stderr}");

    // With JSON logging, a fatal error is a JSON line too.
    let output = Command::new(BIN)
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

    // Output that cannot be written is an error said on standard error, never a panic; a
    // reader that goes away early is not.
    // As a monitoring plugin, that is UNKNOWN (3) like any failure of the plugin.
    for (args, expected) in [
        (&["status"][..], 1),
        (&["status", "--json"], 1),
        (&["letters"], 1),
        (&["status", "--check"], 3),
    ] {
        let output = Command::new(BIN)
            .arg("--config")
            .arg(install.config())
            .args(args)
            .stdout(std::fs::File::create("/dev/full").expect("/dev/full"))
            .output()
            .expect("run");
        let (code, _, stderr) = outcome(&output);
        assert_eq!(code, expected, "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot write to standard output: No space left on device"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Nor is an error that cannot be said (standard error full or closed): the exit code
    // still tells.
    for (args, expected) in [
        (&["letters", "--bogus"][..], 2),
        (&["letters", "--until", "+10000-01-01"], 2),
        (&["status", "--check", "--bogus"], 3),
        (&["backup", "/nonexistent/dir/copy.db"], 1),
    ] {
        for redirect in ["2>/dev/full", "2>&-"] {
            let status = Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("exec \"$@\" >/dev/null {redirect}"))
                .arg("sh")
                .arg(BIN)
                .arg("--config")
                .arg(install.config())
                .args(args)
                .status()
                .expect("run");
            assert_eq!(status.code(), Some(expected), "{args:?} {redirect}");
        }
    }
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(install.config())
        .args(["letters", "--json", "--limit", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("wait");
    let (code, _, stderr) = outcome(&output);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A replica others can read is pointed out by the commands that only read it too.
    std::fs::set_permissions(
        install.path("replica.db"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .expect("chmod");
    for args in [&["status"][..], &["letters"], &["show", "x"]] {
        let (_, stdout, stderr) = outcome(&install.run(args));
        assert!(
            stderr.contains("can be read by other users (mode 644)"),
            "{args:?}: {stdout}{stderr}"
        );
    }
}
