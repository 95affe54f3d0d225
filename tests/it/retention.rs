//! Retention: `prune` deletes what is older than its period (final letters, superseded
//! registrations, refused messages, runs, envelopes' bytes, from the files too) and keeps what
//! monitoring and the current state need; the refused copies of what it deletes go with it.

use crate::sample::{Status, padded, status_envelope_with};
use crate::support::{Install, TYPES, fixtures, outcome, rows, value};

#[test]
fn prune_takes_the_refused_copies_of_what_it_deletes() {
    let install = Install::new(&format!("max_message_bytes = 4096\n{TYPES}"));
    let dir = install.mkdir("in");
    let envelope = status_envelope_with(
        "e3000000-0000-4000-8000-000000000001",
        "e3000000-0000-4000-8000-000000000002",
        &Status::DELIVERED,
    );
    std::fs::write(dir.join("big.xml"), padded(envelope, 8000)).expect("write");
    let (code, stdout, _) = outcome(&install.import(&dir));
    assert_eq!(code, 3, "{stdout}");
    // A larger limit takes it in: the refused row points at its message.
    let config = install.config_text();
    install.write_config(
        &(config.replace("max_message_bytes = 4096", "max_message_bytes = 65536")
            + "\n[retention]\nstatus_days = 1\n"),
    );
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

/// A delivered status of 8000 bytes (over a limit of 4096, under one of 65536).
fn large_envelope() -> Vec<u8> {
    padded(
        status_envelope_with(
            "e4000000-0000-4000-8000-000000000001",
            "e4000000-0000-4000-8000-000000000101",
            &Status::DELIVERED,
        ),
        8000,
    )
}

/// How a refused copy came, made from the bytes stored later.
type RefusedCopy = fn(Vec<u8>) -> Vec<u8>;

/// The ways a refused copy may have come, compared with the bytes stored later: as they are,
/// with its BeskedId in upper case (which the refusal reads from the bytes as they are), or
/// with a byte order mark and white space around it.
const COPIES: [(&str, RefusedCopy); 3] = [
    ("the same bytes", |bytes| bytes),
    ("an upper-case BeskedId", |bytes| {
        String::from_utf8(bytes)
            .expect("utf-8")
            .replace(
                "e4000000-0000-4000-8000-000000000001",
                "E4000000-0000-4000-8000-000000000001",
            )
            .into_bytes()
    }),
    ("a byte order mark and white space", |bytes| {
        [&b"\xEF\xBB\xBF"[..], &bytes, b"\n\n"].concat()
    }),
];

/// A message refused under a small limit as `copy` made it, then its bytes stored in a run of
/// their own (without `reprocess`) under a larger one; then `prune` with `retention` at a day,
/// and `reprocess`. The refused copy, never resolved, goes; `kept_messages` stay, none with its
/// envelope's bytes.
fn refused_stored_and_pruned(retention: &str, kept_messages: i64) {
    for (how, copy) in COPIES {
        let install = Install::new(&format!("max_message_bytes = 4096\n{TYPES}"));
        let dir = install.mkdir("in");
        let refused = install.mkdir("refused");
        std::fs::write(dir.join("a.xml"), large_envelope()).expect("write");
        std::fs::write(refused.join("a.xml"), copy(large_envelope())).expect("write");
        let (code, stdout, _) = outcome(&install.import(&refused));
        assert_eq!(code, 3, "{how}: {stdout}");
        let config = install.config_text();
        install.write_config(
            &(config.replace("max_message_bytes = 4096", "max_message_bytes = 65536")
                + &format!("\n[retention]\n{retention} = 1\n")),
        );
        let (code, stdout, stderr) = outcome(&install.import(&dir));
        assert_eq!(code, 0, "{how}: {stdout}{stderr}");
        assert_eq!(
            value::<i64>(&install.db(), "SELECT count(*) FROM rejected"),
            1,
            "{how}"
        );
        let (code, stdout, stderr) = outcome(&install.run(&["prune"]));
        assert_eq!(code, 0, "{how}: {stdout}{stderr}");
        assert!(
            stdout.contains("1 refused messages"),
            "{retention}, {how}: {stdout}"
        );
        let (code, stdout, stderr) = outcome(&install.run(&["reprocess"]));
        assert_eq!(code, 0, "{how}: {stdout}{stderr}");
        let db = install.db();
        assert_eq!(
            value::<i64>(&db, "SELECT count(*) FROM rejected"),
            0,
            "{retention}, {how}"
        );
        assert_eq!(
            value::<i64>(&db, "SELECT count(*) FROM message"),
            kept_messages,
            "{retention}, {how}"
        );
        assert_eq!(
            value::<i64>(
                &db,
                "SELECT count(*) FROM message WHERE length(envelope) > 0"
            ),
            0,
            "{retention}, {how}"
        );
    }
}

#[test]
fn status_retention_takes_a_refused_copy_never_resolved_however_it_came() {
    refused_stored_and_pruned("status_days", 0);
}

#[test]
fn envelope_retention_takes_a_refused_copy_never_resolved_and_the_envelopes_bytes() {
    refused_stored_and_pruned("envelope_days", 1);
}

/// The fixtures, good and bad, imported into a replica.
fn fixtures_imported() -> Install {
    let install = Install::new(TYPES);
    outcome(&install.import(&fixtures().join("good")));
    outcome(&install.import(&fixtures().join("bad")));
    install
}

#[test]
fn prune_deletes_nothing_unless_a_retention_period_is_set() {
    let install = fixtures_imported();
    let (code, _, stderr) = outcome(&install.run(&["prune"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("sets no retention period"), "{stderr}");
}

/// [`fixtures_imported`] and pruned with every period a day: the fixtures are from 2026, so
/// all of them are old; so is every run until then, and a failed run the day after (rows aged
/// by hand). A message refused just before the prune is new.
struct Pruned {
    install: Install,
    /// Letters, final letters and parties with a registration, before.
    letters: i64,
    final_letters: i64,
    parties: i64,
    /// The last refused message that was made old.
    older: i64,
}

fn pruned() -> Pruned {
    let install = fixtures_imported();
    let db = install.db();
    let letters = value::<i64>(&db, "SELECT count(*) FROM letter");
    let final_letters = value::<i64>(&db, "SELECT count(*) FROM letter WHERE final = 1");
    let parties = value::<i64>(&db, "SELECT count(*) FROM registration_current");
    assert!(value::<i64>(&db, "SELECT count(*) FROM rejected") > 0);
    drop(db);
    install.append_config(
        "\n[retention]\nenvelope_days = 1\nstatus_days = 1\nregistration_history_days = 1\nrejected_days = 1\nrun_days = 1\n",
    );
    // A refused message from now is kept. (Told apart from the others by its row, not by its
    // path: the fixtures' own path may hold any word.)
    let older = value::<i64>(&install.db(), "SELECT max(id) FROM rejected");
    let fresh = install.mkdir("fresh");
    std::fs::write(fresh.join("x.xml"), "not xml").expect("write");
    outcome(&install.import(&fresh));
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
    Pruned {
        install,
        letters,
        final_letters,
        parties,
        older,
    }
}

#[test]
fn prune_deletes_final_letters_with_their_statuses_and_keeps_the_current_registration() {
    let pruned = pruned();
    let db = pruned.install.db();
    assert_eq!(
        value::<i64>(&db, "SELECT count(*) FROM letter"),
        pruned.letters - pruned.final_letters
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
        pruned.parties
    );
    assert_eq!(
        value::<i64>(&db, "SELECT count(*) FROM registration"),
        pruned.parties,
        "only the current registrations stay"
    );
}

#[test]
fn age_counts_from_a_messages_own_time_and_a_fresh_refusal_is_kept() {
    let pruned = pruned();
    let db = pruned.install.db();
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
            &format!(
                "SELECT id > {} AND origin LIKE '%x.xml' FROM rejected",
                pruned.older
            )
        ),
        ["1"]
    );
}

#[test]
fn dropped_envelopes_are_gone_from_the_files_not_only_from_the_rows() {
    let pruned = pruned();
    // The envelopes with a Dannelsestidspunkt (created_at) were old enough, and not one of
    // them is left (the element, that is: the schema names it in a comment).
    assert_eq!(
        pruned.install.occurrences("Dannelsestidspunkt>"),
        Vec::<String>::new()
    );
}

#[test]
fn old_runs_go_but_not_a_sources_newest_run_and_newest_success() {
    let pruned = pruned();
    // Monitoring needs them.
    assert_eq!(
        rows(&pruned.install.db(), "SELECT status FROM run ORDER BY id"),
        ["ok", "failed"]
    );
}

#[test]
fn a_second_prune_finds_nothing_to_remove() {
    let pruned = pruned();
    let (code, stdout, _) = outcome(&pruned.install.run(&["prune"]));
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("pruned: 0 envelopes dropped, 0 letters deleted (0 statuses), 0 superseded registrations, 0 refused messages, 0 runs"),
        "{stdout}"
    );
}
