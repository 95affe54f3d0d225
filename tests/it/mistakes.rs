//! An operator's mistakes, refused plainly and harmlessly: usage and configuration errors said
//! like any error (CPR numbers masked, one line each, the monitoring plugin UNKNOWN); a
//! mistyped replica path never created, another program's database never taken for a replica
//! nor changed; `backup` never writing where the replica's own files belong; output that cannot
//! be written is an error, never a panic; a replica others can read is pointed out.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{BIN, Install, TYPES, outcome};

/// An installation with an empty replica (`init` done).
fn initialized() -> Install {
    let install = Install::new(TYPES);
    outcome(&install.run(&["init"]));
    install
}

/// Whether `stderr` says the file is not a replica (another program's database).
fn refused_as_foreign(stderr: &str) -> bool {
    stderr.contains("another program") || stderr.contains("not a beskedhent database")
}

#[test]
fn a_retention_period_no_calendar_can_subtract_is_a_configuration_error_naming_the_key() {
    let install = initialized();
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
    // A period of zero days is no period.
    install.replace_in_config("100000000", "0");
    let (code, _, stderr) = outcome(&install.run(&["prune"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("sets no retention period"), "{stderr}");
}

#[test]
fn a_wrong_option_to_the_monitoring_plugin_is_unknown_not_critical() {
    let install = initialized();
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
}

#[test]
fn import_source_follows_the_rule_of_feed_names() {
    let install = initialized();
    for source in ["a|b", "0101701234", ""] {
        let (code, _, stderr) = outcome(&install.run(&["import", "--source", source, "."]));
        assert_eq!(code, 2, "{source}");
        assert!(
            stderr.contains("must be 1 to 64 letters") || stderr.contains("could be a CPR number"),
            "{stderr}"
        );
        assert!(!stderr.contains("1234"), "{stderr}");
    }
}

#[test]
fn a_usage_mistake_is_said_masked_and_cannot_start_a_line_of_its_own() {
    let install = initialized();
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
    // Masked as everywhere else: the date kept, the rest starred.
    for (args, quoted) in [
        (
            &["export", "statuses", "--cursor", "0101701234"][..],
            "'010170****'",
        ),
        (
            &["export", "statuses", "--cursor", "a0101701234"],
            "'a010170****'",
        ),
    ] {
        let (code, _, stderr) = outcome(&install.run(args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(quoted), "{args:?}: {stderr}");
    }
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
        install.write_config(&format!(
            "database = \"replica.db\"\nmax_message_bytes = {value}\n"
        ));
        let (code, _, stderr) = outcome(&install.run(&["status"]));
        assert_eq!(code, 1, "{value}: {stderr}");
        assert!(
            stderr.contains("invalid configuration"),
            "{value}: {stderr}"
        );
        assert!(!stderr.contains("1234"), "{value}: {stderr}");
    }
    // The same for the log filter's variable, which a bad value is quoted from.
    install.write_config("database = \"replica.db\"\n");
    for filter in [
        r"010170\U000000A01234",
        r"01017\u00301234",
        "010170\u{a0}1234",
        r"\t0101701234",
    ] {
        let output = install.run_with_env(&["status"], &[("BESKEDHENT_LOG", filter)]);
        let (_, _, stderr) = outcome(&output);
        assert!(stderr.contains("BESKEDHENT_LOG"), "{filter}: {stderr}");
        assert!(!stderr.contains("1234"), "{filter}: {stderr}");
    }
}

#[test]
fn a_cpr_number_in_a_mistyped_argument_is_masked() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let install = Install::new("");
    for args in [
        vec![
            OsStr::new("import"),
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
        vec!["forget".as_ref(), OsStr::from_bytes(b"0101701234\xff")],
        vec![
            "status".as_ref(),
            "--check".as_ref(),
            OsStr::from_bytes(b"0101701234\xff"),
        ],
        vec![
            "letters".as_ref(),
            "--overdue".as_ref(),
            "0101701234".as_ref(),
        ],
    ] {
        let (code, stdout, stderr) = outcome(&install.command(&args).output().expect("run"));
        assert!(code == 2 || code == 3, "{args:?}: {code} {stdout}{stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            !format!("{stdout}{stderr}").contains("1234"),
            "{args:?}: {stdout}{stderr}"
        );
    }
}

#[test]
fn a_command_that_changes_a_replica_never_creates_one() {
    // An erasure on a mistyped path must not look done.
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
}

#[test]
fn an_empty_file_is_not_taken_for_a_replica_to_erase_from() {
    let install = Install::new(TYPES);
    std::fs::write(install.path("replica.db"), b"").expect("empty file");
    let (code, _, stderr) = outcome(&install.run(&["forget", "0101701234"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not a beskedhent database"), "{stderr}");
}

#[test]
fn another_programs_database_is_never_taken_for_a_replica_whatever_version_it_sets() {
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
            assert!(refused_as_foreign(&stderr), "{version} {args:?}: {stderr}");
        }
        assert_eq!(
            std::fs::read(foreign.path("replica.db")).expect("read"),
            before,
            "nothing was written into it (version {version})"
        );
        assert!(!foreign.path("replica.db-wal").exists());
    }
}

/// Another program's database as the replica, its last transactions in its WAL (`wal`) or
/// half-way in a hot journal (`delete`); the suffix of that side file.
fn foreign_with_side_file(foreign: &Install, journal_mode: &str) -> &'static str {
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
        // A transaction larger than the page cache spills into the file, so the journal is
        // hot: whoever opens the database next must roll it back.
        db.execute_batch("PRAGMA cache_size = 2; BEGIN; UPDATE customers SET name = lower(name);")
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
    side
}

#[test]
fn deciding_never_lets_sqlite_checkpoint_or_roll_back_another_programs_files() {
    for journal_mode in ["wal", "delete"] {
        let foreign = Install::new(TYPES);
        foreign.append_config("\n[retention]\nrun_days = 30\n");
        let side = foreign_with_side_file(&foreign, journal_mode);
        let files = |install: &Install| {
            ["replica.db", &format!("replica.db{side}")]
                .map(|name| std::fs::read(install.path(name)).expect("still there"))
        };
        let before = files(&foreign);
        assert!(!before[1].is_empty(), "{side}");
        for args in [&["init"][..], &["import", "/nonexistent"], &["prune"]] {
            let (code, _, stderr) = outcome(&foreign.run(args));
            assert_eq!(code, 1, "{side} {args:?}: {stderr}");
            assert!(refused_as_foreign(&stderr), "{side} {args:?}: {stderr}");
            assert!(files(&foreign) == before, "{side} {args:?}: files changed");
        }
    }
}

#[test]
fn an_empty_or_missing_replica_beside_another_programs_wal_is_refused_before_sqlite_discards_it() {
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
}

#[test]
fn a_database_with_no_tables_but_a_version_of_its_own_is_not_a_replica() {
    let versioned = Install::new(TYPES);
    rusqlite::Connection::open(versioned.path("replica.db"))
        .and_then(|db| db.execute_batch("PRAGMA user_version = 7"))
        .expect("version");
    let before = std::fs::read(versioned.path("replica.db")).expect("read");
    for args in [&["init"][..], &["import", "/nonexistent"], &["status"]] {
        let (code, _, stderr) = outcome(&versioned.run(args));
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(refused_as_foreign(&stderr), "{args:?}: {stderr}");
    }
    assert_eq!(
        std::fs::read(versioned.path("replica.db")).expect("read"),
        before
    );
}

#[test]
fn backup_never_writes_where_the_replicas_own_files_belong() {
    let install = initialized();
    // Where SQLite looks for the replica's journal...
    let journal = format!("{}-journal", install.db_path().display());
    let (code, _, stderr) = outcome(&install.run(&["backup", &journal]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("one of the replica's own files"),
        "{stderr}"
    );
    assert!(!Path::new(&journal).exists());
    // ...where a feed's or an import's run keeps its lock...
    let lock = format!("{}-status.lock", install.db_path().display());
    let (code, _, stderr) = outcome(&install.run(&["backup", &lock]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("one of the replica's own files"),
        "{stderr}"
    );
    assert!(!Path::new(&lock).exists());
    // ...nor beside the real file when `database` is a symbolic link to it.
    let linked = Install::new(TYPES);
    std::os::unix::fs::symlink(install.db_path(), linked.path("link.db")).expect("link");
    linked.write_config(&format!(
        "database = \"{}\"\n",
        linked.path("link.db").display()
    ));
    let (code, _, stderr) = outcome(&linked.run(&["backup", &journal]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("one of the replica's own files"),
        "{stderr}"
    );
    assert!(!Path::new(&journal).exists());
}

#[test]
fn backup_to_a_directory_is_refused() {
    let install = initialized();
    let (code, _, stderr) =
        outcome(&install.run(&["backup", install.dir.path().to_str().expect("utf-8")]));
    assert_eq!(code, 1);
    assert!(stderr.contains("is a directory"), "{stderr}");
}

#[test]
fn output_that_cannot_be_written_is_an_error_said_on_standard_error_never_a_panic() {
    let install = initialized();
    // As a monitoring plugin, that is UNKNOWN (3) like any failure of the plugin.
    for (args, expected) in [
        (&["status"][..], 1),
        (&["status", "--json"], 1),
        (&["letters"], 1),
        (&["status", "--check"], 3),
    ] {
        let output = install
            .command(args)
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
}

#[test]
fn an_error_that_cannot_be_said_still_tells_by_the_exit_code() {
    let install = initialized();
    // Standard error full or closed.
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
}

#[test]
fn a_reader_that_goes_away_early_is_not_an_error() {
    let install = initialized();
    let mut child = install
        .command(["letters", "--json", "--limit", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("wait");
    let (code, _, stderr) = outcome(&output);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_replica_others_can_read_is_pointed_out_by_the_commands_that_only_read_it() {
    let install = initialized();
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
