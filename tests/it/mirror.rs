//! The PostgreSQL mirror against a real PostgreSQL (`crate::postgres`): every row and column as
//! in the replica, a mirror killed mid-way, deletions by `forget` and `prune`, PostgreSQL away
//! during a sync, two installations in one database, verified TLS and the password's sources.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::postgres::{Postgres, SECRET_PASSWORD, shared};
use crate::support::{Install, PullTest, TYPES, envelopes, outcome, write_envelopes};

/// The replica's tables the mirror copies, with the key they are ordered by.
const TABLES: &[(&str, &str)] = &[
    ("message", "seq"),
    ("print_status", "seq"),
    (
        "print_status_postal_event",
        "seq, besked_id, type_kode, occurred_at",
    ),
    ("letter", "id"),
    ("registration", "seq"),
    ("registration_current", "seq"),
    ("print_status_latest", "seq"),
];

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/envelopes")
}

/// The `[mirror]` section for `database` on `server`, as installation `name`.
fn mirror_section(server: &Postgres, database: &str, name: &str, extra: &str) -> String {
    format!(
        "\n[mirror]\npostgresql = \"{}\"\ninstallation = \"{name}\"\n{extra}\n",
        server.url(database)
    )
}

/// The replica's columns of `table`, as `PRAGMA table_info` names them.
fn replica_columns(install: &Install, table: &str) -> Vec<String> {
    let db = install.db();
    let mut statement = db
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
        .expect("table_info");
    statement
        .query_map([], |row| row.get(0))
        .expect("columns")
        .collect::<Result<_, _>>()
        .expect("columns")
}

