//! Promises under hostile input and operator mistakes: things that are not files, files too
//! large to keep, memory that must stay flat (whatever the input, the depth of a tree, or the
//! largest envelope allowed), reused ids and ids that hold CPR numbers, CPR numbers and forged
//! lines in logs, a mistyped database path, `status` that only reads, a wrong registration
//! mapping repaired by `reprocess`, and version 1 replicas migrated without losing anything.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{
    Install, TYPES, fixtures, mode, outcome, rows, run_watched, status_envelope, test_uuid, value,
    write_envelopes,
};

#[test]
fn fifos_and_devices_among_the_inputs_are_skipped_without_blocking() {
    let install = Install::new("");
    let input = install.path("in");
    write_envelopes(&input, 0x61, 3);
    let fifo = input.join("b-fifo.xml");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success(),
        "mkfifo"
    );
    symlink("/dev/zero", input.join("c-zero.xml")).expect("symlink");
    symlink("/dev/null", input.join("d-null.xml")).expect("symlink");
    // A link to a directory is not followed, but said so and counted.
    std::fs::create_dir(install.path("elsewhere")).expect("mkdir");
    symlink(install.path("elsewhere"), input.join("e-dir-link.xml")).expect("symlink");

    let input_arg = input.to_str().expect("utf-8");
    let (output, _) = run_watched(&install, &["import", input_arg], Duration::from_secs(60));
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("3 new, 0 duplicates, 0 rejected, 4 skipped (not regular files)"),
        "{stdout}"
    );
    assert!(stderr.contains("skipped: a FIFO"), "{stderr}");
    assert!(stderr.contains("skipped: a character device"), "{stderr}");
    assert!(
        stderr.contains("skipped: a link to a directory"),
        "{stderr}"
    );
    // A FIFO named directly is skipped too, and the run ends.
    let (output, _) = run_watched(
        &install,
        &["import", fifo.to_str().expect("utf-8")],
        Duration::from_secs(60),
    );
    assert_eq!(outcome(&output).0, 1);
    // A path that does not exist is named, and the rest is imported.
    write_envelopes(&install.path("more"), 0x67, 2);
    let (output, _) = run_watched(
        &install,
        &[
            "import",
            "/nonexistent/b.xml",
            install.path("more").to_str().expect("utf-8"),
        ],
        Duration::from_secs(60),
    );
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("2 new, 0 duplicates, 0 rejected, 1 unreadable"),
        "{stdout}"
    );
    assert!(stderr.contains("/nonexistent/b.xml"), "{stderr}");
    let db = install.db();
    assert_eq!(value::<i64>(&db, "SELECT count(*) FROM message"), 5);
    // The run did not do all it was asked: it is recorded as failed, with what went wrong.
    assert_eq!(
        rows(&db, "SELECT run_status || ': ' || run_error FROM cursor"),
        ["failed: 1 unreadable and 0 skipped paths (see the log)"]
    );
    assert_eq!(
        rows(
            &db,
            "SELECT status || ' ' || messages FROM run ORDER BY id DESC LIMIT 1"
        ),
        ["failed 2"]
    );
}

