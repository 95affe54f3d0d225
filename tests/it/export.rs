//! The change feed (`export`): each change once in `seq` order, a letter once in its latest
//! state, a cursor that moves only after the output is complete, deletions as tombstones named
//! by keys only, their retention, the fields as documented, and the example consumer.

use std::path::Path;

use serde_json::Value as Json;

use crate::sample::Status;
use crate::support::{Install, TYPES, outcome, test_uuid, value, write_status};

/// The objects `export FEED args` writes (JSON Lines), with exit code 0.
fn export(install: &Install, feed: &str, args: &[&str]) -> Vec<Json> {
    let mut all = vec!["export", feed];
    all.extend(args);
    let (code, stdout, stderr) = outcome(&install.run(&all));
    assert_eq!(code, 0, "{stdout}{stderr}");
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// The `seq` of the last object, or `after` when there is none.
fn last_seq(objects: &[Json], after: i64) -> i64 {
    objects
        .last()
        .map_or(after, |object| object["seq"].as_i64().expect("seq"))
}

/// Makes every tombstone old enough for `deletions_days` to delete.
fn age_tombstones(install: &Install) {
    install
        .db()
        .execute_batch(
            "UPDATE change SET deleted_at = '2026-01-02T00:00:00.000Z' WHERE deleted_at IS NOT NULL",
        )
        .expect("age the tombstones");
}

/// A status of letter `letter` (BeskedId from `n`) at `at`, imported.
fn status(install: &Install, letter: &str, n: u64, at: &str, kind: Status<'_>) {
    let dir = install.path(&format!("in-{n}"));
    write_status(&dir, "s.xml", &test_uuid(0xe0, n), letter, at, kind);
    let (code, stdout, stderr) = outcome(&install.import(&dir));
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[test]
fn a_letter_changed_by_several_statuses_appears_once_in_its_latest_state() {
    let install = Install::new("");
    let letter = test_uuid(0xe1, 1);
    let other = test_uuid(0xe1, 2);
    status(
        &install,
        &letter,
        1,
        "2026-03-01T10:00:00.000Z",
        Status::SENT,
    );
    status(
        &install,
        &other,
        2,
        "2026-03-01T10:01:00.000Z",
        Status::SENT,
    );
    status(
        &install,
        &letter,
        3,
        "2026-03-01T10:02:00.000Z",
        Status::RECEIVED,
    );
    status(
        &install,
        &letter,
        4,
        "2026-03-01T11:00:00.000Z",
        Status::DELIVERED,
    );

    let letters = export(&install, "letters", &["--after", "0"]);
    assert_eq!(letters.len(), 2, "{letters:?}");
    // In seq order: the other letter changed last before the letter's third status.
    assert_eq!(letters[0]["message_uuid"], other.as_str());
    let latest = &letters[1];
    assert_eq!(latest["message_uuid"], letter.as_str());
    assert_eq!(latest["op"], "upsert");
    assert_eq!(latest["kind"], "letter");
    assert_eq!(latest["schema"], 1);
    assert_eq!(latest["outcome"], "delivered");
    assert_eq!(latest["final"], true);
    assert_eq!(latest["statuses"], 3);
    assert!(letters[0]["seq"].as_i64() < latest["seq"].as_i64());

    // Every status, once each, in the order stored.
    let statuses = export(&install, "statuses", &[]);
    assert_eq!(statuses.len(), 4);
    let seqs: Vec<i64> = statuses
        .iter()
        .map(|s| s["seq"].as_i64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "{seqs:?}");
    assert_eq!(statuses[3]["event"], "Afleveret Digital Post");
    assert_eq!(statuses[3]["letter_id"], latest["id"]);

    // Nothing after the last; a new status brings back only its letter.
    let after = last_seq(&letters, 0).to_string();
    assert!(export(&install, "letters", &["--after", &after]).is_empty());
    status(
        &install,
        &other,
        5,
        "2026-03-02T10:00:00.000Z",
        Status::FAILED,
    );
    let next = export(&install, "letters", &["--after", &after]);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0]["message_uuid"], other.as_str());
    assert_eq!(next[0]["outcome"], "failed");
    // A page: --limit.
    assert_eq!(export(&install, "statuses", &["--limit", "2"]).len(), 2);
}

