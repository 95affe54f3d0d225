//! `forget`: a party (a CPR or CVR number) erased from the replica's rows and from its files'
//! bytes, however the number is written (in a file name, a payload, a letter id, refused
//! messages, spelt out in XML); what it keeps (the messages, so a copy received again is a
//! duplicate; the letters, under masked ids that stay apart); and what it refuses.

use crate::sample::{Status, padded, status_envelope_with};
use crate::support::{Install, TYPES, fixtures, outcome, rows, value};

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

/// A failed status whose error text is `fejl`.
fn failed(fejl: &str) -> Status<'_> {
    Status {
        fejl: Some(("3", fejl)),
        ..Status::FAILED
    }
}

/// A replica holding party 010170-1234 wherever it can be: in a file name (`message.origin`),
/// the fixtures' registrations and statuses, a status payload's error text only (once with a
/// no-break space), a letter id, and refused messages (by content and by file name); and
/// party 0202802345, from the fixtures.
fn party_everywhere() -> Install {
    let install = Install::new(TYPES);
    let good = fixtures().join("good");
    // A letter's status stored from a file whose name holds the number (`message.origin`).
    let named = install.mkdir("named");
    std::fs::copy(
        good.join("10-status-digital-received.xml"),
        named.join("status-0101701234.xml"),
    )
    .expect("copy");
    outcome(&install.import(&named));
    outcome(&install.import(&good));
    // A status whose base64 payload (only) names the party, in its error text; one written
    // with a no-break space, as word processors do; and one whose letter id (and so the
    // letter's key, its transmission and correlation ids) is the number.
    let payload_only = install.mkdir("payload");
    for (name, besked_id, letter, status) in [
        (
            "failed.xml",
            "e1000000-0000-4000-8000-0000000000b1",
            "e1000000-0000-4000-8000-0000000000b2",
            failed("Modtager 010170-1234 er fritaget"),
        ),
        (
            "nbsp.xml",
            "e1000000-0000-4000-8000-0000000000b4",
            "e1000000-0000-4000-8000-0000000000b5",
            failed("Modtager 010170\u{a0}1234 er fritaget"),
        ),
        (
            "letter.xml",
            "e1000000-0000-4000-8000-0000000000b3",
            "010170-1234",
            Status::SENT,
        ),
    ] {
        std::fs::write(
            payload_only.join(name),
            status_envelope_with(besked_id, letter, &status),
        )
        .expect("write");
    }
    outcome(&install.import(&payload_only));
    // A refused message that names the party, one whose file name does, and one that does
    // not.
    let refused = install.mkdir("refused");
    std::fs::write(refused.join("0101701234-broken.xml"), "<Haendelsesbesked>").expect("write");
    std::fs::write(
        refused.join("a.xml"),
        "<Haendelsesbesked><cpr>010170-1234</cpr>",
    )
    .expect("write");
    std::fs::write(refused.join("b.xml"), "<Haendelsesbesked><x>other</x>").expect("write");
    outcome(&install.import(&refused));
    for form in [
        "0101701234",
        "010170-1234",
        "010170\u{a0}1234",
        "0202802345",
    ] {
        assert!(!install.occurrences(form).is_empty(), "{form} is stored");
    }
    install
}

