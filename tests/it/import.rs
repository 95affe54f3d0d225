//! `init`, `import`, `reprocess`, `status`, `letters` and `show` end to end, over the fixtures
//! and generated envelopes: what the replica holds, what is refused and why, a killed import
//! resumed, one import of a source at a time, the replica's own files and other databases never
//! imported, configuration errors, and the shipped configuration.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{
    BIN, Install, TYPES, fixtures, mode, outcome, rows, status_envelope, test_uuid, value,
    wait_for_commits, write_envelopes,
};

/// The good fixtures imported into a replica with the test registration types.
fn good_fixtures_imported() -> (Install, String) {
    let install = Install::new(TYPES);
    let (code, stdout, stderr) = outcome(&install.import(&fixtures().join("good")));
    assert_eq!(code, 0, "{stdout}{stderr}");
    (install, stdout)
}

#[test]
fn the_fixtures_are_stored_once_per_besked_id_and_the_cursor_moves_with_them() {
    let (install, stdout) = good_fixtures_imported();
    assert!(
        stdout.starts_with("imported 21 files: 20 new, 1 duplicates, 0 rejected in "),
        "{stdout}"
    );
    let db = install.db();
    // One row per BeskedId; the duplicate file is counted, not stored.
    assert_eq!(value::<i64>(&db, "SELECT count(*) FROM message"), 20);
    assert_eq!(
        rows(
            &db,
            "SELECT kind, count(*) FROM message GROUP BY kind ORDER BY kind"
        ),
        [
            "digitalpost_registration|4",
            "nemsms_registration|2",
            "other|1",
            "post_status|13"
        ]
    );
    assert_eq!(
        rows(
            &db,
            "SELECT source, last_seq = (SELECT max(seq) FROM message), messages, duplicates, rejected, run_status
             FROM cursor"
        ),
        ["import|1|20|1|0|ok"]
    );
}

#[test]
fn captured_status_messages_are_read_field_by_field() {
    let (install, _) = good_fixtures_imported();
    let db = install.db();
    // The real captured messages (ModtagBeskedInput wrapper, rebound ns4 prefix).
    assert_eq!(
        rows(
            &db,
            "SELECT message_uuid, transmission_id, message_id, kanal, status, event, final, outcome,
                    occurred_at, fejl_kode, producer
             FROM print_status WHERE besked_id IN ('bd12c645-de98-453a-ac80-f58a76942eda',
                 'dac92c8b-a6ff-4f04-aab3-15be45576887') ORDER BY seq"
        ),
        [
            "8853363b-43ec-4d0a-a54d-65447f9447ed|1ab6eb87-a457-4ad3-8952-ed8f18a1676a|0d7a7d95-0c4a-4f86-bd98-c599d0b81128|Digital Post|Afleveret Digital Post|Afleveret Digital Post|1|delivered|2023-02-13T11:22:05.154Z|-|Digital Post",
            "33ca98c5-d2ce-43e7-be3a-d5cfde9f6394|317720e2-052b-450b-b510-2a0a3ab35d38|ed28b9d0-5d3c-4897-ae18-46c61b829009|Digital Post|Fejlet|Fejlet|1|failed|2023-02-13T12:04:12.845Z|memo.invalid|Digital Post",
        ]
    );
    let fejl_tekst: String = value(
        &db,
        "SELECT fejl_tekst FROM print_status WHERE message_uuid = '33ca98c5-d2ce-43e7-be3a-d5cfde9f6394'",
    );
    assert!(
        fejl_tekst.starts_with("javax.xml.stream.XMLStreamException: com.fasterxml.jackson.core.JsonParseException: tag name \"mandatory\" is not allowed. Possible tag names are: <label>,<messageCode>"),
        "{fejl_tekst}"
    );
    assert_eq!(
        value::<String>(
            &db,
            "SELECT created_at FROM message WHERE besked_id = 'bd12c645-de98-453a-ac80-f58a76942eda'"
        ),
        "2023-02-13T11:22:05.570Z"
    );
}

#[test]
fn a_physical_letter_and_inline_payloads_are_read_with_their_prefixes_and_offsets() {
    let (install, _) = good_fixtures_imported();
    let db = install.db();
    // A physical letter: other prefixes, +01:00 offset, base64 wrapped at 76 columns.
    assert_eq!(
        rows(
            &db,
            "SELECT kanal, event, final, occurred_at, afsendelse_id, producer
             FROM print_status WHERE message_uuid = '587fd280-3bab-4c39-8d88-348a7eed8d14'"
        ),
        ["Fysisk Post|Klar|0|2026-03-01T09:10:18.470Z|AF000123456|Strålfors"]
    );
    // Inline payload with a summer-time offset; empty Beskeddata read from the envelope in
    // Danish local time without offset.
    assert_eq!(
        rows(
            &db,
            "SELECT message_uuid, kanal, event, occurred_at FROM print_status
             WHERE besked_id IN ('a0000000-0000-4000-8000-000000000002',
                                 'a0000000-0000-4000-8000-000000000003') ORDER BY besked_id"
        ),
        [
            "c0000000-0000-4000-8000-00000000000b|Fysisk Post|Afsendt|2026-07-02T09:00:00.000Z",
            "c0000000-0000-4000-8000-00000000000c|-|Klar|2026-07-02T09:00:00.000Z",
        ]
    );
}

