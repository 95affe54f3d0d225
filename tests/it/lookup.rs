//! `lookup` against a fake PostForespoerg (`crate::fake_postforespoerg`) and the fake STS: the
//! protocol (token exchange, headers, parameters), answers kept and not asked twice, failures
//! never taken for answers, 401 and 403, numbers checked before anything is sent, the feed
//! checked (swapped identifiers found, then repaired by `reprocess`), a bulk lookup killed and
//! resumed, its pace, and `forget`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::broker::certs;
use crate::fake_postforespoerg::{FakePostForespoerg, Reply};
use crate::fake_sts::FakeSts;
use crate::support::{Install, TYPES, outcome, value};

const A: &str = "0101701234";
const B: &str = "0202802345";
const COMPANY: &str = "12345678";

struct LookupTest {
    service: FakePostForespoerg,
    sts: FakeSts,
    install: Install,
}

impl LookupTest {
    fn new(lookup: &str) -> LookupTest {
        let service = FakePostForespoerg::start();
        let sts = FakeSts::start(Duration::from_secs(3600));
        let certs = certs();
        let install = Install::new(&format!(
            r#"{TYPES}
[sts]
url = "{sts}"
entity_id = "http://entityid.kombit.dk/service/bfo_modtag/2"
cvr = "29189846"
certificate = "{cert}"
private_key = "{key}"
ca_file = "{ca}"

[lookup]
url = "{service}"
ca_file = "{ca}"
{lookup}
"#,
            sts = sts.url(),
            cert = certs.path("client.pem").display(),
            key = certs.path("client.key").display(),
            ca = certs.path("ca.pem").display(),
            service = service.url(),
        ));
        LookupTest {
            service,
            sts,
            install,
        }
    }

    fn lookup(&self, args: &[&str]) -> (i32, String, String) {
        let mut all = vec!["lookup"];
        all.extend(args);
        outcome(&self.install.run(&all))
    }

    /// Answers kept (0 before the replica is made).
    fn rows(&self) -> i64 {
        self.install
            .db()
            .query_row("SELECT count(*) FROM registration_lookup", [], |row| {
                row.get(0)
            })
            .unwrap_or(0)
    }
}

#[test]
fn answers_are_shown_kept_and_not_asked_for_again() {
    let test = LookupTest::new("per_second = 50");
    test.service
        .reply(B, "digitalpost", Reply::Registered(false));
    let (code, stdout, stderr) = test.lookup(&[A, "020280-2345", COMPANY]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("{A}  digitalpost  registered")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{B}  digitalpost  not registered")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{COMPANY}  nemsms       registered")),
        "{stdout}"
    );
    assert_eq!(test.service.violations(), Vec::<String>::new());
    assert_eq!(test.service.questions().len(), 6);
    assert_eq!(test.service.exchanges(), 1, "one access token for all");
    assert_eq!(test.rows(), 6);
    let db = test.install.db();
    let kept: String = db
        .query_row(
            "SELECT party_type || ' ' || registered || ' ' || length(transaction_id)
             FROM registration_lookup WHERE party = ?1 AND channel = 'digitalpost'",
            [B],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(kept, "cpr 0 36");
    let known: String = db
        .query_row(
            "SELECT registered || ' ' || source FROM registration_known
             WHERE party = ?1 AND channel = 'digitalpost'",
            [B],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(known, "0 lookup");

    // Asked again within --max-age: the kept answers, nothing sent.
    let (code, stdout, _) = test.lookup(&["--json", A]);
    assert_eq!(code, 0);
    assert_eq!(test.service.questions().len(), 6);
    let objects: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("json"))
        .collect();
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0]["registered"], true);
    assert_eq!(objects[0]["source"], "earlier");
    // --max-age 0: asked again.
    let (code, stdout, _) = test.lookup(&["--csv", "--max-age", "0", A]);
    assert_eq!(code, 0);
    assert_eq!(test.service.questions().len(), 8);
    assert!(
        stdout.starts_with("party,party_type,channel,registered,"),
        "{stdout}"
    );

    // A token revoked half way: a new one is got and the question answered.
    let asked = test.service.questions().len();
    test.service.revoke_tokens_after(asked + 1);
    let (code, stdout, stderr) = test.lookup(&["--max-age", "0", A]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // Its own token, and a new one after the 401.
    assert_eq!(test.service.exchanges(), 4);
    assert_eq!(stdout.matches("  registered").count(), 2, "{stdout}");
}