#[test]
fn a_file_too_large_to_keep_is_refused_alone_and_memory_stays_flat() {
    let install = Install::new("max_message_bytes = 1048576\n");
    let input = install.path("in");
    write_envelopes(&input, 0x62, 9);
    // 300 MB (sparse): over the limit, and too large to keep whole.
    let huge = std::fs::File::create(input.join("huge.xml")).expect("create");
    huge.set_len(300_000_000).expect("size");
    drop(huge);
    // Sixty files of 900 KiB that decode (padded with a comment) and sixty of 2 MiB refused.
    for n in 0..60u64 {
        let envelope = status_envelope(&test_uuid(0x63, n), &test_uuid(0x64, n), 0).replace(
            "<ns2:BeskedVersion>1.0</ns2:BeskedVersion>",
            &format!(
                "<ns2:BeskedVersion>1.0</ns2:BeskedVersion><!--{}-->",
                "x".repeat(900 * 1024)
            ),
        );
        std::fs::write(input.join(format!("padded-{n:03}.xml")), envelope).expect("write");
        std::fs::write(
            input.join(format!("refused-{n:03}.xml")),
            vec![b'<'; 2 * 1024 * 1024 + n as usize],
        )
        .expect("write");
    }

    let input_arg = input.to_str().expect("utf-8");
    let (output, peak_kib) =
        run_watched(&install, &["import", input_arg], Duration::from_secs(300));
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stdout.contains("69 new, 0 duplicates, 61 rejected"),
        "{stdout}"
    );
    let limit_kib = (64 + 2) * 1024;
    assert!(
        peak_kib < limit_kib,
        "peak {peak_kib} KiB, over 64 MiB + 2 x max_message_bytes"
    );

    let db = install.db();
    assert_eq!(
        rows(
            &db,
            "SELECT length(raw), raw_size, raw_complete, length(raw_sha256) FROM rejected WHERE origin LIKE '%huge.xml'"
        ),
        ["1048576|300000000|0|64"]
    );
    assert_eq!(
        value::<i64>(
            &db,
            "SELECT count(*) FROM rejected WHERE origin LIKE '%refused-%' AND raw_complete = 1 AND length(raw) = raw_size AND raw_size >= 2097152"
        ),
        60
    );
    // The refusal says why and what to do.
    assert!(
        value::<String>(
            &db,
            "SELECT reason FROM rejected WHERE origin LIKE '%huge.xml'"
        )
        .contains("larger than max_message_bytes (1048576)"),
    );

    // A later run is not stuck on the huge file: nothing new, all counted again as duplicates.
    let (output, _) = run_watched(&install, &["import", input_arg], Duration::from_secs(300));
    let (_, stdout, _) = outcome(&output);
    assert!(
        stdout.contains("0 new, 130 duplicates, 0 rejected"),
        "{stdout}"
    );

    // reprocess reads rows one at a time: memory stays flat here too.
    let (output, peak_kib) = run_watched(&install, &["reprocess"], Duration::from_secs(300));
    assert_eq!(outcome(&output).0, 3, "{}", outcome(&output).2);
    assert!(peak_kib < limit_kib, "reprocess peak {peak_kib} KiB");
}

#[test]
fn a_reused_besked_id_with_other_content_is_kept_and_case_does_not_make_a_new_message() {
    let install = Install::new("");
    let input = install.mkdir("in");
    let id = "8a1b2c3d-0000-4000-8000-00000000abcd";
    let first = status_envelope(id, &test_uuid(0x65, 1), 0);
    std::fs::write(input.join("a.xml"), &first).expect("write");
    // The same id, other content.
    std::fs::write(
        input.join("b.xml"),
        status_envelope(id, &test_uuid(0x65, 2), 5),
    )
    .expect("write");
    // The same message with the id in upper case.
    std::fs::write(input.join("c.xml"), first.replace(id, &id.to_uppercase())).expect("write");
    // The same bytes again, with a trailing newline: a plain duplicate.
    std::fs::write(input.join("d.xml"), format!("{first}\n")).expect("write");

    let (code, stdout, stderr) = outcome(&install.run(&["import", input.to_str().expect("utf-8")]));
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stdout.contains("1 new, 1 duplicates, 2 rejected"),
        "{stdout}"
    );
    let db = install.db();
    assert_eq!(rows(&db, "SELECT besked_id FROM message"), [id]);
    let reasons = rows(&db, "SELECT reason FROM rejected ORDER BY id");
    assert_eq!(reasons.len(), 2);
    for reason in &reasons {
        assert!(
            reason.contains(&format!(
                "BeskedId {id} is already stored (message seq 1) with different content"
            )),
            "{reason}"
        );
    }
    // Their bytes are kept as received.
    let kept: Vec<u8> = value(&db, "SELECT raw FROM rejected WHERE origin LIKE '%c.xml'");
    assert_eq!(kept, first.replace(id, &id.to_uppercase()).into_bytes());
}