/// [`party_everywhere`] after `forget 010170-1234`, and how many refused messages it held
/// before.
fn forgotten() -> (Install, i64) {
    let install = party_everywhere();
    let rejected_before = value::<i64>(&install.db(), "SELECT count(*) FROM rejected");
    let (code, stdout, stderr) = outcome(&install.run(&["forget", "010170-1234"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("registrations deleted") && !stdout.contains("1234"),
        "{stdout}"
    );
    (install, rejected_before)
}

#[test]
fn forget_erases_a_party_from_the_files_bytes() {
    let (install, rejected_before) = forgotten();
    // Gone from the database file and its WAL, in every form...
    assert_eq!(install.occurrences("0101701234"), Vec::<String>::new());
    assert_eq!(install.occurrences("010170-1234"), Vec::<String>::new());
    assert_eq!(
        install.occurrences("010170\u{a0}1234"),
        Vec::<String>::new()
    );
    // ...while everyone else is still there.
    assert!(!install.occurrences("0202802345").is_empty());
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
}

#[test]
fn a_number_only_in_a_payload_or_a_letter_id_is_masked_and_reprocess_keeps_it_so() {
    let (install, _) = forgotten();
    let db = install.db();
    // The status named it only in its payload: its envelope is dropped, its error text masked.
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
    // `reprocess` does not bring any of it back.
    outcome(&install.run(&["reprocess"]));
    assert_eq!(install.occurrences("010170-1234"), Vec::<String>::new());
    assert_eq!(
        value::<i64>(
            &db,
            "SELECT count(*) FROM message WHERE origin LIKE '%status-**********#%.xml'"
        ),
        1
    );
}

#[test]
fn what_forget_erased_does_not_come_back_when_received_again() {
    let (install, _) = forgotten();
    // The messages stay (so a copy received again is still a duplicate), without envelope.
    let pruned = value::<i64>(
        &install.db(),
        "SELECT count(*) FROM message WHERE envelope_pruned_at IS NOT NULL AND length(envelope) = 0",
    );
    assert!(pruned >= 3, "{pruned}");
    // The same envelopes delivered again are duplicates: nothing erased comes back, not even
    // as a refused copy.
    let (_, stdout, _) = outcome(&install.import(&fixtures().join("good")));
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
    assert_eq!(install.occurrences("0101701234"), Vec::<String>::new());
}

#[test]
fn forget_fails_while_another_process_reads_and_finishes_the_job_when_run_again() {
    let install = party_everywhere();
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
    assert_eq!(install.occurrences("0202802345"), Vec::<String>::new());
}

#[test]
fn forget_refuses_a_malformed_number_an_impossible_date_and_the_installations_own_cvr() {
    let install = Install::new(TYPES);
    outcome(&install.import(&fixtures().join("good")));
    // A number of the wrong form is a usage error (exit 2).
    for party in ["12345", "", "0101701234x"] {
        let (code, _, stderr) = outcome(&install.run(&["forget", party]));
        assert_eq!(code, 2, "{party}: {stderr}");
        assert!(stderr.contains("is not a CPR number"), "{stderr}");
    }
    let (code, _, stderr) = outcome(&install.run(&["forget", "3201701234"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("must be a date"), "{stderr}");
    // The installation's own CVR is in every envelope: refused, not a wipe.
    install.append_config("\n[[feed]]\nname = \"status\"\ndueslag = \"x\"\ncvr = \"55133018\"\n");
    let (code, _, stderr) = outcome(&install.run(&["forget", "55133018"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("own CVR number"), "{stderr}");
}

#[test]
fn forget_of_a_number_stored_nowhere_changes_nothing_and_says_so() {
    let install = Install::new(TYPES);
    outcome(&install.run(&["init"]));
    let (code, stdout, _) = outcome(&install.run(&["forget", "0101701235"]));
    assert_eq!(code, 0);
    assert!(stdout.starts_with("nothing in "), "{stdout}");
    assert!(!stdout.contains("1235"), "{stdout}");
}

/// The ids of the statuses of [`forgotten_however_written`].
fn uuid(n: u32) -> String {
    format!("e2000000-0000-4000-8000-{n:012}")
}

/// A replica after `forget 0101701234` and `forget 0202802345`, which it held written in every
/// way: two letters whose ids hold the two numbers (1, 2); the first number in error texts
/// that only a reader of the XML sees (3, 4, 5, 9) or in base64 copied into the text (10); in
/// refused messages (broken base64, 7; over the size limit, 8); and an eleven-digit number that
/// is someone else's (6).
fn forgotten_however_written() -> Install {
    let install = Install::new(TYPES);
    let dir = install.mkdir("in");
    let write = |name: &str, bytes: Vec<u8>| std::fs::write(dir.join(name), bytes).expect("write");
    write(
        "a.xml",
        status_envelope_with(&uuid(1), "brev-0101701234", &Status::SENT).into(),
    );
    write(
        "b.xml",
        status_envelope_with(&uuid(2), "brev-0202802345", &Status::SENT).into(),
    );
    for (n, fejl) in [
        (3, "Modtager 01017&#48;1234"),
        (4, "Modtager 0101<!-- x -->701234"),
        (5, "Modtager <![CDATA[0101]]><![CDATA[701234]]>"),
        (9, "Modtager 0101<b/>701234"),
        // Base64 of "cpr 0101701234", copied into the text as it is.
        (10, "Svar Y3ByIDAxMDE3MDEyMzQ="),
        (6, "Konto 01017012345"),
    ] {
        write(
            &format!("{n}.xml"),
            status_envelope_with(&uuid(n), &uuid(100 + n), &failed(fejl)).into(),
        );
    }
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
    let (code, stdout, stderr) = outcome(&install.import(&dir));
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stdout.contains("8 new") && stdout.contains("2 rejected"),
        "{stdout}"
    );
    for party in ["0101701234", "0202802345"] {
        let (code, stdout, stderr) = outcome(&install.run(&["forget", party]));
        assert_eq!(code, 0, "{stdout}{stderr}");
    }
    install
}

#[test]
fn two_letters_whose_ids_held_two_numbers_stay_two_letters() {
    let install = forgotten_however_written();
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
}

#[test]
fn forget_finds_the_number_however_the_xml_writes_it_and_leaves_eleven_digits_alone() {
    let install = forgotten_however_written();
    let db = install.db();
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
    // `reprocess` cannot bring any of it back.
    outcome(&install.run(&["reprocess"]));
    db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    for form in ["01017&#48;1234", "0101<!-- x -->701234", "0202802345"] {
        assert_eq!(install.occurrences(form), Vec::<String>::new(), "{form}");
    }
    // The party's ten digits are left only inside the eleven.
    assert!(!install.occurrences("01017012345").is_empty());
    assert_eq!(
        install.occurrences("0101701234"),
        install.occurrences("01017012345")
    );
}

#[test]
fn forget_takes_the_refused_messages_that_hold_the_number_however_broken() {
    let install = forgotten_however_written();
    assert_eq!(
        value::<i64>(&install.db(), "SELECT count(*) FROM rejected"),
        0
    );
}

#[test]
fn a_text_that_held_the_number_only_encoded_is_erased_whole() {
    let install = forgotten_however_written();
    assert_eq!(
        untagged(rows(
            &install.db(),
            "SELECT substr(fejl_tekst, 1, 27) FROM print_status WHERE besked_id = 'e2000000-0000-4000-8000-000000000010'"
        )),
        ["[erased by forget]#TAG"]
    );
}