#[test]
fn a_letters_latest_status_is_by_event_time_and_a_final_one_is_never_replaced() {
    let (install, _) = good_fixtures_imported();
    let db = install.db();
    assert_eq!(
        rows(
            &db,
            "SELECT message_uuid, event FROM print_status_latest
             WHERE message_uuid IN ('cd613e30-d8f1-4adf-91b7-584a2265b1f5',
                 'c0000000-0000-4000-8000-00000000000d', 'c0000000-0000-4000-8000-00000000000e')
             ORDER BY message_uuid"
        ),
        [
            "c0000000-0000-4000-8000-00000000000d|Afleveret Digital Post",
            "c0000000-0000-4000-8000-00000000000e|Fejlet",
            "cd613e30-d8f1-4adf-91b7-584a2265b1f5|Afleveret Digital Post",
        ]
    );
    assert_eq!(
        value::<i64>(&db, "SELECT count(*) FROM print_status_latest"),
        value::<i64>(&db, "SELECT count(DISTINCT message_uuid) FROM print_status")
    );
}

#[test]
fn registrations_are_current_by_change_time_whatever_the_arrival_order() {
    let (install, _) = good_fixtures_imported();
    assert_eq!(
        rows(
            &install.db(),
            "SELECT party, party_type, channel, registered, changed_at FROM registration_current
             ORDER BY party, channel"
        ),
        [
            "0101701234|cpr|digitalpost|0|2026-03-01T11:40:53.519Z",
            "0202802345|cpr|digitalpost|0|2026-03-04T11:00:00.000Z",
            "0202802345|cpr|nemsms|1|2026-03-04T10:00:00.000Z",
            "12345678|cvr|nemsms|1|2026-03-01T13:20:37.402Z",
        ]
    );
}

#[test]
fn an_envelope_is_kept_byte_for_byte_bom_and_crlf_included() {
    let (install, _) = good_fixtures_imported();
    let bom_file = std::fs::read(fixtures().join("good/20-bom-crlf.xml")).expect("fixture");
    let stored: Vec<u8> = value(
        &install.db(),
        "SELECT envelope FROM message WHERE besked_id = 'a0000000-0000-4000-8000-000000000001'",
    );
    assert_eq!(stored, bom_file);
    assert!(stored.starts_with(b"\xEF\xBB\xBF") && stored.windows(2).any(|w| w == b"\r\n"));
}

/// Every bad fixture: its reason (in part), and the BeskedId kept with it when one could be
/// read.
const BAD_FIXTURES: [(&str, &str, Option<&str>); 27] = [
    (
        "bad-timestamp.xml",
        "Registreringstidspunkt holds `01-03-2026 10:00`, which is not a timestamp",
        Some("b0000000-0000-4000-8000-00000000000c"),
    ),
    (
        "base64-payload-with-doctype.xml",
        "the payload in Beskeddata/Base64: refused: the document contains a DOCTYPE",
        Some("b0000000-0000-4000-8000-00000000000b"),
    ),
    (
        "binary.xml",
        "not UTF-8: invalid UTF-8 byte sequence at byte 128",
        None,
    ),
    (
        "broken-base64.xml",
        "Beskeddata/Base64 is not valid base64",
        Some("b0000000-0000-4000-8000-00000000000a"),
    ),
    (
        "declared-latin1.xml",
        "encoding=\"iso-8859-1\"; Beskedfordeler messages are UTF-8",
        Some("b0000000-0000-4000-8000-000000000008"),
    ),
    (
        "doctype-entity-expansion.xml",
        "DOCTYPE declaration (DTDs and entities are never processed)",
        Some("b0000000-0000-4000-8000-000000000001"),
    ),
    ("doctype-external.xml", "DOCTYPE declaration", None),
    (
        "empty.xml",
        "malformed XML at byte 0: no root element",
        None,
    ),
    (
        "malformed-mismatched.xml",
        "end tag `</ns2:BeskedID>` does not match start tag `<ns2:BeskedId>`",
        Some("b0000000-0000-4000-8000-000000000005"),
    ),
    (
        "malformed-truncated.xml",
        "malformed XML at byte 891: syntax error: tag not closed",
        Some("b0000000-0000-4000-8000-000000000004"),
    ),
    ("missing-beskedid.xml", "missing BeskedId", None),
    (
        "not-an-envelope.xml",
        "root element is `{urn:example:invoice}Invoice`",
        None,
    ),
    (
        "not-utf8-latin1.xml",
        "not UTF-8: invalid UTF-8 byte sequence",
        Some("b0000000-0000-4000-8000-000000000006"),
    ),
    (
        "registration-bad-cpr.xml",
        "party URN `urn:oio:cpr-nr:…` ends in 9 characters, not a 10-digit CPR number",
        Some("b0000000-0000-4000-8000-000000000014"),
    ),
    (
        "registration-unknown-handling.xml",
        "ObjektHandling `0f0e7a1c-9999-4a2b-9c3d-4e5f6a7b8c9d` is in neither",
        Some("b0000000-0000-4000-8000-000000000013"),
    ),
    (
        "undefined-entity.xml",
        "undefined entity reference `&xxe;`",
        Some("b0000000-0000-4000-8000-000000000003"),
    ),
    ("utf16.xml", "UTF-16 byte order mark", None),
    (
        "timestamp-offset-minutes.xml",
        "holds `2026-03-01T10:00:00+14:60`, which is not a timestamp",
        Some("b0000000-0000-4000-8000-000000000029"),
    ),
    (
        "timestamp-out-of-range.xml",
        "holds `9999-12-31T23:59:59-12:00`, which is not a timestamp",
        Some("b0000000-0000-4000-8000-000000000028"),
    ),
    (
        "wf-attribute-lt.xml",
        "`<` in an attribute value",
        Some("b0000000-0000-4000-8000-000000000021"),
    ),
    (
        "wf-attribute-undefined-entity.xml",
        "undefined entity reference `&xxe;`",
        Some("b0000000-0000-4000-8000-000000000020"),
    ),
    (
        "wf-control-character-reference.xml",
        "character reference `&#x1;` is not an allowed XML character",
        Some("b0000000-0000-4000-8000-000000000023"),
    ),
    (
        "wf-control-character.xml",
        "character U+0001 is not allowed in XML",
        Some("b0000000-0000-4000-8000-000000000022"),
    ),
    (
        "wf-declaration-unquoted-encoding.xml",
        "the value of `encoding` in the XML declaration is not in quotes",
        Some("b0000000-0000-4000-8000-000000000026"),
    ),
    (
        "wf-declaration-version-2.xml",
        "invalid XML version `2.0`",
        Some("b0000000-0000-4000-8000-000000000025"),
    ),
    (
        "wf-noncharacter-reference.xml",
        "character reference `&#xFFFE;` is not an allowed XML character",
        Some("b0000000-0000-4000-8000-000000000024"),
    ),
    (
        "wf-two-byte-order-marks.xml",
        "a second byte order mark",
        Some("b0000000-0000-4000-8000-000000000027"),
    ),
];