#[test]
fn cpr_numbers_and_control_characters_never_reach_the_log_or_status() {
    let install = Install::new("");
    let input = install.mkdir("in");
    // A refused file whose name and BeskedId are CPR numbers in several shapes, and a file whose
    // name holds a newline that would start a forged log line.
    let refused = "<Haendelsesbesked xmlns=\"urn:oio:besked:kuvert:1.0\" xmlns:o=\"urn:oio:sagdok:3.0.0\"><BeskedId><o:UUIDIdentifikator>251248-9996</o:UUIDIdentifikator></BeskedId><x>&xxe;</x></Haendelsesbesked>";
    std::fs::write(input.join("2512489996.xml"), refused).expect("write");
    std::fs::write(input.join("a\nERROR forged 25.12.48-9996.xml"), "<broken").expect("write");
    let (code, stdout, stderr) = outcome(&install.run_with_env(
        &["import", input.to_str().expect("utf-8")],
        &[("BESKEDHENT_LOG", "info")],
    ));
    assert_eq!(code, 3, "{stdout}{stderr}");
    for shape in ["2512489996", "251248-9996", "25.12.48-9996"] {
        assert!(!stderr.contains(shape), "{shape} in the log:\n{stderr}");
    }
    assert!(stderr.contains("251248****"), "{stderr}");
    assert!(
        stderr.lines().all(|line| !line.starts_with("ERROR forged")),
        "{stderr}"
    );
    assert!(stderr.contains("a\\nERROR forged"), "{stderr}");

    for args in [&["status"][..], &["status", "--json"][..]] {
        let (code, stdout, _) = outcome(&install.run(args));
        assert_eq!(code, 0);
        assert!(!stdout.contains("251248-9996"), "{stdout}");
    }
    // The reason in the table keeps no CPR either; the raw bytes stay as received.
    let db = install.db();
    assert_eq!(
        value::<i64>(
            &db,
            "SELECT count(*) FROM rejected WHERE reason LIKE '%9996%'"
        ),
        0
    );
    assert_eq!(
        value::<i64>(
            &db,
            "SELECT count(*) FROM rejected WHERE CAST(raw AS TEXT) LIKE '%251248-9996%'"
        ),
        1
    );
}

#[test]
fn reasons_and_log_lines_stay_short_whatever_the_input() {
    let install = Install::new("max_message_bytes = 1048576\n");
    let input = install.mkdir("in");
    // A 600 KiB element name: the reason quotes only its start.
    let name = "n".repeat(600 * 1024);
    std::fs::write(input.join("a-long-name.xml"), format!("<{name}>\n</x>")).expect("write");
    // A 100 KiB BeskedId, reused with other content: the reason naming it is cut, marked.
    let long_id = format!("urn:x:{}", "7".repeat(100 * 1024));
    for (file, minute) in [("b-first.xml", 0), ("c-second.xml", 1)] {
        std::fs::write(
            input.join(file),
            status_envelope(&long_id, &test_uuid(0x66, 1), minute),
        )
        .expect("write");
    }
    let (code, _, stderr) = outcome(&install.run(&["import", input.to_str().expect("utf-8")]));
    assert_eq!(code, 3, "{stderr}");
    let reasons = rows(&install.db(), "SELECT reason FROM rejected ORDER BY id");
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    for reason in &reasons {
        assert!(reason.len() <= 1024 + 64, "{} bytes", reason.len());
    }
    assert!(
        reasons[0].contains("does not match start tag `<nnnn"),
        "{}",
        reasons[0]
    );
    assert!(
        reasons[1].contains("already stored") && reasons[1].contains("[cut "),
        "{}",
        reasons[1]
    );
    // Every log line is capped too.
    for line in stderr.lines() {
        assert!(
            line.len() <= 8 * 1024 + 64,
            "a log line of {} bytes",
            line.len()
        );
    }
}