#[test]
fn a_technical_failure_is_never_an_answer() {
    let test = LookupTest::new("per_second = 50\ntimeout_seconds = 1\nretries = 1");
    let cases = [
        ("0303903456", Reply::Status(500)),
        ("0404904567", Reply::Late(Duration::from_secs(3), true)),
        ("0505905678", Reply::NotBoolean),
        ("0606906789", Reply::Status(404)),
    ];
    let mut args = Vec::new();
    for (party, reply) in &cases {
        test.service.reply(party, "digitalpost", reply.clone());
        args.push(*party);
    }
    let (code, stdout, stderr) = test.lookup(&args);
    assert_eq!(code, 4, "{stdout}{stderr}");
    let failed: Vec<&str> = stdout.lines().filter(|l| l.contains("FAILED")).collect();
    assert_eq!(failed.len(), 4, "{stdout}");
    assert!(
        stdout.contains("HTTP 500") && stdout.contains("HTTP 404"),
        "{stdout}"
    );
    assert!(stdout.contains("not {\"result\": true|false}"), "{stdout}");
    assert!(stdout.contains("did not answer in time"), "{stdout}");
    // Only the NemSMS answers were kept.
    let kept: i64 = value(
        &test.install.db(),
        "SELECT count(*) FROM registration_lookup WHERE channel = 'digitalpost'",
    );
    assert_eq!(kept, 0);
    assert_eq!(test.rows(), 4);
    // A 500 is asked again (retries = 1), a 404 is not.
    let questions = test.service.questions();
    let asked = |party: &str| {
        questions
            .iter()
            .filter(|(p, c)| p == party && c == "digitalpost")
            .count()
    };
    assert_eq!(asked("0303903456"), 2);
    assert_eq!(asked("0606906789"), 1);
    // CPR numbers are masked in the log.
    for (party, _) in &cases {
        assert!(!stderr.contains(party), "{stderr}");
    }
}