/// The bad fixtures imported with one good file; the run's stdout and stderr.
fn bad_fixtures_imported() -> (Install, String, String) {
    let install = Install::new(TYPES);
    let bad = fixtures().join("bad");
    let good = fixtures().join("good/10-status-digital-received.xml");
    let output = install.run(&[
        "import",
        bad.to_str().expect("utf-8"),
        good.to_str().expect("utf-8"),
    ]);
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 3, "{stdout}{stderr}");
    (install, stdout, stderr)
}

/// Every kind of bad input: refused with a reason, raw bytes kept, the rest still imported.
#[test]
fn bad_input_is_rejected_with_reason_and_raw_bytes() {
    let (install, stdout, stderr) = bad_fixtures_imported();
    assert!(
        stdout.starts_with("imported 28 files: 1 new, 0 duplicates, 27 rejected"),
        "{stdout}"
    );
    let db = install.db();
    for (file, reason, besked_id) in BAD_FIXTURES {
        let path = fixtures().join("bad").join(file);
        let (stored_reason, raw, stored_id): (String, Vec<u8>, Option<String>) = db
            .query_row(
                "SELECT reason, raw, besked_id FROM rejected WHERE origin = ?1",
                [path.to_str().expect("utf-8")],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap_or_else(|error| panic!("{file}: {error}"));
        assert!(stored_reason.contains(reason), "{file}: `{stored_reason}`");
        assert_eq!(
            raw,
            std::fs::read(&path).expect("fixture"),
            "{file}: raw bytes"
        );
        assert_eq!(stored_id.as_deref(), besked_id, "{file}: besked_id");
        // Every rejection is also in the log, naming the file.
        assert!(stderr.contains(file), "{file} not in log:\n{stderr}");
    }
    assert_eq!(value::<i64>(&db, "SELECT count(*) FROM rejected"), 27);
}

#[test]
fn bad_input_expands_no_entity_and_repeats_no_broken_cpr_number() {
    let (install, _, stderr) = bad_fixtures_imported();
    let db = install.db();
    // The entity was never expanded anywhere.
    assert_eq!(
        value::<i64>(
            &db,
            "SELECT count(*) FROM message WHERE CAST(envelope AS TEXT) LIKE '%lollol%'"
        ),
        0
    );
    // A broken CPR number is not repeated in a reason, nor in the log.
    assert!(!stderr.contains("030390345"), "{stderr}");
    assert_eq!(
        value::<i64>(
            &db,
            "SELECT count(*) FROM rejected WHERE reason LIKE '%030390%'"
        ),
        0
    );
}

#[test]
fn importing_twice_changes_only_duplicate_counts() {
    let install = Install::new(TYPES);
    let all = fixtures();
    let all = all.to_str().expect("utf-8");
    assert_eq!(outcome(&install.run(&["import", all])).0, 3);
    let snapshot = |db: &rusqlite::Connection| {
        [
            rows(
                db,
                "SELECT seq, besked_id, source, received_at, length(envelope) FROM message ORDER BY seq",
            ),
            rows(db, "SELECT * FROM print_status ORDER BY seq"),
            rows(db, "SELECT * FROM registration ORDER BY seq"),
            rows(
                db,
                "SELECT id, received_at, reason, raw_sha256 FROM rejected ORDER BY id",
            ),
        ]
    };
    let before = snapshot(&install.db());
    let counts =
        |db: &rusqlite::Connection| rows(db, "SELECT messages, duplicates, rejected FROM cursor");
    assert_eq!(counts(&install.db()), ["20|1|27"]);

    let output = install.run(&["import", all]);
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 0, "nothing new was refused: {stdout}{stderr}");
    assert!(
        stdout.starts_with("imported 48 files: 0 new, 48 duplicates, 0 rejected"),
        "{stdout}"
    );
    assert_eq!(snapshot(&install.db()), before);
    assert_eq!(counts(&install.db()), ["20|49|27"]);
}