#[test]
fn status_never_creates_a_database() {
    let install = Install::new("");
    let (code, _, stderr) = outcome(&install.run(&["status"]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("does not exist; check `database`"),
        "{stderr}"
    );
    assert!(!install.db_path().exists());
}

#[test]
fn reprocess_repairs_a_swapped_registration_mapping() {
    let swapped = TYPES
        .replace("\nregistered = [", "\nTMP = [")
        .replace("\nderegistered = [", "\nregistered = [")
        .replace("\nTMP = [", "\nderegistered = [");
    let install = Install::new(&swapped);
    let (code, stdout, stderr) =
        outcome(&install.run(&["import", fixtures().join("good").to_str().expect("utf-8")]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let all = "SELECT seq, registered FROM registration ORDER BY seq";
    let current =
        "SELECT party, channel, registered FROM registration_current ORDER BY party, channel";
    let (wrong_all, wrong) = (rows(&install.db(), all), rows(&install.db(), current));

    std::fs::write(
        install.config(),
        format!("database = \"replica.db\"\n{TYPES}"),
    )
    .expect("fix");
    let (code, stdout, stderr) = outcome(&install.run(&["reprocess"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (fixed_all, fixed) = (rows(&install.db(), all), rows(&install.db(), current));
    // The registrations read from ObjektHandling flip; those with an explicit `Tilmeldt` in
    // their payload were right before and stay.
    let flip = |row: &str| {
        let (head, state) = row.rsplit_once('|').expect("row");
        format!("{head}|{}", if state == "1" { "0" } else { "1" })
    };
    let flipped = wrong_all
        .iter()
        .zip(&fixed_all)
        .filter(|(before, after)| before != after)
        .inspect(|(before, after)| assert_eq!(&flip(before), *after))
        .count();
    assert_eq!(flipped, 3, "{wrong_all:?} -> {fixed_all:?}");
    assert!(stdout.contains("3 messages derived anew"), "{stdout}");
    assert_ne!(fixed, wrong);
    // Idempotent.
    let (_, stdout, _) = outcome(&install.run(&["reprocess"]));
    assert!(stdout.contains("0 messages derived anew"), "{stdout}");
    assert_eq!(rows(&install.db(), current), fixed);
}

#[test]
fn a_v1_replica_is_migrated_with_upper_case_ids_folded() {
    let install = Install::new("");
    {
        let db = rusqlite::Connection::open(install.db_path()).expect("open");
        db.execute_batch(include_str!("../../src/replica/schema_v1.sql"))
            .expect("v1");
        db.execute_batch(
            "PRAGMA user_version = 1;
             INSERT INTO message (besked_id, kind, source, received_at, envelope)
                 VALUES ('8A1B2C3D-0000-4000-8000-00000000ABCD', 'other', 'import', '2026-01-01T00:00:00.000Z', x'3c612f3e');
             INSERT INTO rejected (source, received_at, reason, raw, raw_sha256)
                 VALUES ('import', '2026-01-01T00:00:00.000Z', 'x', x'0102', 'ab');",
        )
        .expect("rows");
    }
    let (code, stdout, stderr) = outcome(&install.run(&["init"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    // The replica as it was is kept beside it, private, before the migration.
    let backup = install.dir.path().join("replica.db.schema1.bak");
    assert!(stderr.contains("replica.db.schema1.bak"), "{stderr}");
    assert_eq!(mode(&backup), 0o600);
    let kept = rusqlite::Connection::open(&backup).expect("open backup");
    assert_eq!(value::<i64>(&kept, "PRAGMA user_version"), 1);
    assert_eq!(value::<i64>(&kept, "SELECT count(*) FROM message"), 1);
    let db = install.db();
    assert_eq!(
        value::<i64>(&db, "PRAGMA user_version"),
        beskedhent::replica::SCHEMA_VERSION as i64
    );
    assert_eq!(
        rows(&db, "SELECT besked_id FROM message"),
        ["8a1b2c3d-0000-4000-8000-00000000abcd"]
    );
    assert_eq!(
        rows(&db, "SELECT raw_size, raw_complete FROM rejected"),
        ["2|1"]
    );
}

#[test]
fn status_only_reads() {
    let install = Install::new("");
    // An empty file where the database should be: named, and left as it is.
    std::fs::write(install.db_path(), b"").expect("touch");
    let (code, _, stderr) = outcome(&install.run(&["status"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("is not a beskedhent database"), "{stderr}");
    assert_eq!(std::fs::metadata(install.db_path()).expect("db").len(), 0);

    // A replica: status reads it and leaves the file as it was.
    std::fs::remove_file(install.db_path()).expect("rm");
    outcome(&install.run(&["import", fixtures().join("good").to_str().expect("utf-8")]));
    install
        .db()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("checkpoint");
    let before = std::fs::read(install.db_path()).expect("read");
    let (code, stdout, stderr) = outcome(&install.run(&["status"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("20 messages"), "{stdout}");
    assert_eq!(std::fs::read(install.db_path()).expect("read"), before);
}

#[test]
fn a_cpr_number_in_the_database_path_is_masked_in_init_and_status() {
    let install = Install::new("");
    std::fs::create_dir(install.path("2512489996")).expect("mkdir");
    std::fs::write(install.config(), "database = \"2512489996/r.db\"\n").expect("config");
    for args in [&["init"][..], &["status"][..], &["status", "--json"][..]] {
        let (code, stdout, stderr) = outcome(&install.run(args));
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(stdout.contains("251248****"), "{args:?}: {stdout}");
        assert!(!stdout.contains("2512489996"), "{args:?}: {stdout}");
    }
}

/// The old rule for a letter's latest status (a final one first, then the newest, then the
/// last to arrive), as a query on `print_status`.
const OLD_RULE: &str = "SELECT p.message_uuid, p.seq, p.event FROM print_status AS p
    WHERE p.message_uuid IS NOT NULL AND p.seq = (
        SELECT q.seq FROM print_status AS q WHERE q.message_uuid = p.message_uuid
        ORDER BY q.final DESC, q.occurred_at DESC, q.seq DESC LIMIT 1)
    ORDER BY p.message_uuid";

/// A replica of schema version 1 with statuses of four letters (and one of none): its latest
/// statuses under [`OLD_RULE`], which are checked.
fn v1_replica_with_statuses(install: &Install) -> Vec<String> {
    let db = rusqlite::Connection::open(install.db_path()).expect("open");
    db.execute_batch(include_str!("../../src/replica/schema_v1.sql"))
        .expect("v1");
    // a: out of order (the newer status arrived first); b: final, then a later non-final
    // one; c: a status without a time; d: two finals; (none): no message_uuid.
    let statuses = [
        ("a", 0, None, "Afsendt", Some("2026-03-02T10:00:00.000Z")),
        ("a", 0, None, "Klar", Some("2026-03-01T10:00:00.000Z")),
        (
            "b",
            1,
            Some("failed"),
            "Fejlet",
            Some("2026-03-01T10:00:00.000Z"),
        ),
        ("b", 0, None, "Afsendt", Some("2026-03-09T10:00:00.000Z")),
        ("c", 0, None, "Klar", None),
        ("c", 0, None, "Afsendt", Some("2026-03-01T08:00:00.000Z")),
        (
            "d",
            1,
            Some("delivered"),
            "Afleveret Digital Post",
            Some("2026-03-04T10:00:00.000Z"),
        ),
        (
            "d",
            1,
            Some("recalled"),
            "Tilbagekaldt",
            Some("2026-03-03T10:00:00.000Z"),
        ),
        ("", 0, None, "Klar", Some("2026-03-01T10:00:00.000Z")),
    ];
    for (n, (letter, fin, outcome, event, at)) in statuses.iter().enumerate() {
        let id = format!("00000000-0000-4000-8000-{n:012}");
        db.execute(
            "INSERT INTO message (besked_id, kind, source, received_at, envelope)
             VALUES (?1, 'post_status', 'import', '2026-03-10T00:00:00.000Z', x'3c612f3e')",
            [&id],
        )
        .expect("message");
        let letter = (!letter.is_empty()).then(|| format!("letter-{letter}"));
        db.execute(
            "INSERT INTO print_status (seq, besked_id, message_uuid, final, outcome, event,
                 occurred_at, kanal)
             VALUES (last_insert_rowid(), ?1, ?2, ?3, ?4, ?5, ?6, 'Digital Post')",
            rusqlite::params![id, letter, fin, outcome, event, at],
        )
        .expect("status");
    }
    db.execute_batch("PRAGMA user_version = 1").expect("v1");
    let latest = rows(&db, OLD_RULE);
    assert_eq!(
        latest,
        [
            "letter-a|1|Afsendt",
            "letter-b|3|Fejlet",
            "letter-c|6|Afsendt",
            "letter-d|7|Afleveret Digital Post"
        ]
    );
    latest
}

#[test]
fn a_v1_replica_is_not_migrated_by_a_command_that_only_reads_which_says_how() {
    let install = Install::new("");
    v1_replica_with_statuses(&install);
    let (code, _, stderr) = outcome(&install.run(&["letters"]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("run `beskedhent init` to migrate it"),
        "{stderr}"
    );
}

#[test]
fn a_v1_replica_gets_its_letters_under_the_old_rule() {
    let install = Install::new("");
    let before = v1_replica_with_statuses(&install);
    let (code, stdout, stderr) = outcome(&install.run(&["init"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let db = install.db();
    assert_eq!(
        value::<i64>(&db, "PRAGMA user_version"),
        beskedhent::replica::SCHEMA_VERSION as i64
    );
    assert_eq!(
        rows(
            &db,
            "SELECT message_uuid, seq, event FROM print_status_latest ORDER BY message_uuid"
        ),
        before
    );
    assert_eq!(
        rows(
            &db,
            "SELECT message_uuid, final, outcome, first_seen_at, final_at, statuses FROM letter
             ORDER BY message_uuid"
        ),
        [
            "letter-a|0|-|2026-03-01T10:00:00.000Z|-|2",
            "letter-b|1|failed|2026-03-01T10:00:00.000Z|2026-03-01T10:00:00.000Z|2",
            "letter-c|0|-|2026-03-01T08:00:00.000Z|-|2",
            "letter-d|1|delivered|2026-03-03T10:00:00.000Z|2026-03-04T10:00:00.000Z|2"
        ]
    );
    // The view keeps the columns of print_status, in their order.
    let columns = |table: &str| {
        rows(
            &db,
            &format!("SELECT name FROM pragma_table_info('{table}')"),
        )
    };
    assert_eq!(columns("print_status_latest"), columns("print_status"));
    // Every status with a letter names it by its number; the one without has none.
    assert_eq!(
        rows(
            &db,
            "SELECT p.message_uuid, p.letter_id = l.id FROM print_status AS p
             LEFT JOIN letter AS l ON l.message_uuid = p.message_uuid ORDER BY p.seq"
        ),
        [
            "letter-a|1",
            "letter-a|1",
            "letter-b|1",
            "letter-b|1",
            "letter-c|1",
            "letter-c|1",
            "letter-d|1",
            "letter-d|1",
            "-|-"
        ]
    );
    assert_eq!(
        value::<i64>(&db, "SELECT count(DISTINCT letter_id) FROM print_status"),
        4
    );
    // The change feed starts with everything there was: each status, then its letter.
    assert_eq!(
        rows(
            &db,
            "SELECT kind, count(*) FROM change GROUP BY kind ORDER BY kind"
        ),
        ["letter|4", "status|9"]
    );
    assert_eq!(
        value::<i64>(
            &db,
            "SELECT count(*) FROM change AS c JOIN letter AS l ON l.id = c.id
             WHERE c.kind = 'letter' AND c.seq > (SELECT max(s.seq) FROM change AS s
                 WHERE s.kind = 'status' AND s.id = l.seq)"
        ),
        4
    );
}

#[test]
fn names_held_while_walking_do_not_grow_with_the_depth_of_the_tree() {
    // 12,000 files with 240-byte names per directory, in one directory and in four nested
    // ones: each listing would hold about 3.5 MB if every level kept all of its names.
    const PER_LEVEL: u32 = 12_000;
    let fill = |dir: &Path| {
        std::fs::create_dir_all(dir).expect("mkdir");
        for n in 0..PER_LEVEL {
            let name = format!("{n:06}{}.xml", "x".repeat(230));
            std::fs::File::create(dir.join(name)).expect("create");
        }
    };
    let flat = Install::new("");
    fill(&flat.path("in"));
    let deep = Install::new("");
    let mut dir = deep.path("in");
    for level in 0..4 {
        fill(&dir);
        dir = dir.join(format!("{level}sub"));
    }
    let mut peaks = Vec::new();
    for (install, files) in [(&flat, PER_LEVEL), (&deep, 4 * PER_LEVEL)] {
        let input = install.path("in");
        let (output, peak_kib) = run_watched(
            install,
            &["import", input.to_str().expect("utf-8")],
            Duration::from_secs(600),
        );
        let (_, stdout, stderr) = outcome(&output);
        assert!(
            stdout.starts_with(&format!("imported {files} files")),
            "{stdout}{stderr}"
        );
        peaks.push(peak_kib);
    }
    // Three more levels of the same size add little: the deeper a listing, the fewer names it
    // holds at a time (at most half of the one above it).
    assert!(
        peaks[1] < peaks[0] + 8 * 1024,
        "one level: peak {} KiB, four levels: {} KiB",
        peaks[0],
        peaks[1]
    );
}

#[test]
fn the_largest_envelope_allowed_decodes_within_the_memory_bound() {
    use base64::Engine;
    // At the largest `max_message_bytes`, a status whose error text fills the base64 payload,
    // with character references in both (each makes the parser copy that text).
    const MAX: usize = 32 * 1024 * 1024;
    let install = Install::new(&format!("max_message_bytes = {MAX}\n"));
    let fixture = std::fs::read_to_string(fixtures().join("good/10-status-digital-failed.xml"))
        .expect("fixture");
    let open = fixture.find("<Base64").expect("Base64");
    let start = open + fixture[open..].find('>').expect("tag end") + 1;
    let end = start + fixture[start..].find("</Base64>").expect("Base64 end");
    let engine = base64::engine::general_purpose::STANDARD;
    let payload = String::from_utf8(engine.decode(fixture[start..end].trim()).expect("base64"))
        .expect("utf-8");
    // Base64 wrapped in lines of 76 with CRLF (the parser copies text with CR in it too).
    let room = (MAX - fixture.len() - 64) / 4 * 3 / 78 * 76 - payload.len();
    let payload = payload.replacen(
        "<FejlTekst>",
        &format!("<FejlTekst>{}", "A".repeat(room)),
        1,
    );
    let encoded = engine.encode(payload);
    let wrapped = crate::sample::wrapped(&encoded, 76);
    let envelope = format!(
        "{}&#{};{}{}",
        &fixture[..start],
        u32::from(wrapped.as_bytes()[0]),
        &wrapped[1..],
        &fixture[end..]
    );
    assert!(
        envelope.len() <= MAX && envelope.len() > MAX - 2048,
        "{}",
        envelope.len()
    );
    // Two of them, one after the other: memory freed after the first is not kept.
    let at = fixture.find("UUIDIdentifikator>").expect("id") + "UUIDIdentifikator>".len();
    let besked_id = "552b82f6-be3e-4c0a-9ef2-a4f04be03db1";
    let first = envelope.replacen(&fixture[at..at + 36], besked_id, 1);
    assert_ne!(first, envelope, "the BeskedId was replaced");
    let input = install.path("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    std::fs::write(input.join("large-1.xml"), &first).expect("write");
    std::fs::write(input.join("large-2.xml"), envelope).expect("write");

    let limit_kib = (64 * 1024 * 1024 + 2 * MAX) / 1024;
    let input_arg = input.to_str().expect("utf-8");
    let (output, peak_kib) =
        run_watched(&install, &["import", input_arg], Duration::from_secs(300));
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("2 new"), "{stdout}");
    assert!(peak_kib < limit_kib as u64, "import peak {peak_kib} KiB");
    // The derived column keeps 64 KiB of the text, and says how much more there was.
    let db = install.db();
    let kept: String = value(&db, "SELECT fejl_tekst FROM print_status LIMIT 1");
    assert!(kept.starts_with("AAAA"), "{}", &kept[..40]);
    assert!(kept.len() < 65 * 1024, "{}", kept.len());
    assert!(kept.ends_with(" bytes]"), "{}", &kept[kept.len() - 40..]);
    assert_eq!(
        value::<String>(&db, "SELECT fejl_tekst FROM letter LIMIT 1"),
        kept
    );

    // The other commands that read envelopes stay within it too.
    for args in [
        &["reprocess"][..],
        &["show", besked_id],
        &["forget", "0101701234"],
    ] {
        let (output, peak_kib) = run_watched(&install, args, Duration::from_secs(300));
        let (code, _, stderr) = outcome(&output);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(peak_kib < limit_kib as u64, "{args:?}: peak {peak_kib} KiB");
    }
}

/// Writes `files` into a directory `dir` of the installation's own and imports it.
fn import_files(install: &Install, dir: &str, files: &[(&str, String)]) -> (i32, String, String) {
    let dir = install.mkdir(dir);
    for (name, content) in files {
        std::fs::write(dir.join(name), content).expect("write");
    }
    outcome(&install.import(&dir))
}

/// A registration fixture (BeskedId `552b82f6-be3e-4c0a-9ef2-a4f04be03db0`).
fn registration_fixture() -> String {
    std::fs::read_to_string(fixtures().join("good/10-digitalpost-registered.xml")).expect("fixture")
}

#[test]
fn other_content_under_a_dropped_envelopes_id_is_kept_and_the_same_envelope_is_a_duplicate() {
    let install = Install::new(TYPES);
    let original = registration_fixture();
    let (code, stdout, stderr) = import_files(&install, "in", &[("a.xml", original.clone())]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = outcome(&install.run(&["forget", "0101701234"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let db = install.db();
    assert_eq!(
        rows(
            &db,
            "SELECT length(envelope), length(envelope_sha256) FROM message"
        ),
        ["0|64"]
    );
    // The same envelope again is a duplicate (and is not stored again); a changed copy under
    // the same BeskedId is kept in `rejected`, as for any reused id.
    let (code, stdout, stderr) = import_files(
        &install,
        "again",
        &[
            ("a.xml", format!("\u{feff}{original}\n")),
            (
                "b.xml",
                original.replace("<BeskedVersion>1.0", "<BeskedVersion>2.0"),
            ),
        ],
    );
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stdout.contains("0 new, 1 duplicates, 1 rejected"),
        "{stdout}"
    );
    assert_eq!(
        rows(
            &db,
            "SELECT origin LIKE '%b.xml', reason LIKE '%already stored (message seq 1) with different content%' FROM rejected"
        ),
        ["1|1"]
    );
}

#[test]
fn a_besked_id_that_holds_a_cpr_number_never_becomes_a_key() {
    let install = Install::new(TYPES);
    let original = registration_fixture();
    let (code, stdout, stderr) = import_files(&install, "in", &[("a.xml", original.clone())]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let cpr_like = "BeskedId holds what looks like a CPR number (a BeskedId is a UUID)";
    for (dir, file, besked_id, reason) in [
        ("cpr-id", "c.xml", "0202802345", cpr_like),
        // Nor one joined to letters, which `forget` would mask (so that a copy received after
        // it would be taken for a new message).
        ("glued-id", "g.xml", "x0202802345y", cpr_like),
        // Nor in digits the masking does not know.
        (
            "wide-id",
            "d.xml",
            "\u{ff10}\u{ff12}\u{ff10}\u{ff12}\u{ff18}\u{ff10}\u{ff12}\u{ff13}\u{ff14}\u{ff15}",
            "BeskedId has digits other than 0-9 (a BeskedId is a UUID)",
        ),
    ] {
        let (code, stdout, stderr) = import_files(
            &install,
            dir,
            &[(
                file,
                original.replace("552b82f6-be3e-4c0a-9ef2-a4f04be03db0", besked_id),
            )],
        );
        assert_eq!(code, 3, "{stdout}{stderr}");
        assert_eq!(
            rows(
                &install.db(),
                &format!(
                    "SELECT besked_id IS NULL, reason FROM rejected WHERE origin LIKE '%{file}'"
                )
            ),
            [format!("1|{reason}")]
        );
        assert_eq!(
            value::<i64>(&install.db(), "SELECT count(*) FROM message"),
            1
        );
        assert!(!stderr.contains("0202802345"), "{stderr}");
    }
}