#[test]
fn a_refusing_service_agreement_is_named_and_stops_the_rest() {
    let test = LookupTest::new("per_second = 50");
    test.service.state.lock().unwrap().token_status = Some(403);
    let (code, stdout, stderr) = test.lookup(&[A, B, COMPANY]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(
        stdout
            .contains("must name the entity id http://entityid.kombit.dk/service/postforespoerg/1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("stopped: the rest was not asked"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("FAILED").count(), 1, "{stdout}");
    assert_eq!(test.rows(), 0);
}

#[test]
fn numbers_are_checked_before_anything_is_sent() {
    let test = LookupTest::new("per_second = 50");
    let (code, stdout, stderr) = test.lookup(&["--csv", A, "01017012345", "abc2512489996"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    // On standard error, where a CSV on standard output is not spoiled.
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("argument 2") && stderr.contains("argument 3"),
        "{stderr}"
    );
    assert!(!stderr.contains("2512489996"), "masked: {stderr}");
    assert!(stderr.contains("nothing was asked"), "{stderr}");
    assert_eq!(test.service.exchanges(), 0);
    assert!(test.service.questions().is_empty());
    // The same for a file, naming its lines; a byte order mark (a list saved by a
    // spreadsheet) is no part of the first number; a FIFO is refused.
    let list = test.install.path("parties.txt");
    std::fs::write(&list, format!("\u{feff}{B}\n# numbers\n{A}\n\n12345\n")).unwrap();
    let (code, _, stderr) = test.lookup(&["--from", list.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("parties.txt line 5"), "{stderr}");
    assert!(!stderr.contains("line 1"), "{stderr}");
    let fifo = test.install.path("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (code, _, stderr) = test.lookup(&["--from", fifo.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not a regular file"), "{stderr}");
    assert!(test.service.questions().is_empty());
}

#[test]
fn verify_feed_finds_swapped_identifiers_and_reprocess_repairs_them() {
    let test = LookupTest::new("per_second = 50");
    let current = registrations(&test.install);
    assert_eq!(current.len(), 3, "{current:?}");
    // PostForespoerg agrees with the feed.
    for (party, channel, registered) in &current {
        test.service
            .reply(party, channel, Reply::Registered(*registered));
    }
    let (code, stdout, stderr) = test.lookup(&["--verify-feed"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("{0} of {0} answers agree", current.len())),
        "{stdout}"
    );

    // The configuration has registered and deregistered swapped: the feed says the opposite.
    let swapped = test
        .install
        .config_text()
        .replace("0f0e7a1c-1111", "0f0e7a1c-XXXX")
        .replace("0f0e7a1c-2222", "0f0e7a1c-1111")
        .replace("0f0e7a1c-XXXX", "0f0e7a1c-2222");
    test.install.write_config(&swapped);
    assert_eq!(outcome(&test.install.run(&["reprocess"])).0, 0);
    let (code, stdout, _) = test.lookup(&["--verify-feed", "--sample", "5"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("probably swapped"), "{stdout}");
    assert!(stdout.contains("beskedhent reprocess"), "{stdout}");
    // Repaired as it says.
    let repaired = test
        .install
        .config_text()
        .replace("0f0e7a1c-1111", "0f0e7a1c-XXXX")
        .replace("0f0e7a1c-2222", "0f0e7a1c-1111")
        .replace("0f0e7a1c-XXXX", "0f0e7a1c-2222");
    test.install.write_config(&repaired);
    assert_eq!(outcome(&test.install.run(&["reprocess"])).0, 0);
    let (code, stdout, _) = test.lookup(&["--verify-feed"]);
    assert_eq!(code, 0, "{stdout}");
}

/// Imports registrations of three parties told by their ObjektHandling only (no state in the
/// payload), two registered and one deregistered under the configuration; the feed's current
/// state of each: party, channel, registered.
fn registrations(install: &Install) -> Vec<(String, String, bool)> {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/envelopes/digitalpost-registered.xml"),
    )
    .unwrap();
    let start = template.find("<Beskeddata>").unwrap();
    let end = template.find("</Beskeddata>").unwrap() + "</Beskeddata>".len();
    let bare = format!("{}{}", &template[..start], &template[end..]);
    let input = install.mkdir("registrations");
    for (n, (party, handling)) in [(A, "1111"), (B, "1111"), ("0707907890", "2222")]
        .into_iter()
        .enumerate()
    {
        let envelope = bare
            .replace(
                "552b82f6-be3e-4c0a-9ef2-a4f04be03db0",
                &crate::support::test_uuid(0x7e, n as u64),
            )
            .replace("0101701234", party)
            .replace("0f0e7a1c-1111", &format!("0f0e7a1c-{handling}"));
        std::fs::write(input.join(format!("{n}.xml")), envelope).unwrap();
    }
    let (code, stdout, stderr) = outcome(&install.import(&input));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let db = install.db();
    let mut statement = db
        .prepare("SELECT party, channel, registered FROM registration_current")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn check_asks_postforespoerg_about_a_few_parties_of_the_feed() {
    let service = FakePostForespoerg::start();
    let test = crate::support::PullTest::new(Vec::new(), "");
    test.install.append_config(&format!(
        "\n[lookup]\nurl = \"{}\"\nca_file = \"{}\"\nper_second = 50\n",
        service.url(),
        certs().path("ca.pem").display()
    ));
    let current = registrations(&test.install);
    for (party, channel, registered) in &current {
        service.reply(party, channel, Reply::Registered(!registered));
    }
    let (code, stdout, stderr) = outcome(&test.install.run(&["check"]));
    assert_eq!(code, 0, "a disagreement is a warning: {stdout}{stderr}");
    assert!(
        stdout.contains("WARN  PostForespoerg disagrees with the registration feed about 3 of 3"),
        "{stdout}"
    );
    assert!(stdout.contains("look swapped"), "{stdout}");
    for (party, channel, registered) in &current {
        service.reply(party, channel, Reply::Registered(*registered));
    }
    let (code, stdout, _) = outcome(&test.install.run(&["check"]));
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("ok    PostForespoerg at https://localhost:"),
        "{stdout}"
    );
    service.state.lock().unwrap().token_status = Some(401);
    let (code, stdout, _) = outcome(&test.install.run(&["check"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAIL  PostForespoerg") && stdout.contains("must name the entity id"),
        "{stdout}"
    );
}

#[test]
fn a_bulk_lookup_killed_half_way_resumes_without_asking_twice_and_keeps_its_pace() {
    let test = LookupTest::new("per_second = 40");
    let list = test.install.path("parties.txt");
    let numbers: Vec<String> = (0..60).map(|n| format!("{:08}", 20_000_000 + n)).collect();
    std::fs::write(&list, numbers.join("\n")).unwrap();
    let started = Instant::now();
    let mut child = test
        .install
        .spawn(&["lookup", "--from", list.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while test.rows() < 30 {
        assert!(Instant::now() < deadline, "no answers kept");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (code, stdout, stderr) = test.lookup(&["--from", list.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(test.rows(), 120);
    let questions = test.service.questions();
    let distinct: std::collections::BTreeSet<_> = questions.iter().collect();
    assert_eq!(distinct.len(), 120);
    // At most the one in flight when it was killed was asked twice.
    assert!(questions.len() <= 121, "{}", questions.len());
    assert!(stdout.contains("answered earlier"), "{stdout}");
    // 40 a second at most: 120 questions take at least 119 / 40 s.
    assert!(started.elapsed() >= Duration::from_secs_f64(119.0 / 40.0));
}

#[test]
fn forget_removes_the_answers_about_a_party() {
    let test = LookupTest::new("per_second = 50");
    assert_eq!(test.lookup(&[A, B]).0, 0);
    assert_eq!(test.rows(), 4);
    let (code, stdout, stderr) = outcome(&test.install.run_with_input(&["forget"], A.as_bytes()));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("2 lookups deleted"), "{stdout}");
    let left: i64 = value(
        &test.install.db(),
        &format!("SELECT count(*) FROM registration_lookup WHERE party = '{A}'"),
    );
    assert_eq!(left, 0);
    assert_eq!(test.rows(), 2);
}

#[test]
fn answers_older_than_lookup_days_are_pruned() {
    let test = LookupTest::new("per_second = 50\n[retention]\nlookup_days = 30");
    assert_eq!(test.lookup(&[A]).0, 0);
    test.install
        .db()
        .execute_batch(&format!(
            "INSERT INTO registration_lookup
                 (party, party_type, channel, registered, asked_at, transaction_id)
             VALUES ('{B}', 'cpr', 'nemsms', 1, '2020-01-01T00:00:00.000Z', 'x')"
        ))
        .unwrap();
    let (code, stdout, stderr) = outcome(&test.install.run(&["prune"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(", 1 lookups"), "{stdout}");
    assert_eq!(test.rows(), 2);
}

#[test]
fn without_a_token_the_rest_is_not_asked() {
    let test = LookupTest::new("per_second = 50\nretries = 1");
    test.sts.state.lock().unwrap().refuse = Some((500, "down for maintenance".into()));
    let (code, stdout, stderr) = test.lookup(&[A, B, COMPANY]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert_eq!(stdout.matches("FAILED").count(), 1, "{stdout}");
    assert!(stdout.contains("no token from the STS"), "{stdout}");
    assert!(
        stdout.contains("stopped: the rest was not asked"),
        "{stdout}"
    );
    assert!(test.service.questions().is_empty());
    assert_eq!(test.rows(), 0);
}