#[test]
fn oversized_message_is_kept_raw_and_the_rest_goes_on() {
    let install = Install::new("max_message_bytes = 4000\n");
    let input = install.mkdir("in");
    let big = status_envelope(&test_uuid(1, 1), &test_uuid(2, 1), 0).replace(
        "<ns2:BeskedVersion>1.0</ns2:BeskedVersion>",
        &format!(
            "<ns2:BeskedVersion>1.0</ns2:BeskedVersion><!--{}-->",
            "x".repeat(200_000)
        ),
    );
    std::fs::write(input.join("a-big.xml"), &big).expect("write");
    std::fs::write(
        input.join("b-normal.xml"),
        status_envelope(&test_uuid(1, 2), &test_uuid(2, 2), 1),
    )
    .expect("write");
    let (code, stdout, stderr) = outcome(&install.run(&["import", input.to_str().expect("utf-8")]));
    assert_eq!(code, 3, "{stdout}{stderr}");
    let db = install.db();
    let (reason, raw, besked_id): (String, Vec<u8>, String) = db
        .query_row("SELECT reason, raw, besked_id FROM rejected", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .expect("one rejected row");
    assert!(
        reason.starts_with(&format!(
            "message of {} bytes is larger than max_message_bytes (4000)",
            big.len()
        )),
        "{reason}"
    );
    assert_eq!(raw, big.as_bytes());
    assert_eq!(besked_id, test_uuid(1, 1));
    assert_eq!(value::<i64>(&db, "SELECT count(*) FROM message"), 1);
}

#[test]
fn init_creates_a_private_database_and_is_idempotent() {
    let install = Install::new("");
    let (code, stdout, _) = outcome(&install.run(&["init"]));
    assert_eq!(code, 0);
    assert!(stdout.starts_with("created database"), "{stdout}");
    assert_eq!(mode(&install.db_path()), 0o600);
    let (code, stdout, _) = outcome(&install.run(&["init"]));
    assert_eq!(code, 0);
    assert!(stdout.starts_with("up to date: database"), "{stdout}");
    assert_eq!(
        value::<i64>(&install.db(), "PRAGMA user_version"),
        beskedhent::replica::SCHEMA_VERSION as i64
    );
}

#[test]
fn status_reports_sources_and_totals() {
    let install = Install::new(TYPES);
    let good = fixtures().join("good");
    install.run(&[
        "import",
        "--source",
        "backfill",
        good.to_str().expect("utf-8"),
    ]);
    install.run(&["import", fixtures().join("bad").to_str().expect("utf-8")]);

    let (code, stdout, _) = outcome(&install.run(&["status"]));
    assert_eq!(code, 0);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].contains(&format!(
            "(schema {}): 20 messages, 13 print statuses, 6 registrations, 27 rejected",
            beskedhent::replica::SCHEMA_VERSION
        )),
        "{stdout}"
    );
    assert_eq!(
        lines[1],
        "10 letters; notifications: 0 pending (0 failing), 0 sent, 0 not sent (older than max_age_days)",
        "{stdout}"
    );
    assert!(lines[2].starts_with("SOURCE"), "{stdout}");
    assert!(
        lines[3].starts_with("backfill") && lines[3].contains(" ok "),
        "{stdout}"
    );
    assert!(lines[4].starts_with("import"), "{stdout}");
    let total: Vec<&str> = lines[5].split_whitespace().collect();
    assert_eq!(total, ["total", "20", "1", "27"], "{stdout}");

    let (code, stdout, _) = outcome(&install.run(&["status", "--json"]));
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(report["totals"]["messages"], 20);
    assert_eq!(report["totals"]["rejected"], 27);
    assert_eq!(report["sources"][0]["source"], "backfill");
    assert_eq!(report["sources"][0]["run_status"], "ok");
    assert_eq!(report["sources"][1]["messages"], 0);
    assert_eq!(report["tables"]["print_status"], 13);
}