/// Every row of `table` in the replica, each column as text (NULL as `NULL`).
fn replica_rows(install: &Install, table: &str, order: &str, envelopes: bool) -> Vec<Vec<String>> {
    let columns: Vec<String> = replica_columns(install, table)
        .into_iter()
        .map(|column| match column.as_str() {
            "envelope" if envelopes => {
                "CASE WHEN envelope_pruned_at IS NULL THEN lower(hex(envelope)) END".to_owned()
            }
            "envelope" => "NULL".to_owned(),
            _ => format!("CAST({column} AS TEXT)"),
        })
        .collect();
    let db = install.db();
    let mut statement = db
        .prepare(&format!(
            "SELECT {} FROM {table} ORDER BY {order}",
            columns.join(", ")
        ))
        .expect("select");
    let width = columns.len();
    statement
        .query_map([], |row| {
            (0..width)
                .map(|i| Ok(row.get::<_, Option<String>>(i)?.unwrap_or("NULL".into())))
                .collect()
        })
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// Every row of `table` of installation `name` in PostgreSQL, each column as the replica
/// writes it: times in UTC with milliseconds, booleans as 0 or 1.
fn mirror_rows(
    install: &Install,
    client: &mut postgres::Client,
    table: &str,
    order: &str,
    name: &str,
) -> Vec<Vec<String>> {
    let types: std::collections::HashMap<String, String> = client
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
             WHERE table_schema = 'beskedhent' AND table_name = $1",
            &[&table],
        )
        .expect("columns")
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let columns: Vec<String> = replica_columns(install, table)
        .into_iter()
        .map(|column| {
            let ty = types
                .get(&column)
                .unwrap_or_else(|| panic!("PostgreSQL's {table} has no column {column}"));
            match ty.as_str() {
                "timestamp with time zone" => format!(
                    "to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
                ),
                "boolean" => format!("CASE WHEN {column} THEN '1' ELSE '0' END"),
                "bytea" => format!("encode({column}, 'hex')"),
                _ => format!("{column}::text"),
            }
        })
        .collect();
    client
        .query(
            &format!(
                "SELECT {} FROM beskedhent.{table} AS t WHERE installation = $1 ORDER BY {}",
                columns.join(", "),
                order
                    .split(", ")
                    .map(|column| format!("t.{column}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            &[&name],
        )
        .expect("select from the mirror")
        .into_iter()
        .map(|row| {
            (0..columns.len())
                .map(|i| row.get::<_, Option<String>>(i).unwrap_or("NULL".into()))
                .collect()
        })
        .collect()
}

/// Asserts that PostgreSQL holds exactly the replica's rows of every mirrored table, for
/// installation `name`; returns how many rows in all.
fn assert_same(
    install: &Install,
    server: &Postgres,
    database: &str,
    name: &str,
    envelopes: bool,
) -> usize {
    let mut client = server.client(database);
    let mut total = 0;
    for (table, order) in TABLES {
        let expected = replica_rows(install, table, order, envelopes);
        let got = mirror_rows(install, &mut client, table, order, name);
        assert_eq!(got.len(), expected.len(), "rows of {table}");
        for (got, expected) in got.iter().zip(&expected) {
            assert_eq!(got, expected, "a row of {table}");
        }
        total += expected.len();
    }
    total
}

fn run_ok(install: &Install, args: &[&str]) -> String {
    let (code, stdout, stderr) = outcome(&install.run(args));
    assert_eq!(code, 0, "{args:?}: {stdout}{stderr}");
    stdout + &stderr
}

#[test]
fn every_row_and_column_of_the_replica_is_in_postgresql_after_each_import() {
    let server = shared();
    let database = server.database();
    let install = Install::new(&format!(
        "{TYPES}{}",
        mirror_section(server, &database, "kommune-a", "envelopes = true")
    ));
    let said = run_ok(&install, &["import", examples().to_str().unwrap()]);
    assert!(
        said.contains("mirror: ") && said.contains(" changes and 9 new messages copied"),
        "{said}"
    );
    let first = assert_same(&install, server, &database, "kommune-a", true);
    assert!(first > 20, "{first} rows");

    // More arrive: only what changed is copied, and the result is again the replica.
    let more = install.path("more");
    write_envelopes(&more, 0x3a00, 300);
    run_ok(&install, &["import", more.to_str().unwrap()]);
    assert!(assert_same(&install, server, &database, "kommune-a", true) > first + 600);
    // Nothing new: nothing copied.
    let said = run_ok(&install, &["mirror"]);
    assert!(said.contains("nothing new"), "{said}");
    // The types are PostgreSQL's.
    let mut client = server.client(&database);
    let types: Vec<(String, String)> = client
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
             WHERE table_schema = 'beskedhent' AND table_name = 'letter'
               AND column_name IN ('final', 'occurred_at', 'id')
             ORDER BY column_name",
            &[],
        )
        .unwrap()
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        types,
        [
            ("final".to_owned(), "boolean".to_owned()),
            ("id".to_owned(), "bigint".to_owned()),
            (
                "occurred_at".to_owned(),
                "timestamp with time zone".to_owned()
            )
        ]
    );
}

#[test]
fn a_mirror_killed_mid_way_ends_in_the_same_result_when_run_again() {
    let server = shared();
    let database = server.database();
    let install = Install::new(TYPES);
    let input = install.path("in");
    write_envelopes(&input, 0x3b00, 3_000);
    run_ok(&install, &["import", input.to_str().unwrap()]);
    install.append_config(&mirror_section(
        server,
        &database,
        "kommune-k",
        "batch = 40",
    ));

    let mut child = install.spawn(&["mirror"]);
    let mut client = server.client(&database);
    let deadline = Instant::now() + Duration::from_secs(60);
    let committed = loop {
        let done: Option<i64> = client
            .query_opt(
                "SELECT change_seq FROM beskedhent.mirror_state WHERE installation = 'kommune-k'",
                &[],
            )
            .ok()
            .flatten()
            .map(|row| row.get(0));
        if let Some(done) = done.filter(|done| *done > 0) {
            break done;
        }
        assert!(Instant::now() < deadline, "the mirror committed nothing");
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().expect("kill -9");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "the mirror ended before it was killed");
    let letters: i64 = client
        .query_one("SELECT count(*) FROM beskedhent.letter", &[])
        .unwrap()
        .get(0);
    assert!(
        letters < 3_000,
        "it was killed part way ({committed}, {letters} letters)"
    );

    run_ok(&install, &["mirror"]);
    assert_same(&install, server, &database, "kommune-k", false);
}

#[test]
fn forget_and_prune_delete_in_postgresql_too() {
    const CPR: &str = "0101701234";
    let server = shared();
    let database = server.database();
    let install = Install::new(&format!(
        "{TYPES}\n[retention]\nstatus_days = 30\n{}",
        mirror_section(server, &database, "kommune-f", "envelopes = true")
    ));
    run_ok(&install, &["import", examples().to_str().unwrap()]);
    let mut client = server.client(&database);
    let named = |client: &mut postgres::Client| -> i64 {
        client
            .query_one(
                "SELECT count(*) FROM beskedhent.registration WHERE party = $1",
                &[&CPR],
            )
            .unwrap()
            .get(0)
    };
    assert_eq!(named(&mut client), 2);

    let (code, stdout, stderr) = outcome(&install.run_with_input(&["forget"], CPR.as_bytes()));
    assert_eq!(code, 0, "{stdout}{stderr}");
    run_ok(&install, &["mirror"]);
    assert_eq!(named(&mut client), 0);
    // Dropped envelopes are dropped in PostgreSQL too.
    let kept: i64 = client
        .query_one(
            "SELECT count(*) FROM beskedhent.message
             WHERE envelope_pruned_at IS NOT NULL AND envelope IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(kept, 0);
    assert_same(&install, server, &database, "kommune-f", true);

    let letters = |client: &mut postgres::Client| -> i64 {
        client
            .query_one("SELECT count(*) FROM beskedhent.letter", &[])
            .unwrap()
            .get(0)
    };
    let before = letters(&mut client);
    run_ok(&install, &["prune"]);
    run_ok(&install, &["mirror"]);
    assert!(letters(&mut client) < before);
    assert_same(&install, server, &database, "kommune-f", true);
}

#[test]
fn pulling_goes_on_while_postgresql_is_away_and_the_mirror_catches_up() {
    let server = Postgres::start();
    let database = server.database();
    let test = PullTest::new(envelopes(0x3c00, 200), "");
    test.install.append_config(&mirror_section(
        &server,
        &database,
        "kommune-p",
        "lag_warning_minutes = 0\ntimeout_seconds = 5",
    ));
    server.stop();
    let (code, stdout, stderr) = outcome(&test.install.run(&["sync"]));
    assert_eq!(
        code, 0,
        "pulling must not depend on the mirror: {stdout}{stderr}"
    );
    assert!(stdout.contains("mirror: FAILED"), "{stdout}");
    assert_eq!(test.depth(), 0, "every message acknowledged");
    let stored: i64 = crate::support::value(&test.install.db(), "SELECT count(*) FROM message");
    assert_eq!(stored, 200);
    let (code, stdout, _) = outcome(&test.install.run(&["status", "--check"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("mirror is") && stdout.contains("400 changes and 200 messages not copied"),
        "{stdout}"
    );
    assert!(stdout.contains("the last try failed"), "{stdout}");
    let (_, stdout, _) = outcome(&test.install.run(&["status"]));
    assert!(
        stdout.contains(
            "  mirror `kommune-p`: at 0, 400 changes behind, last caught up never; last try 20"
        ),
        "{stdout}"
    );

    server.restart();
    test.broker.fill(&test.queue, envelopes(0x3d00, 50));
    let said = run_ok(&test.install, &["sync"]);
    assert!(
        said.contains("mirror: 500 changes and 250 new messages copied"),
        "{said}"
    );
    assert_same(&test.install, &server, &database, "kommune-p", false);
    let (_, stdout, _) = outcome(&test.install.run(&["status", "--check"]));
    assert!(!stdout.contains("not copied"), "{stdout}");
    let (_, stdout, _) = outcome(&test.install.run(&["status"]));
    assert!(
        stdout.contains("  mirror `kommune-p`: at 500, 0 changes behind, last caught up 20"),
        "{stdout}"
    );
    assert!(!stdout.contains("failed"), "{stdout}");
}

#[test]
fn two_installations_mirror_into_one_database_without_touching_each_other() {
    let server = shared();
    let database = server.database();
    let a = Install::new(&format!(
        "{TYPES}{}",
        mirror_section(server, &database, "kommune-a", "")
    ));
    let b = Install::new(&format!(
        "{TYPES}{}",
        mirror_section(server, &database, "kommune-b", "")
    ));
    run_ok(&a, &["import", examples().to_str().unwrap()]);
    let more = b.path("in");
    write_envelopes(&more, 0x3e00, 100);
    run_ok(&b, &["import", examples().to_str().unwrap()]);
    run_ok(&b, &["import", more.to_str().unwrap()]);
    assert_same(&a, server, &database, "kommune-a", false);
    let rows_b = assert_same(&b, server, &database, "kommune-b", false);
    // The same seq numbers in both, kept apart by installation.
    let mut client = server.client(&database);
    let shared_seqs: i64 = client
        .query_one(
            "SELECT count(*) FROM beskedhent.message AS x JOIN beskedhent.message AS y
             ON x.seq = y.seq AND x.installation = 'kommune-a' AND y.installation = 'kommune-b'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(shared_seqs > 5, "{shared_seqs}");
    // A forget in one leaves the other as it was.
    let (code, stdout, stderr) = outcome(&a.run_with_input(&["forget"], b"0101701234"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    run_ok(&a, &["mirror"]);
    assert_same(&a, server, &database, "kommune-a", false);
    assert_eq!(
        assert_same(&b, server, &database, "kommune-b", false),
        rows_b
    );
}

#[test]
fn tls_is_verified_by_default_and_the_password_comes_from_a_private_file_or_the_environment() {
    let server = shared();
    let database = server.database();
    let certs = crate::broker::certs();
    let install = Install::new(TYPES);
    run_ok(&install, &["import", examples().to_str().unwrap()]);
    let section = |query: &str, extra: &str| {
        format!(
            "\n[mirror]\npostgresql = \"postgresql://secret@localhost:{}/{database}{query}\"\ninstallation = \"kommune-t\"\ntimeout_seconds = 5\n{extra}\n",
            server.port
        )
    };
    let base = install.config_text();
    let password_file = install.path("pg-password");
    std::fs::write(&password_file, format!("{SECRET_PASSWORD}\n")).unwrap();
    std::fs::set_permissions(
        &password_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let with_password = format!("password_file = \"{}\"", password_file.display());

    // The system's roots do not know the test CA: refused, with what to do.
    install.write_config(&(base.clone() + &section("", &with_password)));
    let (code, stdout, stderr) = outcome(&install.run(&["mirror"]));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("sslrootcert"), "{stderr}");
    // Another CA: refused.
    let rogue = format!("?sslrootcert={}", certs.path("rogue-ca.pem").display());
    install.write_config(&(base.clone() + &section(&rogue, &with_password)));
    assert_eq!(outcome(&install.run(&["mirror"])).0, 1);
    // The right CA: verified, and the password read from the private file.
    let right = format!("?sslrootcert={}", certs.path("ca.pem").display());
    install.write_config(&(base.clone() + &section(&right, &with_password)));
    let said = run_ok(&install, &["mirror"]);
    assert!(!said.contains(SECRET_PASSWORD), "{said}");
    assert_same(&install, server, &database, "kommune-t", false);

    // A password file others can read is refused; so is a wrong password from the
    // environment, without showing it.
    std::fs::set_permissions(
        &password_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let (code, _, stderr) = outcome(&install.run(&["mirror"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("chmod 600"), "{stderr}");
    install.write_config(&(base + &section(&right, "password_env = \"BH_PG\"")));
    let output = install.run_with_env(&["mirror"], &[("BH_PG", "wrong-password-42")]);
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 1);
    assert!(stderr.contains("password"), "{stderr}");
    assert!(!format!("{stdout}{stderr}").contains("wrong-password-42"));
    let output = install.run_with_env(&["mirror"], &[("BH_PG", SECRET_PASSWORD)]);
    assert_eq!(outcome(&output).0, 0);
}

#[test]
fn a_mistyped_mirror_section_is_refused_before_anything_runs() {
    let install = Install::new("");
    for (section, expected) in [
        (
            "postgresql = \"postgresql://u:pw@db/x\"\ninstallation = \"a\"",
            "password_file",
        ),
        (
            "postgresql = \"postgresql://u@db/x?sslmode=require\"\ninstallation = \"a\"",
            "sslmode=verify-full",
        ),
        (
            "postgresql = \"postgresql://u@db/x\"",
            "mirror.installation",
        ),
        (
            "postgresql = \"postgresql://u@db/x\"\ninstallation = \"a b\"",
            "mirror.installation",
        ),
        (
            "postgresql = \"postgresql://u@db/x\"\ninstallation = \"a\"\nschema = \"Drop;\"",
            "mirror.schema",
        ),
        (
            "postgresql = \"postgresql://u@db/x\"\ninstallation = \"a\"\nbatch = 0",
            "mirror.batch",
        ),
        (
            "postgresql = \"postgresql://u@db/x\"\ninstallation = \"0101701234\"",
            "not a CPR number",
        ),
        (
            "postgresql = \"host=db user=u password = 'p w'\"\ninstallation = \"a\"",
            "password_file",
        ),
        (
            "postgresql = \"postgresql://u@db/x?pass%77ord=pw\"\ninstallation = \"a\"",
            "password_file",
        ),
        (
            "postgresql = \"postgresql://u@db/x?sslmode=bogus\"\ninstallation = \"a\"",
            "not a mode",
        ),
    ] {
        install.write_config(&format!("database = \"replica.db\"\n[mirror]\n{section}\n"));
        let (code, stdout, stderr) = outcome(&install.run(&["status"]));
        assert_eq!(code, 1, "{section}: {stdout}{stderr}");
        assert!(stderr.contains(expected), "{section}: {stderr}");
        assert!(!stderr.contains(":pw@"), "{stderr}");
    }
}

#[test]
fn envelopes_are_copied_in_batches_bounded_by_bytes() {
    let server = shared();
    let database = server.database();
    let install = Install::new(&format!("max_message_bytes = 2097152\n{TYPES}"));
    let input = install.mkdir("large");
    for n in 0..40u64 {
        let envelope = crate::sample::padded(
            crate::support::status_envelope(
                &crate::support::test_uuid(0x3f00, n),
                &crate::support::test_uuid(0x3f01, n),
                0,
            ),
            1_000_000,
        );
        std::fs::write(input.join(format!("{n}.xml")), envelope).unwrap();
    }
    run_ok(&install, &["import", input.to_str().unwrap()]);
    install.append_config(&mirror_section(
        server,
        &database,
        "kommune-e",
        "envelopes = true",
    ));
    let (output, peak_kib) =
        crate::support::run_watched(&install, &["mirror"], Duration::from_secs(120));
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // 40 MB of envelopes, at most 16 MiB of them a transaction.
    assert!(stdout.contains("in 3 transactions"), "{stdout}");
    assert!(peak_kib < 128 * 1024, "peak {peak_kib} KiB");
    assert_same(&install, server, &database, "kommune-e", true);
}

#[test]
fn a_first_mirror_after_tombstones_were_deleted_copies_in_batches_without_starting_over() {
    let server = shared();
    let database = server.database();
    let install = Install::new(&format!(
        "{TYPES}\n[retention]\nstatus_days = 30\ndeletions_days = 10\n"
    ));
    run_ok(&install, &["import", examples().to_str().unwrap()]);
    let more = install.path("more");
    write_envelopes(&more, 0x3f20, 200);
    run_ok(&install, &["import", more.to_str().unwrap()]);
    run_ok(&install, &["prune"]);
    install
        .db()
        .execute_batch("UPDATE change SET deleted_at = '2026-01-02T00:00:00.000Z' WHERE deleted_at IS NOT NULL")
        .unwrap();
    let said = run_ok(&install, &["prune"]);
    assert!(!said.contains(", 0 tombstones"), "{said}");
    install.append_config(&mirror_section(
        server,
        &database,
        "kommune-r",
        "batch = 25",
    ));
    let (output, _) = crate::support::run_watched(&install, &["mirror"], Duration::from_secs(120));
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        !format!("{stdout}{stderr}").contains("afresh"),
        "{stdout}{stderr}"
    );
    assert_same(&install, server, &database, "kommune-r", false);
}

#[test]
fn a_postgresql_that_stops_answering_never_holds_up_a_run() {
    // Accepts connections and never says a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            keep.lock().unwrap().push(stream);
        }
    });
    let install = Install::new(&format!(
        "{TYPES}\n[mirror]\npostgresql = \"postgresql://u@127.0.0.1:{port}/x?sslmode=disable\"\ninstallation = \"kommune-s\"\ntimeout_seconds = 2\n"
    ));
    let started = Instant::now();
    let (code, stdout, stderr) = outcome(&install.import(&examples()));
    assert_eq!(
        code, 0,
        "importing does not wait for the mirror: {stdout}{stderr}"
    );
    assert!(
        stdout.contains("mirror: FAILED") && stdout.contains("did not answer within 2 s"),
        "{stdout}"
    );
    let (code, _, stderr) = outcome(&install.run(&["mirror"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("did not answer within 2 s"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60));
    let stored: i64 = crate::support::value(&install.db(), "SELECT count(*) FROM message");
    assert_eq!(stored, 9);
}

#[test]
fn a_password_file_that_another_user_owns_is_refused() {
    let stranger = crate::support::LocalUser::create();
    let install = Install::new(
        "[mirror]\npostgresql = \"postgresql://u@127.0.0.1:1/x?sslmode=disable\"\ninstallation = \"a\"\npassword_file = \"pw\"\ntimeout_seconds = 2\n",
    );
    let file = install.path("pw");
    std::fs::write(&file, "stolen-or-planted\n").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    stranger.own(&file);
    let (code, stdout, stderr) = outcome(&install.run(&["mirror"]));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("belongs to user {}", stranger.name)),
        "{stderr}"
    );
    assert!(!format!("{stdout}{stderr}").contains("stolen-or-planted"));
}

#[test]
fn a_replica_restored_from_an_older_backup_is_copied_afresh() {
    // The restored replica gives out the positions after its backup again, for other changes:
    // a mirror that went on from its own position would skip them and keep what the replica
    // no longer has.
    let server = shared();
    let database = server.database();
    let install = Install::new(&format!(
        "{TYPES}{}",
        mirror_section(server, &database, "kommune-r", "")
    ));
    run_ok(&install, &["import", examples().to_str().unwrap()]);
    let backup = install.path("backup.db");
    run_ok(&install, &["backup", backup.to_str().unwrap()]);
    let lost = install.path("lost");
    write_envelopes(&lost, 0x3f00, 40);
    run_ok(&install, &["import", lost.to_str().unwrap()]);
    assert_same(&install, server, &database, "kommune-r", false);

    for companion in ["replica.db-wal", "replica.db-shm"] {
        let _ = std::fs::remove_file(install.path(companion));
    }
    std::fs::copy(&backup, install.db_path()).expect("restore");
    let other = install.path("other");
    write_envelopes(&other, 0x3f80, 10);
    let said = run_ok(&install, &["import", other.to_str().unwrap()]);
    assert!(
        said.contains("(copied afresh: it was past what this replica gave out)"),
        "{said}"
    );
    assert_same(&install, server, &database, "kommune-r", false);
    let said = run_ok(&install, &["mirror"]);
    assert!(
        said.contains("nothing new") && !said.contains("afresh"),
        "{said}"
    );
}

#[test]
fn a_failure_is_kept_in_the_replica_masked_as_a_log_line_is() {
    // PostgreSQL's error quotes the role, which here holds a CPR number joined to a letter.
    let server = shared();
    let database = server.database();
    let url = server.url(&database).replace("postgres@", "u0101701234@");
    let install = Install::new(&format!(
        "\n[mirror]\npostgresql = \"{url}\"\ninstallation = \"kommune-m\"\n"
    ));
    let (code, stdout, stderr) = outcome(&install.run(&["mirror"]));
    assert_eq!(code, 1, "{stdout}{stderr}");
    let error: String = crate::support::value(
        &install.db(),
        "SELECT error FROM mirror_state WHERE installation = 'kommune-m'",
    );
    assert!(error.contains("u010170****"), "{error}");
    assert!(
        !format!("{stdout}{stderr}{error}").contains("1234"),
        "{error}"
    );
}