#[test]
fn a_cursor_moves_only_after_the_output_is_complete() {
    let install = Install::new("");
    for n in 0..5 {
        status(
            &install,
            &test_uuid(0xe2, n),
            n,
            "2026-03-01T10:00:00.000Z",
            Status::SENT,
        );
    }
    let cursor = |install: &Install| -> i64 {
        value(
            &install.db(),
            "SELECT coalesce((SELECT seq FROM export_cursor WHERE name = 'esdh'), 0)",
        )
    };
    // Into a file: complete, private, then the cursor.
    let file = install.path("page.jsonl");
    let path = file.to_str().expect("utf-8");
    let first = export(
        &install,
        "letters",
        &["--cursor", "esdh", "--limit", "3", "--output", path],
    );
    assert!(first.is_empty(), "nothing on standard output");
    let written = std::fs::read_to_string(&file).expect("page");
    assert_eq!(written.lines().count(), 3);
    assert_eq!(crate::support::mode(&file), 0o600);
    let through: Json = serde_json::from_str(written.lines().last().expect("line")).expect("json");
    assert_eq!(cursor(&install), through["seq"].as_i64().expect("seq"));
    // The rest, then nothing more.
    assert_eq!(export(&install, "letters", &["--cursor", "esdh"]).len(), 2);
    let end = cursor(&install);
    assert!(export(&install, "letters", &["--cursor", "esdh"]).is_empty());
    assert_eq!(cursor(&install), end);

    // An output that cannot be written: an error, the cursor stays, nothing half written.
    status(
        &install,
        &test_uuid(0xe2, 9),
        9,
        "2026-03-02T10:00:00.000Z",
        Status::SENT,
    );
    let missing = install.path("no-such-dir/page.jsonl");
    let (code, _, stderr) = outcome(&install.run(&[
        "export",
        "letters",
        "--cursor",
        "esdh",
        "--output",
        missing.to_str().expect("utf-8"),
    ]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot write"), "{stderr}");
    assert_eq!(cursor(&install), end);

    // A reader that stops early: the cursor stays.
    let mut child = install
        .command(["export", "statuses", "--cursor", "early"])
        .env("BESKEDHENT_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("wait");
    let (code, _, stderr) = outcome(&output);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cursor `early` stays at 0"), "{stderr}");
    assert_eq!(
        value::<i64>(
            &install.db(),
            "SELECT count(*) FROM export_cursor WHERE name = 'early'"
        ),
        0
    );
    // A cursor follows one feed.
    let (code, _, stderr) = outcome(&install.run(&["export", "statuses", "--cursor", "esdh"]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cursor `esdh` follows letter, not status"),
        "{stderr}"
    );
}

#[test]
fn deletions_by_prune_and_forget_are_changes_naming_keys_only() {
    const CPR: &str = "0101701234";
    let install = Install::new(&format!("{TYPES}\n[retention]\nstatus_days = 30\n"));
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/envelopes");
    assert_eq!(outcome(&install.import(&examples)).0, 0);
    let letters = export(&install, "letters", &[]);
    let registrations = export(&install, "registrations", &[]);
    assert_eq!(registrations.len(), 3);
    let after_letters = last_seq(&letters, 0).to_string();
    let after_registrations = last_seq(&registrations, 0).to_string();

    // forget: the person's registrations go, told by their BeskedId.
    let (code, stdout, stderr) = outcome(&install.run_with_input(&["forget"], CPR.as_bytes()));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let gone = export(
        &install,
        "registrations",
        &["--after", &after_registrations],
    );
    assert_eq!(gone.len(), 2, "{gone:?}");
    for tombstone in &gone {
        assert_eq!(tombstone["op"], "delete");
        assert!(tombstone["besked_id"].is_string());
        assert!(tombstone["deleted_at"].is_string());
        assert!(!tombstone.to_string().contains(CPR), "{tombstone}");
        assert!(tombstone.get("party").is_none(), "{tombstone}");
    }

    // prune: old final letters and their statuses go.
    let (code, stdout, stderr) = outcome(&install.run(&["prune"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let deleted = export(&install, "letters", &["--after", &after_letters]);
    let final_letters = letters.iter().filter(|l| l["final"] == true).count();
    assert_eq!(deleted.len(), final_letters, "{deleted:?}");
    for tombstone in &deleted {
        assert_eq!(tombstone["op"], "delete");
        assert!(
            letters
                .iter()
                .any(|l| l["message_uuid"] == tombstone["message_uuid"]
                    && l["id"] == tombstone["id"])
        );
        assert!(tombstone.get("fejl_tekst").is_none(), "{tombstone}");
    }
    let statuses = export(&install, "statuses", &[]);
    assert!(statuses.iter().any(|s| s["op"] == "delete"));
    // Read from the start, a deleted thing is its tombstone only.
    let all = export(&install, "letters", &[]);
    assert_eq!(all.len(), letters.len());
    assert_eq!(
        all.iter().filter(|l| l["op"] == "delete").count(),
        final_letters
    );
}

#[test]
fn tombstones_are_kept_as_configured_and_a_reader_behind_them_is_told() {
    let install = Install::new("\n[retention]\nstatus_days = 30\ndeletions_days = 10\n");
    status(
        &install,
        &test_uuid(0xe3, 1),
        1,
        "2026-01-01T10:00:00.000Z",
        Status::DELIVERED,
    );
    status(
        &install,
        &test_uuid(0xe3, 2),
        2,
        "2026-01-01T10:00:00.000Z",
        Status::DELIVERED,
    );
    assert_eq!(outcome(&install.run(&["prune"])).0, 0);
    let tombstones = export(&install, "letters", &[]);
    assert_eq!(tombstones.len(), 2);
    // Kept while younger than deletions_days.
    assert!(
        outcome(&install.run(&["prune"]))
            .1
            .contains(", 0 tombstones")
    );
    age_tombstones(&install);
    let (_, stdout, _) = outcome(&install.run(&["prune"]));
    // Two letters, their two statuses and their two messages.
    assert!(stdout.contains(", 6 tombstones"), "{stdout}");
    // A reader that had not seen them would miss deletions: told so, and what to do.
    let (code, _, stderr) = outcome(&install.run(&["export", "letters", "--after", "1"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("position 1 is older than the deletions"),
        "{stderr}"
    );
    assert!(stderr.contains("--after 0"), "{stderr}");
    // From the start all is well (nothing is left).
    assert!(export(&install, "letters", &["--after", "0"]).is_empty());
}

#[test]
fn reprocess_tells_the_feed_of_what_it_derived_anew() {
    let install = Install::new("");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/envelopes");
    assert_eq!(outcome(&install.import(&examples)).0, 0);
    assert!(export(&install, "registrations", &[]).is_empty());
    let before = last_seq(&export(&install, "statuses", &[]), 0);
    install.append_config(TYPES);
    let (code, stdout, stderr) = outcome(&install.run(&["reprocess"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let registrations = export(&install, "registrations", &[]);
    assert_eq!(registrations.len(), 3, "{registrations:?}");
    assert!(
        registrations
            .iter()
            .all(|r| r["seq"].as_i64() > Some(before))
    );
}

#[test]
fn the_fields_are_those_of_the_json_schema_and_csv_has_them_all() {
    let schema: Json = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/export.schema.json"),
        )
        .expect("docs/export.schema.json"),
    )
    .expect("JSON");
    let install = Install::new(TYPES);
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/envelopes");
    assert_eq!(outcome(&install.import(&examples)).0, 0);
    for (feed, definition) in [
        ("letters", "letter"),
        ("statuses", "status"),
        ("registrations", "registration"),
    ] {
        let documented = &schema["$defs"][definition]["properties"];
        let objects = export(&install, feed, &[]);
        assert!(!objects.is_empty(), "{feed}");
        for object in &objects {
            for (name, _) in object.as_object().expect("object") {
                assert!(
                    documented.get(name).is_some(),
                    "{feed}: `{name}` not documented"
                );
            }
            for required in schema["$defs"][definition]["required"]
                .as_array()
                .expect("required")
            {
                let name = required.as_str().expect("name");
                assert!(object.get(name).is_some(), "{feed}: `{name}` missing");
            }
        }
        let (code, csv, _) = outcome(&install.run(&["export", feed, "--csv"]));
        assert_eq!(code, 0);
        let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
        assert_eq!(header[..5], ["seq", "kind", "op", "schema", "id"]);
        assert_eq!(header.last(), Some(&"deleted_at"));
        for name in &header {
            assert!(
                documented.get(*name).is_some(),
                "{feed}: CSV `{name}` not documented"
            );
        }
    }
}

#[test]
fn the_example_consumer_journalises_each_delivered_letter_once() {
    let install = Install::new("");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/envelopes");
    assert_eq!(outcome(&install.import(&examples)).0, 0);
    let journal = install.path("journal.jsonl");
    let run = || {
        let output = std::process::Command::new("/usr/bin/python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/journalise_delivered.py"))
            .args(["--config", install.config().to_str().expect("utf-8")])
            .args(["--journal", journal.to_str().expect("utf-8")])
            .args(["--beskedhent", crate::support::BIN, "--page", "2"])
            .env("BESKEDHENT_LOG", "warn")
            .output()
            .expect("python3 (scripts/test installs it)");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run();
    let delivered: Vec<String> = std::fs::read_to_string(&journal)
        .expect("journal")
        .lines()
        .map(|line| serde_json::from_str::<Json>(line).expect("json")["message_uuid"].to_string())
        .collect();
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    // A crash after a page was exported but before it was handled: the page is handled on
    // the next run, and nothing is journalised twice.
    status(
        &install,
        &test_uuid(0xe4, 1),
        1,
        "2026-03-05T10:00:00.000Z",
        Status::DELIVERED,
    );
    let page = format!("{}.page", journal.display());
    let (code, _, stderr) = outcome(&install.run(&[
        "export", "letters", "--cursor", "journal", "--output", &page,
    ]));
    assert_eq!(code, 0, "{stderr}");
    run();
    run();
    let lines = std::fs::read_to_string(&journal).expect("journal");
    assert_eq!(lines.lines().count(), 3, "{lines}");
    assert!(lines.contains(&test_uuid(0xe4, 1)), "{lines}");
    assert!(!Path::new(&page).exists());
}

#[test]
fn a_reader_that_starts_after_tombstones_were_deleted_pages_through_without_a_false_alarm() {
    let install = Install::new("\n[retention]\nstatus_days = 30\ndeletions_days = 10\n");
    for n in 0..6u64 {
        status(
            &install,
            &test_uuid(0xe4, n),
            n,
            if n < 2 {
                "2026-01-01T10:00:00.000Z"
            } else {
                "2099-01-01T10:00:00.000Z"
            },
            if n < 2 {
                Status::DELIVERED
            } else {
                Status::SENT
            },
        );
    }
    assert_eq!(outcome(&install.run(&["prune"])).0, 0);
    age_tombstones(&install);
    assert_eq!(outcome(&install.run(&["prune"])).0, 0);
    // A new cursor pages through in pages of one: no page is refused.
    let mut pages = 0;
    loop {
        let page = export(&install, "letters", &["--cursor", "fresh", "--limit", "1"]);
        if page.is_empty() {
            break;
        }
        pages += 1;
        assert!(pages < 10);
    }
    assert_eq!(pages, 4);
    // A cursor that falls behind tombstones deleted since is told, and started again as said.
    let (code, _, _) =
        outcome(&install.run(&["export", "letters", "--cursor", "late", "--limit", "1"]));
    assert_eq!(code, 0);
    status(
        &install,
        &test_uuid(0xe5, 1),
        90,
        "2026-01-01T10:00:00.000Z",
        Status::DELIVERED,
    );
    assert_eq!(outcome(&install.run(&["prune"])).0, 0);
    age_tombstones(&install);
    assert_eq!(outcome(&install.run(&["prune"])).0, 0);
    let (code, _, stderr) = outcome(&install.run(&["export", "letters", "--cursor", "late"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--after 0 --cursor late"), "{stderr}");
    let again = export(&install, "letters", &["--after", "0", "--cursor", "late"]);
    assert_eq!(again.len(), 4, "{again:?}");
    assert!(export(&install, "letters", &["--cursor", "late"]).is_empty());
}

#[test]
fn output_never_replaces_what_is_not_a_file_of_its_own() {
    let install = Install::new("");
    status(
        &install,
        &test_uuid(0xe6, 1),
        1,
        "2026-03-01T10:00:00.000Z",
        Status::SENT,
    );
    let fifo = install.path("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let link = install.path("link");
    std::os::unix::fs::symlink(install.path("elsewhere"), &link).unwrap();
    for (target, expected) in [
        (fifo.clone(), "is a FIFO"),
        (link.clone(), "is a symbolic link"),
        (
            install.path("replica.db"),
            "the replica or one of its own files",
        ),
        (
            install.path("replica.db-wal"),
            "the replica or one of its own files",
        ),
        (install.config(), "the configuration file"),
    ] {
        let (code, _, stderr) =
            outcome(&install.run(&["export", "letters", "--output", target.to_str().unwrap()]));
        assert_eq!(code, 1, "{target:?}: {stderr}");
        assert!(stderr.contains(expected), "{target:?}: {stderr}");
    }
    use std::os::unix::fs::FileTypeExt as _;
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        export(&install, "letters", &[]).len(),
        1,
        "the replica is whole"
    );
}

#[test]
fn status_shows_each_cursor_and_how_far_behind_it_is() {
    let install = Install::new("");
    let letter = test_uuid(0xe9, 1);
    status(
        &install,
        &letter,
        1,
        "2026-03-01T10:00:00.000Z",
        Status::SENT,
    );
    let (code, stdout, _) = outcome(&install.run(&["status"]));
    assert_eq!(code, 0);
    assert!(stdout.contains("change feed through seq 2\n"), "{stdout}");
    assert!(!stdout.contains("export cursor"), "{stdout}");
    export(&install, "statuses", &["--cursor", "journal"]);
    export(&install, "letters", &["--cursor", "esdh"]);
    // Two more statuses: two status changes, and the letter's change moved twice.
    status(
        &install,
        &letter,
        2,
        "2026-03-01T11:00:00.000Z",
        Status::RECEIVED,
    );
    status(
        &install,
        &letter,
        3,
        "2026-03-01T12:00:00.000Z",
        Status::DELIVERED,
    );
    let (code, stdout, _) = outcome(&install.run(&["status"]));
    assert_eq!(code, 0);
    assert!(stdout.contains("change feed through seq 6\n"), "{stdout}");
    assert!(
        stdout.contains("  export cursor `esdh` (letters): at 2, 1 change behind, moved 20"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  export cursor `journal` (statuses): at 1, 2 changes behind, moved 20"),
        "{stdout}"
    );
    let (code, stdout, _) = outcome(&install.run(&["status", "--json"]));
    assert_eq!(code, 0);
    let report: Json = serde_json::from_str(&stdout).expect("json");
    assert_eq!(report["feed"]["through_seq"], 6);
    assert_eq!(report["feed"]["cursors"][1]["name"], "journal");
    assert_eq!(report["feed"]["cursors"][1]["kind"], "status");
    assert_eq!(report["feed"]["cursors"][1]["behind"], 2);
    assert_eq!(report["feed"]["mirrors"], Json::Array(Vec::new()));
}

/// Puts the replica back as `backup` left it, as an operator restoring a backup would.
fn restore(install: &Install, backup: &Path) {
    for companion in ["replica.db-wal", "replica.db-shm"] {
        let _ = std::fs::remove_file(install.path(companion));
    }
    std::fs::copy(backup, install.db_path()).expect("restore");
}

#[test]
fn a_position_past_the_newest_change_is_refused_as_after_a_restored_backup() {
    let install = Install::new("");
    let letter = test_uuid(0xea, 1);
    status(
        &install,
        &letter,
        1,
        "2026-03-01T10:00:00.000Z",
        Status::SENT,
    );
    let backup = install.path("backup.db");
    let (code, _, stderr) = outcome(&install.run(&["backup", backup.to_str().expect("utf-8")]));
    assert_eq!(code, 0, "{stderr}");
    status(
        &install,
        &letter,
        2,
        "2026-03-01T11:00:00.000Z",
        Status::RECEIVED,
    );
    status(
        &install,
        &letter,
        3,
        "2026-03-01T12:00:00.000Z",
        Status::DELIVERED,
    );
    let read = export(&install, "statuses", &[]);
    assert_eq!(last_seq(&read, 0), 5);

    // The replica as it was at the backup: it gives positions 3 and on out again, for other
    // changes, which a reader at 5 would never see.
    restore(&install, &backup);
    let (code, stdout, stderr) = outcome(&install.run(&["export", "statuses", "--after", "5"]));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("position 5 is past the newest change of this replica (2)")
            && stderr.contains("(--after 0)"),
        "{stderr}"
    );
    status(
        &install,
        &test_uuid(0xea, 2),
        4,
        "2026-03-02T10:00:00.000Z",
        Status::SENT,
    );
    let (code, _, stderr) = outcome(&install.run(&["export", "statuses", "--after", "5"]));
    assert_eq!(code, 1, "5 is still past the newest change, 4: {stderr}");
    assert!(export(&install, "statuses", &["--after", "4"]).is_empty());
    assert_eq!(export(&install, "statuses", &["--after", "0"]).len(), 2);
}