#[test]
fn config_errors_name_the_file_and_key() {
    let install = Install::new("retries = 3\n");
    let (code, _, stderr) = outcome(&install.run(&["status"]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "invalid configuration `{}`",
            install.config().display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("unknown field `retries`"), "{stderr}");

    let missing = Install::new("");
    std::fs::remove_file(missing.config()).expect("rm");
    let (code, _, stderr) = outcome(&missing.run(&["status"]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("not found; pass --config PATH or set BESKEDHENT_CONFIG"),
        "{stderr}"
    );
    // Without --config, where neither place has one, both places are named.
    let nowhere = tempfile::tempdir().expect("tempdir");
    let output = Command::new(BIN)
        .arg("status")
        .current_dir(nowhere.path())
        .env_remove("BESKEDHENT_CONFIG")
        .output()
        .expect("run");
    let (code, _, stderr) = outcome(&output);
    assert_eq!(code, 1, "{stderr}");
    if !Path::new(beskedhent::config::SYSTEM_CONFIG).exists() {
        assert!(
            stderr.contains(
                "configuration file `/etc/beskedhent/config.toml` not found (nor `config.toml` in the working directory)"
            ),
            "{stderr}"
        );
    } else {
        assert!(!stderr.contains("`config.toml` not found"), "{stderr}");
    }
}

#[test]
fn config_path_comes_from_the_environment() {
    let install = Install::new("");
    let output = Command::new(BIN)
        .args(["init"])
        .env("BESKEDHENT_CONFIG", install.config())
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(install.db_path().exists());
}

#[test]
fn unreadable_and_missing_paths_are_reported() {
    let install = Install::new("");
    let (code, stdout, stderr) = outcome(&install.run(&["import", "/nonexistent/envelopes"]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot read: No such file or directory")
            && stderr.contains("file=/nonexistent/envelopes"),
        "{stderr}"
    );
    assert!(
        stdout.contains("0 files: 0 new, 0 duplicates, 0 rejected, 1 unreadable"),
        "{stdout}"
    );

    // A dangling link is logged and counted; the other files still go in. Hidden files are skipped.
    let input = install.mkdir("in");
    std::os::unix::fs::symlink("/nonexistent/file.xml", input.join("dangling.xml")).expect("link");
    std::fs::write(input.join(".hidden.xml"), "not xml").expect("write");
    std::fs::write(
        input.join("ok.xml"),
        status_envelope(&test_uuid(1, 1), &test_uuid(2, 1), 0),
    )
    .expect("write");
    let (code, stdout, stderr) = outcome(&install.run(&["import", input.to_str().expect("utf-8")]));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("imported 1 file: 1 new, 0 duplicates, 0 rejected, 1 unreadable"),
        "{stdout}"
    );
    assert!(
        stderr.contains("dangling.xml") && stderr.contains("cannot read"),
        "{stderr}"
    );
    assert_eq!(
        value::<i64>(&install.db(), "SELECT count(*) FROM rejected"),
        0
    );
}

/// `kill -9` in the middle of an import: the database is intact, holds whole batches only with
/// a matching cursor, and the next import completes the set with every BeskedId exactly once.
#[test]
fn import_killed_mid_run_resumes_without_loss_or_duplicates() {
    const FILES: u64 = 10_000;
    let install = Install::new("");
    let input = install.path("in");
    write_envelopes(&input, 7, FILES);
    let mut child = install
        .command(["import", input.to_str().expect("utf-8")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait for the first committed batch, then kill without warning.
    wait_for_commits(&install, 1, &mut child);
    child.kill().expect("kill -9");
    child.wait().expect("reap");

    let db = install.db();
    assert_eq!(value::<String>(&db, "PRAGMA integrity_check"), "ok");
    let stored: i64 = value(&db, "SELECT count(*) FROM message");
    assert!(
        stored > 0 && (stored as u64) < FILES,
        "killed too late to test anything: {stored}"
    );
    assert_eq!(
        stored % beskedhent::pull::import::BATCH_SIZE as i64,
        0,
        "only whole batches are committed"
    );
    assert_eq!(value::<i64>(&db, "SELECT messages FROM cursor"), stored);
    assert_eq!(
        value::<i64>(&db, "SELECT count(*) FROM print_status"),
        stored
    );
    assert_eq!(
        value::<String>(&db, "SELECT run_status FROM cursor"),
        "running"
    );
    // The run that never ended says what it stored.
    assert_eq!(
        value::<i64>(&db, "SELECT messages FROM run WHERE status = 'running'"),
        stored
    );
    drop(db);

    let (code, stdout, stderr) = outcome(&install.run(&["import", input.to_str().expect("utf-8")]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "imported {FILES} files: {} new, {stored} duplicates, 0 rejected",
            FILES as i64 - stored
        )),
        "{stdout}"
    );
    let db = install.db();
    assert_eq!(
        value::<i64>(&db, "SELECT count(DISTINCT besked_id) FROM message"),
        FILES as i64
    );
    assert_eq!(
        value::<i64>(&db, "SELECT count(*) FROM message"),
        FILES as i64
    );
    assert_eq!(
        rows(&db, "SELECT messages, duplicates, run_status FROM cursor"),
        [format!("{FILES}|{stored}|ok")]
    );
}

/// The shipped `config.toml` works as shipped, and its commented pull template is valid once
/// uncommented, so the documentation cannot drift from what the parser accepts.
#[test]
fn shipped_config_is_valid_as_shipped_and_uncommented() {
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml"),
    )
    .expect("config.toml");
    let as_shipped =
        beskedhent::config::Config::parse(&shipped, std::path::Path::new("config.toml"))
            .expect("valid as shipped");
    assert_eq!(as_shipped.registrations.len(), 2);
    assert!(
        as_shipped.pull().is_err(),
        "pulling is not configured as shipped"
    );

    let uncommented: String = shipped
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with('[')
                    || rest.split_once(" = ").is_some_and(|(key, _)| {
                        key.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    }) =>
            {
                rest
            }
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let config = beskedhent::config::Config::parse(
        &uncommented,
        std::path::Path::new("/etc/beskedhent/config.toml"),
    )
    .expect("valid uncommented");
    let pull = config.pull().expect("pull sections");
    assert_eq!(pull.feeds.len(), 2);
    assert_eq!(pull.sts.cvr, "12345678");
    assert_eq!(config.schedule().expect("schedule").cron, "0 */5 * * * *");
    assert_eq!(config.sync.prefetch, 2000);
}

/// After the configuration changes, `reprocess` takes in what was refused for configuration
/// reasons and derives what was kept as kind `other`, without losing the refused bytes.
#[test]
fn reprocess_applies_a_changed_configuration() {
    let dp_only = "max_message_bytes = 4000\n[types.digitalpost_registration]\nbeskedtype = \"5b1e4a32-7d0c-4a58-9b0e-1c2f3a4b5c6d\"\nregistered = [\"0f0e7a1c-1111-4a2b-9c3d-4e5f6a7b8c9d\"]\nderegistered = [\"0f0e7a1c-2222-4a2b-9c3d-4e5f6a7b8c9d\"]\n";
    let install = Install::new(dp_only);
    let input = install.mkdir("in");
    for file in [
        "bad/registration-unknown-handling.xml",
        "good/10-nemsms-registered-company.xml",
    ] {
        let name = file.replace('/', "-");
        std::fs::copy(fixtures().join(file), input.join(name)).expect("copy");
    }
    let big = status_envelope(&test_uuid(3, 1), &test_uuid(4, 1), 0).replace(
        "<ns2:BeskedVersion>1.0</ns2:BeskedVersion>",
        &format!(
            "<ns2:BeskedVersion>1.0</ns2:BeskedVersion><!--{}-->",
            "x".repeat(5000)
        ),
    );
    std::fs::write(input.join("big.xml"), &big).expect("write");
    let (code, stdout, _) = outcome(&install.run(&["import", input.to_str().expect("utf-8")]));
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.contains("1 new, 0 duplicates, 2 rejected"),
        "{stdout}"
    );
    assert_eq!(
        value::<String>(&install.db(), "SELECT kind FROM message"),
        "other"
    );

    // The municipality learns the missing identifiers and raises the size limit.
    let changed = format!(
        "database = \"replica.db\"\nmax_message_bytes = 100000\n{}",
        TYPES.replace(
            "registered = [\"0f0e7a1c-1111-4a2b-9c3d-4e5f6a7b8c9d\"]\nderegistered = [\"0f0e7a1c-2222-4a2b-9c3d-4e5f6a7b8c9d\"]\n\n[types.nemsms",
            "registered = [\"0f0e7a1c-1111-4a2b-9c3d-4e5f6a7b8c9d\", \"0f0e7a1c-9999-4a2b-9c3d-4e5f6a7b8c9d\"]\nderegistered = [\"0f0e7a1c-2222-4a2b-9c3d-4e5f6a7b8c9d\"]\n\n[types.nemsms"
        )
    );
    std::fs::write(install.config(), changed).expect("config");
    let (code, stdout, stderr) = outcome(&install.run(&["reprocess"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        "reprocessed: 2 refused messages taken in, 0 already stored, 0 still refused; 1 messages derived anew, 0 not derivable (rows kept)"
    );
    let db = install.db();
    assert_eq!(
        rows(
            &db,
            "SELECT party, channel, registered FROM registration_current ORDER BY party"
        ),
        ["0303903456|digitalpost|1", "12345678|nemsms|1"]
    );
    assert_eq!(
        value::<i64>(
            &db,
            "SELECT count(*) FROM print_status WHERE message_uuid = '00000004-0000-4000-8000-000000000001'"
        ),
        1
    );
    // The refused bytes stay, pointing at the message they became.
    assert_eq!(
        rows(&db, "SELECT count(*), count(resolved_seq) FROM rejected"),
        ["2|2"]
    );
    let stored: Vec<u8> = value(
        &db,
        "SELECT envelope FROM message WHERE besked_id = '00000003-0000-4000-8000-000000000001'",
    );
    assert_eq!(stored, big.as_bytes());
    drop(db);

    let (code, stdout, _) = outcome(&install.run(&["reprocess"]));
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("reprocessed: 0 refused messages taken in"),
        "{stdout}"
    );
}

#[test]
fn letters_lists_the_failed_letters_as_csv_newest_first() {
    let (install, _) = good_fixtures_imported();
    let (code, stdout, stderr) = outcome(&install.run(&["letters", "--failed", "--csv"]));
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("message_uuid,event,outcome,kanal,occurred_at"),
        "{stdout}"
    );
    // Three failed letters, newest first; the last one's error text holds a quote and a line
    // break, so it is quoted.
    assert!(
        lines[1].starts_with("c0000000-0000-4000-8000-00000000000e,Fejlet,failed,"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("05b6e6e3-07d4-4edc-9143-1193e6c3f339,Fejlet,failed,"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"javax.xml.stream.XMLStreamException"),
        "{stdout}"
    );
}

#[test]
fn letters_are_chosen_by_time_and_channel_and_until_takes_in_its_whole_day() {
    let (install, _) = good_fixtures_imported();
    let (code, stdout, _) = outcome(&install.run(&[
        "letters",
        "--json",
        "--since",
        "2026-03-01",
        "--until",
        "2026-03-02",
        "--kanal",
        "Digital Post",
    ]));
    assert_eq!(code, 0);
    let letters: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let ids: Vec<&str> = letters
        .as_array()
        .expect("array")
        .iter()
        .map(|letter| letter["message_uuid"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        [
            "c0000000-0000-4000-8000-00000000000a",
            "05b6e6e3-07d4-4edc-9143-1193e6c3f339",
            "cd613e30-d8f1-4adf-91b7-584a2265b1f5"
        ]
    );
}

#[test]
fn show_tells_a_letters_history_and_a_messages_decoded_payload() {
    let (install, _) = good_fixtures_imported();
    // Final, then a non-final status that arrived later: the letter stays failed, with both
    // statuses in its history.
    let (code, stdout, _) =
        outcome(&install.run(&["show", "c0000000-0000-4000-8000-00000000000e"]));
    assert_eq!(code, 0);
    assert!(stdout.contains("outcome        failed"), "{stdout}");
    assert!(stdout.contains("statuses, oldest first (2)"), "{stdout}");
    assert!(stdout.contains("Modtaget Digital Post"), "{stdout}");
    // By besked_id (in upper case too): the message, its print status and the decoded payload.
    let (code, stdout, _) =
        outcome(&install.run(&["show", "A0000000-0000-4000-8000-000000000042"]));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("kind             post_status"), "{stdout}");
    assert!(
        stdout.contains("payload (decoded from Base64)\n<"),
        "{stdout}"
    );
}

#[test]
fn show_and_letters_say_plainly_what_they_cannot_answer() {
    let (install, _) = good_fixtures_imported();
    let (code, _, stderr) = outcome(&install.run(&["show", "0101701234"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("`010170****`"), "{stderr}");
    let (code, _, stderr) = outcome(&install.run(&["letters", "--since", "last tuesday"]));
    assert_eq!(code, 2, "a usage mistake");
    assert!(stderr.contains("is not a date"), "{stderr}");
}

/// A replica made from the good fixtures, with a copy of it kept beside it under the name a
/// migration's backup has.
fn replica_with_a_copy_beside_it() -> Install {
    let install = Install::new("");
    install.import(&fixtures().join("good"));
    std::fs::copy(install.db_path(), install.path("replica.db.schema4.bak")).expect("backup");
    install
}

#[test]
fn the_replicas_own_files_are_never_imported() {
    let install = replica_with_a_copy_beside_it();
    // Importing the directory that holds the replica, and the replica itself by name.
    let dir = install.dir.path().to_str().expect("utf-8").to_owned();
    let db = install.db_path();
    let output = install.run_with_env(
        &["import", &dir, db.to_str().expect("utf-8")],
        &[("BESKEDHENT_LOG", "info")],
    );
    let (_, stdout, stderr) = outcome(&output);
    for name in [
        "replica.db",
        "replica.db-wal",
        "replica.db-shm",
        "replica.db.schema4.bak",
    ] {
        assert!(
            stderr.contains(&format!(
                "left out: the replica's own file file={dir}/{name}"
            )),
            "{name}: {stderr}"
        );
    }
    assert_eq!(
        value::<i64>(
            &install.db(),
            "SELECT count(*) FROM rejected WHERE origin LIKE '%replica.db%'"
        ),
        0,
        "{stdout}"
    );
}

#[test]
fn the_replicas_files_under_other_names_are_never_imported() {
    let install = replica_with_a_copy_beside_it();
    // A hard link (to a pre-upgrade copy: a second name of the replica itself is refused
    // before anything is read, see `one_import_of_a_source_at_a_time`) and symbolic links
    // elsewhere.
    let links = install.mkdir("links");
    std::fs::hard_link(
        install.path("replica.db.schema4.bak"),
        links.join("hard.db"),
    )
    .expect("hard link");
    std::os::unix::fs::symlink(install.db_path(), links.join("soft.db")).expect("symlink");
    std::os::unix::fs::symlink(install.path("replica.db-wal"), links.join("wal")).expect("link");
    let (code, stdout, stderr) = outcome(&install.import(&links));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("imported 0 files: 0 new, 0 duplicates, 0 rejected"),
        "{stdout}"
    );
    assert_eq!(
        stderr.matches("left out: the replica's own file").count(),
        3,
        "{stderr}"
    );
}

#[test]
fn no_sqlite_database_is_ever_imported() {
    // A backup kept beside the replica, or another program's database, may hold a copy of all
    // its personal data.
    let install = replica_with_a_copy_beside_it();
    let backups = install.mkdir("backups");
    let backup = backups.join("backup-2026-11-28.db");
    let (code, _, stderr) = outcome(&install.run(&["backup", backup.to_str().expect("utf-8")]));
    assert_eq!(code, 0, "{stderr}");
    // One in PERSIST journal mode keeps its journal after each transaction, header zeroed:
    // only its name and the database beside it say what it is.
    rusqlite::Connection::open(backups.join("small.db"))
        .and_then(|db| {
            db.execute_batch(
                "PRAGMA journal_mode = PERSIST; CREATE TABLE t (x); INSERT INTO t VALUES ('0101701234');",
            )
        })
        .expect("small database");
    let journal = std::fs::read(backups.join("small.db-journal")).expect("persistent journal");
    assert!(!journal.is_empty() && journal[..4] == [0; 4]);
    let (code, stdout, stderr) = outcome(&install.import(&backups));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("imported 0 files: 0 new, 0 duplicates, 0 rejected"),
        "{stdout}"
    );
    assert_eq!(
        stderr.matches("left out: an SQLite database").count(),
        3,
        "{stderr}"
    );
}

#[test]
fn one_import_of_a_source_at_a_time() {
    let install = Install::new("");
    let good = fixtures().join("good");
    let (code, _, stderr) = outcome(&install.run(&["import", good.to_str().expect("utf-8")]));
    assert_eq!(code, 0, "{stderr}");
    // Another run of the source holds its lock: this one leaves the replica alone (exit 5),
    // so neither takes the other for killed nor counts the other's messages.
    let lock =
        beskedhent::pull::lock::FeedLock::acquire(&install.db_path(), "import").expect("lock");
    let runs = value::<i64>(&install.db(), "SELECT count(*) FROM run");
    let (code, _, stderr) = outcome(&install.run(&["import", good.to_str().expect("utf-8")]));
    assert_eq!(code, 5, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "source `import` is being written by another beskedhent run (pid {}",
            std::process::id()
        )),
        "{stderr}"
    );
    // The same replica named through a symbolic link (in another directory) is the same
    // lock.
    let elsewhere = Install::new("");
    std::os::unix::fs::symlink(install.db_path(), elsewhere.path("link.db")).expect("symlink");
    std::fs::write(elsewhere.config(), "database = \"link.db\"\n").expect("config");
    let (code, _, stderr) = outcome(&elsewhere.run(&["import", good.to_str().expect("utf-8")]));
    assert_eq!(code, 5, "{stderr}");
    assert!(!elsewhere.path("link.db-import.lock").exists());
    // A hard link is another name SQLite would keep another WAL for: refused by every run.
    std::fs::hard_link(install.db_path(), elsewhere.path("hard.db")).expect("hard link");
    std::fs::write(elsewhere.config(), "database = \"hard.db\"\n").expect("config");
    drop(lock);
    for args in [&["import", good.to_str().expect("utf-8")][..], &["status"]] {
        let (code, _, stderr) = outcome(&elsewhere.run(args));
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stderr.contains("hard links"), "{stderr}");
    }
    assert!(!elsewhere.path("hard.db-wal").exists());
    let (code, _, stderr) = outcome(&install.run(&["status"]));
    assert_eq!(code, 1, "{stderr}");
    std::fs::remove_file(elsewhere.path("hard.db")).expect("unlink");
    let lock =
        beskedhent::pull::lock::FeedLock::acquire(&install.db_path(), "import").expect("lock");
    assert_eq!(
        value::<i64>(&install.db(), "SELECT count(*) FROM run"),
        runs
    );
    // Another source is another lock.
    let (code, _, stderr) = outcome(&install.run(&[
        "import",
        "--source",
        "archive",
        good.to_str().expect("utf-8"),
    ]));
    assert_eq!(code, 0, "{stderr}");
    drop(lock);
    let (code, _, stderr) = outcome(&install.run(&["import", good.to_str().expect("utf-8")]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        rows(
            &install.db(),
            "SELECT source || ' ' || status FROM run ORDER BY id"
        ),
        ["import ok", "archive ok", "import ok"]
    );
}

#[test]
fn generated_envelopes_decode_as_delivered_statuses() {
    let mut ids = crate::sample::UuidGenerator::new(7);
    let (besked_id, letter) = (ids.next_uuid(), ids.next_uuid());
    assert_ne!(besked_id, letter);
    assert_eq!(besked_id.len(), 36);
    let envelope = crate::sample::status_envelope(&besked_id, &letter, 5);
    assert!((3000..3600).contains(&envelope.len()), "{}", envelope.len());
    let config =
        beskedhent::config::Config::parse("database = \"x\"", std::path::Path::new("c.toml"))
            .expect("config");
    let message = config
        .decoder()
        .decode(envelope.as_bytes())
        .expect("decodes");
    assert_eq!(message.besked_id, besked_id);
    let beskedhent::decode::message::Detail::PostStatus(status) = message.detail else {
        panic!("not a status");
    };
    assert_eq!(status.message_uuid.as_deref(), Some(letter.as_str()));
    assert_eq!(
        status.occurred_at.as_deref(),
        Some("2026-03-01T10:05:00.000Z")
    );
    // Padded to a size, it is that size and still the same message.
    let large = crate::sample::padded(envelope.clone(), 65_000);
    assert_eq!(large.len(), 65_000);
    let same = config.decoder().decode(&large).expect("decodes padded");
    assert_eq!(same.besked_id, besked_id);
    assert_eq!(
        crate::sample::padded(envelope.clone(), 10),
        envelope.into_bytes()
    );
}

#[test]
fn the_write_path_keeps_no_statement_journal_in_a_file() {
    // A statement that writes several rows, and may fail half-way, keeps a copy of every page
    // it touches; SQLite spills it to an unnamed temporary file in SQLITE_TMPDIR, kept open to
    // the end of the transaction, and then writes every such statement there. The write path
    // writes one row per statement, so importing statuses about letters in random order (each
    // a new letter, the change feed's row of each replaced) opens no file there.
    let install = Install::new("");
    let input = install.path("in");
    std::fs::create_dir(&input).expect("mkdir");
    let mut ids = crate::sample::UuidGenerator::new(0x7e57);
    for n in 0..3000u32 {
        let envelope = status_envelope(&ids.next_uuid(), &ids.next_uuid(), n % 60);
        std::fs::write(input.join(format!("{n:05}.xml")), envelope).expect("write");
    }
    let temporary = install.path("sqlite-tmp");
    std::fs::create_dir(&temporary).expect("mkdir");
    let mut child = install
        .command(["import", input.to_str().expect("utf-8")])
        .env("BESKEDHENT_LOG", "warn")
        .env("SQLITE_TMPDIR", &temporary)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let descriptors = format!("/proc/{}/fd", child.id());
    let mut opened = None;
    while child.try_wait().expect("wait").is_none() {
        for entry in std::fs::read_dir(&descriptors)
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(target) = std::fs::read_link(entry.path())
                && target.starts_with(&temporary)
            {
                opened = Some(target);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let (code, stdout, stderr) = outcome(&child.wait_with_output().expect("output"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("imported 3000 files: 3000 new"),
        "{stdout}"
    );
    assert_eq!(
        value::<i64>(&install.db(), "SELECT count(*) FROM change"),
        6000,
        "a status's change and its letter's"
    );
    assert_eq!(opened, None, "a temporary file was open during the import");
}
