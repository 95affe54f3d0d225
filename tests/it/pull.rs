//! `sync`, `daemon` and `check` against a real RabbitMQ (TLS, client certificates, EXTERNAL)
//! and a fake STS with mutual TLS: draining feeds, surviving kills, restarts and expiring
//! tokens, refusals and operator mistakes said plainly without acknowledging anything, memory
//! that stays flat, notifications from a sync, and the credentials' own safety.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::broker::tls::{self, ClientCertificates, Stream};
use crate::broker::{self, Broker, certs};
use crate::fake_sts::FakeSts;
use crate::sample::padded;
use crate::support::{
    Install, LocalUser, NOTIFY_SCRIPT, PullTest, ends_soon, envelopes, failed_letter_envelope,
    fixture_files, outcome, pull_config, queue_name, rows, run_watched, sent, sent_payload, signal,
    status_envelope, test_uuid, value, wait_for, wait_for_commits, write_notify_script,
};

/// The fixtures queued to two feeds of their own (statuses to `status`, each published twice;
/// registrations to `registrations`) and synced once.
struct TwoFeeds {
    broker: &'static Broker,
    sts: FakeSts,
    status_queue: String,
    registration_queue: String,
    statuses: Vec<Vec<u8>>,
    registrations: Vec<Vec<u8>>,
    install: Install,
    stdout: String,
    stderr: String,
}

fn two_feeds_synced() -> TwoFeeds {
    let broker = broker::shared();
    let sts = FakeSts::start(Duration::from_secs(3600));
    let (status_queue, registration_queue) = (queue_name(), queue_name());
    let (registrations, statuses): (Vec<_>, Vec<_>) = fixture_files("good")
        .into_iter()
        .partition(|bytes| String::from_utf8_lossy(bytes).contains("0f0e7a1c-"));
    broker.fill(&status_queue, statuses.iter().chain(&statuses).cloned());
    broker.fill(&registration_queue, registrations.iter().cloned());
    let install = Install::new(&pull_config(
        broker,
        &sts,
        &[
            ("status", &status_queue),
            ("registrations", &registration_queue),
        ],
        "client",
        "",
    ));
    let (code, stdout, stderr) = outcome(&install.run(&["sync"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    TwoFeeds {
        broker,
        sts,
        status_queue,
        registration_queue,
        statuses,
        registrations,
        install,
        stdout,
        stderr,
    }
}

#[test]
fn sync_drains_every_feed_into_the_replica() {
    let feeds = two_feeds_synced();
    let stdout = &feeds.stdout;
    let distinct_statuses = feeds.statuses.len() as i64 - 1; // one fixture duplicates another's BeskedId
    assert!(
        stdout.contains(&format!(
            "feed status: {distinct_statuses} new, {} duplicates, 0 rejected",
            feeds.statuses.len() as i64 + 1
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "feed registrations: {} new, 0 duplicates",
            feeds.registrations.len()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("drained"), "{stdout}");
    assert_eq!(feeds.broker.depth(&feeds.status_queue), 0);
    assert_eq!(feeds.broker.depth(&feeds.registration_queue), 0);
    let db = feeds.install.db();
    assert_eq!(
        value::<i64>(&db, "SELECT count(*) FROM message"),
        distinct_statuses + feeds.registrations.len() as i64
    );
    assert_eq!(
        rows(
            &db,
            "SELECT source, messages, run_status FROM cursor ORDER BY source"
        ),
        [
            format!("registrations|{}|ok", feeds.registrations.len()),
            format!("status|{distinct_statuses}|ok")
        ]
    );
    // A second run finds nothing and changes nothing.
    let (code, stdout, _) = outcome(&feeds.install.run(&["sync"]));
    assert_eq!(code, 0);
    assert!(
        stdout.contains("feed status: 0 new, 0 duplicates, 0 rejected"),
        "{stdout}"
    );
}

#[test]
fn a_synced_message_keeps_its_bytes_its_origin_and_its_letters_latest_status() {
    let feeds = two_feeds_synced();
    let db = feeds.install.db();
    assert_eq!(
        value::<String>(
            &db,
            "SELECT event FROM print_status_latest WHERE message_uuid = 'c0000000-0000-4000-8000-00000000000e'"
        ),
        "Fejlet"
    );
    assert_eq!(
        value::<String>(
            &db,
            "SELECT origin FROM message WHERE besked_id = 'bd12c645-de98-453a-ac80-f58a76942eda'"
        ),
        format!("amqp:{} message-id=transaction-0", feeds.status_queue)
    );
    // The received bytes are kept exactly.
    let stored: Vec<u8> = value(
        &db,
        "SELECT envelope FROM message WHERE besked_id = 'bd12c645-de98-453a-ac80-f58a76942eda'",
    );
    assert_eq!(stored, feeds.statuses[0]);
}

#[test]
fn sync_asks_the_sts_once_per_cvr_as_documented_and_never_logs_the_token() {
    let feeds = two_feeds_synced();
    let requests = feeds.sts.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let certificate = std::fs::read_to_string(certs().path("client.pem")).expect("pem");
    let der_base64: String = certificate
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    assert_eq!(requests[0]["UseKey"], der_base64.as_str());
    assert_eq!(requests[0]["Anvenderkontekst"]["Cvr"], "12345678");
    assert_eq!(
        requests[0]["AppliesTo"]["EndpointReference"]["Address"],
        "http://entityid.kombit.dk/service/bfo_modtag/2"
    );
    let stderr = &feeds.stderr;
    assert!(
        !stderr.contains("saml:Assertion") && !stderr.contains("fake-sts"),
        "{stderr}"
    );
}

#[test]
fn poison_and_hostile_messages_are_kept_acknowledged_and_the_run_goes_on() {
    let bad = fixture_files("bad");
    let mut bodies = bad.clone();
    bodies.extend(envelopes(0x51, 10));
    let test = PullTest::new(bodies, "");
    let (code, stdout, stderr) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "feed status: 10 new, 0 duplicates, {} rejected",
            bad.len()
        )),
        "{stdout}"
    );
    assert_eq!(
        test.depth(),
        0,
        "poison messages are acknowledged once stored"
    );
    let db = test.install.db();
    let mut raws: Vec<Vec<u8>> = db
        .prepare("SELECT raw FROM rejected ORDER BY id")
        .expect("query")
        .query_map([], |row| row.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("raw");
    let mut expected = bad;
    raws.sort();
    expected.sort();
    assert_eq!(
        raws, expected,
        "every refused message is kept byte for byte"
    );
    assert!(
        stderr.contains("rejected: refused: the document contains a DOCTYPE"),
        "{stderr}"
    );
}

#[test]
fn prefetch_of_one_still_drains_promptly() {
    // With a one-second flush interval, waiting for a batch to fill would take 200 s.
    let test = PullTest::new(
        envelopes(0x61, 200),
        "prefetch = 1\nflush_interval_ms = 1000\n",
    );
    let started = Instant::now();
    let (code, stdout, stderr) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("feed status: 200 new"), "{stdout}");
    assert_eq!(test.depth(), 0);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn sync_killed_mid_run_loses_and_doubles_nothing() {
    let test = PullTest::new(envelopes(0x71, 6000), "batch_size = 200\n");
    let install = &test.install;
    let mut child = install.spawn(&["sync"]);
    wait_for_commits(install, 1, &mut child);
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let stored: i64 = value(&install.db(), "SELECT count(*) FROM message");
    assert!(stored < 6000, "killed too late to test anything");
    assert_eq!(
        value::<String>(&install.db(), "PRAGMA integrity_check"),
        "ok"
    );

    let (code, stdout, stderr) = outcome(&install.run(&["sync"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let db = install.db();
    assert_eq!(value::<i64>(&db, "SELECT count(*) FROM message"), 6000);
    assert_eq!(
        value::<i64>(&db, "SELECT count(DISTINCT besked_id) FROM message"),
        6000
    );
    assert_eq!(value::<i64>(&db, "SELECT count(*) FROM print_status"), 6000);
    assert_eq!(test.depth(), 0);
}

#[test]
fn broker_restart_mid_run_is_survived() {
    let broker = Broker::start();
    let sts = FakeSts::start(Duration::from_secs(3600));
    let queue = queue_name();
    broker.fill(&queue, envelopes(0x81, 4000));
    let install = Install::new(&pull_config(
        &broker,
        &sts,
        &[("status", &queue)],
        "client",
        "batch_size = 50\nprefetch = 50\nretries = 10\nretry_backoff_ms = 500\n",
    ));
    let mut child = install.spawn(&["sync"]);
    wait_for_commits(&install, 1, &mut child);
    broker.restart();
    let output = child.wait_with_output().expect("sync ends");
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("reconnect"), "{stdout}");
    let db = install.db();
    assert_eq!(value::<i64>(&db, "SELECT count(*) FROM message"), 4000);
    assert_eq!(broker.depth(&queue), 0);
    broker.stop();
}

#[test]
fn token_expiring_mid_run_is_renewed() {
    let test = PullTest::with(
        FakeSts::start(Duration::from_secs(4)),
        "client",
        envelopes(0x91, 10),
        "drain_check_ms = 2500\n",
    );
    // The default refresh_before_seconds (120) is longer than these tokens live: they are
    // renewed at half their life instead of in a loop.
    // Keep messages coming for about 6 s, longer than a token lives.
    let child = test.install.spawn(&["sync"]);
    for round in 0..12 {
        std::thread::sleep(Duration::from_millis(500));
        test.broker.fill(&test.queue, envelopes(0xa0 + round, 5));
    }
    let output = child.wait_with_output().expect("sync ends");
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        value::<i64>(&test.install.db(), "SELECT count(*) FROM message"),
        70
    );
    let tokens = test.sts.requests().len();
    assert!((2..=8).contains(&tokens), "tokens requested: {tokens}");
    assert!(stderr.contains("token about to expire"), "{stderr}");
    assert_eq!(test.depth(), 0);
}

#[test]
fn two_runs_never_pull_the_same_feed() {
    let test = PullTest::new(envelopes(0xb1, 3000), "");
    let install = &test.install;
    install.run(&["init"]);

    // While another holder has the feed's lock, a run leaves the feed alone and says why.
    let lock =
        beskedhent::pull::lock::FeedLock::acquire(&install.db_path(), "status").expect("lock");
    let (code, stdout, _) = outcome(&install.run(&["sync"]));
    assert_eq!(code, 5, "{stdout}");
    assert!(
        stdout.contains("feed `status` is being synced by another beskedhent"),
        "{stdout}"
    );
    assert_eq!(test.depth(), 3000);
    drop(lock);

    // Two real runs at once: every message once, queue empty.
    let (first, second) = (install.spawn(&["sync"]), install.spawn(&["sync"]));
    let codes: Vec<i32> = [first, second]
        .into_iter()
        .map(|child| {
            child
                .wait_with_output()
                .expect("ends")
                .status
                .code()
                .unwrap_or(-1)
        })
        .collect();
    assert!(
        codes.iter().all(|code| *code == 0 || *code == 5),
        "{codes:?}"
    );
    assert!(codes.contains(&0), "{codes:?}");
    let db = install.db();
    assert_eq!(value::<i64>(&db, "SELECT count(*) FROM message"), 3000);
    assert_eq!(test.depth(), 0);
}

/// Five messages queued for an installation that pulls them with the certificate `cert`
/// (`client`, `rogue`, `stranger`, `expired`) from `sts`: for failures before anything is
/// consumed.
fn five_queued(sts: FakeSts, cert: &str) -> PullTest {
    PullTest::with(sts, cert, envelopes(0xc1, 5), "")
}

#[test]
fn an_sts_refusal_is_said_plainly_and_acknowledges_nothing() {
    let sts = FakeSts::start(Duration::from_secs(3600));
    sts.state.lock().expect("lock").refuse =
        Some((400, "Certifikatet er ikke tilknyttet CVR".into()));
    let test = five_queued(sts, "client");
    let (code, stdout, stderr) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(
        stdout.contains("FAILED: the STS refused the token request (HTTP 400, code 3017): Certifikatet er ikke tilknyttet CVR"),
        "{stdout}"
    );
    let (code, check, _) = outcome(&test.install.run(&["check"]));
    assert_eq!(code, 1, "{check}");
    assert!(
        check.contains("FAIL  token for CVR 12345678: the STS refused"),
        "{check}"
    );
    assert_eq!(test.depth(), 5, "nothing was acknowledged");
}

#[test]
fn a_certificate_from_another_ca_is_refused_by_the_sts_handshake() {
    let test = five_queued(FakeSts::start(Duration::from_secs(3600)), "rogue");
    let (code, stdout, stderr) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(
        stdout.contains("FAILED: cannot reach the STS at")
            && stdout.contains("the STS refused the TLS handshake"),
        "{stdout}"
    );
    assert!(test.sts.requests().is_empty());
    assert_eq!(test.depth(), 5, "nothing was acknowledged");
}

#[test]
fn a_login_the_broker_refuses_is_tried_once_more_with_a_fresh_token_then_said_plainly() {
    // The broker's EXTERNAL knows no such user.
    let test = five_queued(FakeSts::start(Duration::from_secs(3600)), "stranger");
    let (code, stdout, stderr) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(
        stdout.contains("refused the login")
            && stdout.contains("(with a fresh token); check that the certificate's organisation"),
        "{stdout}"
    );
    assert_eq!(test.sts.requests().len(), 2);
    assert_eq!(test.depth(), 5, "nothing was acknowledged");
}

#[test]
fn an_expired_certificate_is_refused_before_anything_is_sent() {
    let test = five_queued(FakeSts::start(Duration::from_secs(3600)), "expired");
    let (code, _, stderr) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("expired on 2021-01-01; renew the function certificate"),
        "{stderr}"
    );
    assert_eq!(test.depth(), 5, "nothing was acknowledged");
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let test = five_queued(FakeSts::start(Duration::from_secs(3600)), "client");
    test.install.replace_in_config("client.key", "stranger.key");
    let (code, _, stderr) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the private key does not belong to the certificate"),
        "{stderr}"
    );
    assert_eq!(test.depth(), 5, "nothing was acknowledged");
}

#[test]
fn check_reports_a_working_setup_without_consuming() {
    let test = PullTest::new(envelopes(0xd1, 3), "");
    let (code, stdout, stderr) = outcome(&test.install.run(&["check"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("ok    certificate and key"), "{stdout}");
    assert!(stdout.contains("days left)"), "{stdout}");
    assert!(stdout.contains("ok    token from"), "{stdout}");
    assert!(
        stdout.contains("ok    AMQP login to amqps://localhost"),
        "{stdout}"
    );
    assert_eq!(test.depth(), 3);
}

#[test]
fn pkcs12_credentials_work() {
    let test = PullTest::new(envelopes(0xe1, 5), "");
    let certs = certs();
    test.install.replace_in_config(
        &format!(
            "certificate = \"{}\"\nprivate_key = \"{}\"",
            certs.path("client.pem").display(),
            certs.path("client.key").display()
        ),
        &format!("pkcs12 = \"{}\"", certs.path("client.p12").display()),
    );
    let output = test
        .install
        .run_with_env(&["sync"], &[("BESKEDHENT_PKCS12_PASSWORD", "p12-secret")]);
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("feed status: 5 new"), "{stdout}");

    let (code, _, stderr) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("BESKEDHENT_PKCS12_PASSWORD"), "{stderr}");
}

#[test]
fn daemon_runs_passes_on_schedule_and_stops_on_sigterm() {
    let test = PullTest::new(envelopes(0xf1, 20), "");
    let install = &test.install;
    install.append_config("\n[schedule]\ncron = \"* * * * * *\"\n");
    let mut child = install.spawn(&["daemon"]);
    wait_for_commits(install, 20, &mut child);
    test.broker.fill(&test.queue, envelopes(0xf3, 5));
    wait_for_commits(install, 25, &mut child);
    signal(&child, libc::SIGTERM);
    let output = child.wait_with_output().expect("daemon ends");
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("pass finished"), "{stderr}");
    assert!(stderr.contains("daemon stopped"), "{stderr}");
    // No chatter from the scheduler library.
    assert!(
        !stderr.contains("Uninited") && !stderr.contains("Job creator"),
        "{stderr}"
    );
    assert_eq!(test.depth(), 0);
}

#[test]
fn sigterm_commits_acknowledges_and_exits_cleanly() {
    let test = PullTest::new(envelopes(0x1f1, 8000), "batch_size = 100\nprefetch = 100\n");
    let install = &test.install;
    let mut child = install.spawn(&["sync"]);
    wait_for_commits(install, 1, &mut child);
    signal(&child, libc::SIGTERM);
    let output = child.wait_with_output().expect("sync ends");
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 130, "{stdout}{stderr}");
    assert!(stdout.contains("interrupted"), "{stdout}");
    let db = install.db();
    let stored: i64 = value(&db, "SELECT count(*) FROM message");
    assert!(stored > 0 && stored < 8000, "{stored}");
    // Everything stored was acknowledged, nothing else was.
    assert_eq!(test.depth() as i64, 8000 - stored);
    assert_eq!(
        value::<String>(&db, "SELECT run_status FROM cursor"),
        "interrupted"
    );
    drop(db);
    let (code, stdout, _) = outcome(&install.run(&["sync"]));
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains(&format!("{} new, 0 duplicates", 8000 - stored)),
        "{stdout}"
    );
}

/// Plays an AMQP server up to the login on `stream`: reads the protocol header, offers
/// EXTERNAL and PLAIN in `Connection.Start`, and returns the header, and the mechanism and
/// response of the client's `Connection.StartOk`.
async fn read_start_ok(mut stream: Stream) -> (Vec<u8>, String, Vec<u8>) {
    let mut header = [0u8; 8];
    stream
        .read_exact(&mut header)
        .await
        .expect("protocol header");
    // Connection.Start: version 0-9, no server properties, mechanisms, locales.
    let mut payload = vec![0, 10, 0, 10, 0, 9, 0, 0, 0, 0];
    for text in ["EXTERNAL PLAIN", "en_US"] {
        payload.extend_from_slice(&(text.len() as u32).to_be_bytes());
        payload.extend_from_slice(text.as_bytes());
    }
    let mut frame = vec![1, 0, 0];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    frame.push(0xCE);
    stream.write_all(&frame).await.expect("send Start");
    // Connection.StartOk: properties table, mechanism, response, locale.
    let mut head = [0u8; 7];
    stream.read_exact(&mut head).await.expect("frame header");
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
    let mut body = vec![0u8; size + 1];
    stream.read_exact(&mut body).await.expect("frame body");
    let mut at = 4; // class and method
    let table = u32::from_be_bytes(body[at..at + 4].try_into().expect("4")) as usize;
    at += 4 + table;
    let mechanism_len = body[at] as usize;
    let mechanism = String::from_utf8_lossy(&body[at + 1..at + 1 + mechanism_len]).into_owned();
    at += 1 + mechanism_len;
    let response_len = u32::from_be_bytes(body[at..at + 4].try_into().expect("4")) as usize;
    let response = body[at + 4..at + 4 + response_len].to_vec();
    (header.to_vec(), mechanism, response)
}

/// The SASL EXTERNAL response on the wire is exactly the decoded assertion from the STS. The
/// test broker ignores it, so a small fake AMQP server reads the protocol header and
/// `Connection.StartOk` off the TLS connection instead.
#[test]
fn external_response_on_the_wire_is_the_assertion() {
    let (seen_sender, seen) = std::sync::mpsc::channel::<(Vec<u8>, String, Vec<u8>)>();
    let fake_amqp = tls::serve(ClientCertificates::NotAsked, move |stream| {
        let seen = seen_sender.clone();
        async move {
            let _ = seen.send(read_start_ok(stream).await);
        }
    });
    let broker = broker::shared();
    let sts = FakeSts::start(Duration::from_secs(3600));
    let config = pull_config(
        broker,
        &sts,
        &[("status", &queue_name())],
        "client",
        "retries = 0\n",
    )
    .replace(
        &broker.url(),
        &format!("amqps://localhost:{}/BF", fake_amqp.port),
    );
    let install = Install::new(&config);
    let (code, stdout, _) = outcome(&install.run(&["sync"]));
    assert_eq!(
        code, 4,
        "the fake server never completes the login: {stdout}"
    );
    let (header, mechanism, response) = seen
        .recv_timeout(Duration::from_secs(30))
        .expect("StartOk seen");
    assert_eq!(header, b"AMQP\x00\x00\x09\x01");
    assert_eq!(mechanism, "EXTERNAL");
    let issued = sts.state.lock().expect("lock").issued.clone();
    assert_eq!(issued.len(), 1);
    assert_eq!(String::from_utf8(response).expect("UTF-8"), issued[0]);
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn a_broker_that_stays_away_ends_the_feed_after_the_retries() {
    let test = PullTest::new(Vec::new(), "retries = 2\n");
    let closed = closed_port();
    test.install.replace_in_config(
        &test.broker.url(),
        &format!("amqps://localhost:{closed}/BF"),
    );
    let (code, stdout, stderr) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(
        stdout.contains("FAILED:") && stdout.contains("gave up after 2 reconnects"),
        "{stdout}"
    );
    assert_eq!(stderr.matches("reconnecting in").count(), 2, "{stderr}");
    assert_eq!(
        rows(
            &test.install.db(),
            "SELECT run_status, run_error IS NOT NULL FROM cursor"
        ),
        ["failed|1"]
    );
}

#[test]
fn fetch_by_basic_get_drains_with_the_same_guarantees() {
    let mut bodies = envelopes(0xe7, 1200);
    bodies.push(b"<not-xml".to_vec());
    bodies.push(bodies[0].clone());
    let test = PullTest::new(bodies, "fetch = \"get\"\nbatch_size = 100\n");
    let (code, stdout, stderr) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stdout.contains("feed status: 1200 new, 1 duplicates, 1 rejected")
            && stdout.contains("drained"),
        "{stdout}"
    );
    assert_eq!(test.depth(), 0);
    let db = test.install.db();
    assert_eq!(value::<i64>(&db, "SELECT count(*) FROM message"), 1200);
    assert_eq!(value::<i64>(&db, "SELECT count(*) FROM rejected"), 1);

    // Killed mid-run: whatever was not committed stays in the queue and comes again.
    test.broker.fill(&test.queue, envelopes(0xe9, 3000));
    let mut child = test.install.spawn(&["sync"]);
    wait_for_commits(&test.install, 1500, &mut child);
    child.kill().expect("kill");
    let _ = child.wait();
    let (code, stdout, stderr) = outcome(&test.install.run(&["sync"]));
    assert!(code == 0, "{stdout}{stderr}");
    assert_eq!(
        value::<i64>(&test.install.db(), "SELECT count(*) FROM message"),
        4200
    );
    assert_eq!(test.depth(), 0);
}

/// Two messages queued for an installation that pulls them: for an operator's mistakes.
fn two_queued() -> PullTest {
    PullTest::new(envelopes(0xea, 2), "")
}

#[test]
fn a_missing_database_directory_is_named_and_not_taken_for_a_held_lock() {
    let test = two_queued();
    test.install.replace_in_config(
        "database = \"replica.db\"",
        "database = \"missing/replica.db\"",
    );
    let (code, stdout, stderr) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("missing` of the database does not exist"),
        "{stderr}"
    );
    assert_eq!(test.depth(), 2);
}

#[test]
fn a_held_lock_names_its_holder() {
    let test = two_queued();
    test.install.run(&["init"]);
    let lock =
        beskedhent::pull::lock::FeedLock::acquire(&test.install.db_path(), "status").expect("lock");
    let (code, stdout, _) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 5, "{stdout}");
    assert!(
        stdout.contains(&format!("(pid {}, lock file", std::process::id())),
        "{stdout}"
    );
    drop(lock);
    assert_eq!(test.depth(), 2);
}

#[test]
fn a_mistyped_dueslag_fails_check_and_sync_says_which_key_to_fix() {
    let test = two_queued();
    test.mistype_the_dueslag();
    let (code, stdout, _) = outcome(&test.install.run(&["check"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAIL  feed `status`: the broker says queue `00000000-0000-4000-8000-000000000bad` does not exist"),
        "{stdout}"
    );
    let (code, stdout, _) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 4, "{stdout}");
    assert!(
        stdout.contains("check `dueslag` of feed `status`"),
        "{stdout}"
    );
    assert_eq!(test.depth(), 2);
}

#[test]
fn a_broker_address_nothing_listens_on_gets_a_hint_about_host_port_and_firewall() {
    let test = two_queued();
    let port = closed_port();
    test.install
        .replace_in_config(&test.broker.url(), &format!("amqps://localhost:{port}/"));
    let (code, stdout, _) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 4, "{stdout}");
    assert!(
        stdout.contains(&format!("localhost:{port}"))
            && stdout.contains("nothing accepts connections there"),
        "{stdout}"
    );
    assert_eq!(test.depth(), 2);
}

#[test]
fn a_broker_host_that_does_not_resolve_gets_no_advice_to_retry_longer() {
    let test = two_queued();
    test.install
        .replace_in_config(&test.broker.url(), "amqps://no-such-host.invalid:5671/");
    let (code, stdout, _) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 4, "{stdout}");
    assert!(stdout.contains("does not resolve"), "{stdout}");
    assert!(!stdout.contains("gave up after"), "{stdout}");
    assert_eq!(test.depth(), 2);
}

#[test]
fn an_sts_certificate_not_trusted_gets_a_hint_naming_sts_ca_file() {
    let test = two_queued();
    // No `sts.ca_file`.
    let ca_line = format!(
        "ca_file = \"{}\"\n\n[amqp]",
        certs().path("ca.pem").display()
    );
    assert!(test.install.config_text().contains(&ca_line));
    test.install.replace_in_config(&ca_line, "\n[amqp]");
    let (code, stdout, _) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 4, "{stdout}");
    assert!(
        stdout.contains("add its issuer with `sts.ca_file`"),
        "{stdout}"
    );
    assert_eq!(test.depth(), 2);
}

#[test]
fn an_x509_version_1_certificate_is_explained_in_a_plain_sentence() {
    let test = PullTest::new(envelopes(0xeb, 1), "");
    let config = test.install.config_text();
    test.install.write_config(
        &config
            .replace("client.pem", "v1.pem")
            .replace("client.key", "v1.key"),
    );
    let (code, _, stderr) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("is an X.509 version 1 certificate; TLS needs version 3"),
        "{stderr}"
    );
    // Not a type's debug text.
    assert!(
        !stderr.contains("Other(") && !stderr.contains("{"),
        "{stderr}"
    );
}

#[test]
fn check_asks_a_slow_sts_once_per_cvr_and_gives_up_after_its_timeout() {
    let test = PullTest::new(envelopes(0xeb, 1), "");
    test.install
        .replace_in_config("[amqp]", "timeout_seconds = 1\n\n[amqp]");
    test.sts.state.lock().expect("lock").delay = Some(Duration::from_secs(5));
    let started = Instant::now();
    let (code, stdout, _) = outcome(&test.install.run(&["check"]));
    let took = started.elapsed();
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("no answer within 1 s"), "{stdout}");
    assert_eq!(stdout.matches("FAIL").count(), 1, "{stdout}");
    assert!(took < Duration::from_secs(4), "check took {took:?}");
}

/// Memory bound of `sync` (see the configuration reference): 64 MiB + the window (the
/// effective prefetch) × `max_message_bytes`, in KiB.
fn memory_bound_kib(prefetch: u64, max_message_bytes: u64) -> u64 {
    64 * 1024 + prefetch * max_message_bytes / 1024
}

#[test]
fn sync_memory_stays_within_its_bound_with_large_messages() {
    let mut bodies: Vec<Vec<u8>> = (0..60)
        .map(|n| {
            padded(
                status_envelope(&test_uuid(0xec, n), &test_uuid(0xed, n), 0),
                904 * 1024,
            )
        })
        .collect();
    // Sixty more that are refused (not XML), just under the size limit.
    bodies.extend((0..60u8).map(|n| vec![b'<' ^ (n & 1); 1000 * 1024 + usize::from(n)]));
    let test = PullTest::new(bodies, "");
    // `max_message_bytes` must come before the tables: on top.
    test.install.write_config(&format!(
        "max_message_bytes = 1048576\n{}",
        test.install.config_text()
    ));
    let (output, peak_kib) = run_watched(&test.install, &["sync"], Duration::from_secs(300));
    let (code, stdout, stderr) = outcome(&output);
    eprintln!("sync of 120 messages of about 1 MiB: peak {peak_kib} KiB");
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stdout.contains("feed status: 60 new, 0 duplicates, 60 rejected"),
        "{stdout}"
    );
    // At 1 MiB the window is 128 messages: all of these at once.
    let bound = memory_bound_kib(128, 1024 * 1024);
    assert!(peak_kib < bound, "peak {peak_kib} KiB, over {bound} KiB");
    assert_eq!(test.depth(), 0);
}

#[test]
fn sync_memory_stays_under_192_mib_with_the_largest_messages_the_defaults_allow() {
    // Messages just under the default max_message_bytes (64 KiB) whose payload is one error
    // text, which decoding keeps beside the bytes: more than a window (2,000) of the largest
    // messages allowed, each decoded into as much again as the format lets it.
    let bodies: Vec<Vec<u8>> = (0..2_600)
        .map(|n| {
            crate::sample::failed_with_error_text(&test_uuid(0xee, n), &test_uuid(0xef, n), 65_536)
        })
        .collect();
    let size = bodies[0].len();
    assert!((65_000..=65_536).contains(&size), "{size} bytes");
    let test = PullTest::new(bodies, "");
    let (output, peak_kib) = run_watched(&test.install, &["sync"], Duration::from_secs(600));
    let (code, stdout, stderr) = outcome(&output);
    eprintln!("sync of 2,600 messages of {size} bytes: peak {peak_kib} KiB");
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("feed status: 2600 new, 0 duplicates, 0 rejected"),
        "{stdout}"
    );
    let bound = memory_bound_kib(2000, 64 * 1024);
    assert!(bound < 192 * 1024);
    assert!(peak_kib < bound, "peak {peak_kib} KiB, over {bound} KiB");
    assert_eq!(test.depth(), 0);
}

#[test]
fn sync_memory_stays_under_64_mib_with_real_traffic() {
    // Envelopes of real size (3-4 KB), many windows of them.
    let test = PullTest::new(envelopes(0xf1, 12_000), "");
    let (output, peak_kib) = run_watched(&test.install, &["sync"], Duration::from_secs(600));
    let (code, stdout, stderr) = outcome(&output);
    eprintln!("sync of 12,000 real-size messages: peak {peak_kib} KiB");
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("feed status: 12000 new, 0 duplicates, 0 rejected"),
        "{stdout}"
    );
    assert!(peak_kib < 64 * 1024, "peak {peak_kib} KiB, over 64 MiB");
    assert_eq!(test.depth(), 0);
}

/// `count` letters that failed an hour ago, as queue bodies.
fn failed_letter_bodies(prefix: u32, count: u64) -> Vec<Vec<u8>> {
    (1..=count)
        .map(|n| failed_letter_envelope(prefix, n).into_bytes())
        .collect()
}

#[test]
fn sync_tells_about_failed_letters_and_a_feed_that_keeps_failing() {
    let test = PullTest::new(failed_letter_bodies(0xf1, 1), "");
    let letter = test_uuid(0xf1, 1);
    let script = write_notify_script(&test.install, NOTIFY_SCRIPT);
    test.install.append_config(&format!(
        "\n[notify]\ncommand = [\"{}\"]\nfailing_runs = 2\noverdue_days = 0\n",
        script.display()
    ));
    let (code, stdout, stderr) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("notifications: 1 sent, 0 failed"),
        "{stdout}"
    );
    assert_eq!(sent(&test.install), [format!("letter_failed:{letter}")]);

    // A mistyped dueslag: the second failed run in a row is told, once per streak.
    let config = test.mistype_the_dueslag();
    let wrong = test.install.config_text();
    for _ in 0..3 {
        let (code, stdout, _) = outcome(&test.install.run(&["sync"]));
        assert_eq!(code, 4, "{stdout}");
    }
    let keys = sent(&test.install);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys[1].starts_with("feed_failing:status:"), "{keys:?}");
    let payload = sent_payload(&test.install, "feed_failing:status:");
    assert_eq!(payload["feed"], "status");
    assert_eq!(payload["runs"], 2);
    assert!(
        payload["error"]
            .as_str()
            .expect("error")
            .contains("does not exist"),
        "{payload}"
    );
    // Fixed: the streak ends; a new streak is a new event.
    test.install.write_config(&config);
    assert_eq!(outcome(&test.install.run(&["sync"])).0, 0);
    assert_eq!(
        value::<i64>(
            &test.install.db(),
            "SELECT failed_runs FROM cursor WHERE source = 'status'"
        ),
        0
    );
    test.install.write_config(&wrong);
    for _ in 0..2 {
        outcome(&test.install.run(&["sync"]));
    }
    assert_eq!(sent(&test.install).len(), 3);
}

/// A daemon stopped by systemd while a notification command hangs: it stops the command and
/// exits at once, rather than when `timeout_seconds` or systemd's patience runs out.
#[test]
fn sigterm_during_a_notification_round_stops_the_daemon_promptly() {
    let test = PullTest::new(failed_letter_bodies(0x2f1, 3), "");
    let install = &test.install;
    let script = write_notify_script(install, NOTIFY_SCRIPT);
    std::fs::write(install.path("hang"), b"").expect("flag");
    install.append_config(&format!(
        "\n[notify]\ncommand = [\"{}\"]\noverdue_days = 0\ntimeout_seconds = 3600\n[schedule]\ncron = \"* * * * * *\"\n",
        script.display()
    ));
    for command in ["daemon", "sync"] {
        let _ = std::fs::remove_file(install.path("hang.pid"));
        let mut child = install.spawn(&[command]);
        wait_for("the command to run", Duration::from_secs(60), || {
            assert!(child.try_wait().expect("wait").is_none(), "{command} ended");
            install.path("hang.pid").exists()
        });
        let script_pid = std::fs::read_to_string(install.path("hang.pid")).expect("pid");
        let stopped = Instant::now();
        signal(&child, libc::SIGTERM);
        let output = child.wait_with_output().expect("ends");
        let (code, stdout, stderr) = outcome(&output);
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "{command} took {:?} to stop",
            stopped.elapsed()
        );
        let expected = if command == "daemon" { 0 } else { 130 };
        assert_eq!(code, expected, "{command}: {stdout}{stderr}");
        assert!(
            format!("{stdout}{stderr}").contains("round stopped early (signal)"),
            "{command}: {stdout}{stderr}"
        );
        assert!(
            ends_soon(&script_pid),
            "{command}: the notify command still runs"
        );
    }
    // Nothing was marked sent; the one cut off each time is due again at once.
    assert_eq!(
        rows(
            &install.db(),
            "SELECT attempts, sent_at IS NULL FROM notification ORDER BY id"
        ),
        ["2|1", "0|1", "0|1"]
    );
}

/// A copy of the client's key in the installation, named by its config instead of the
/// original; its path.
fn own_copy_of_the_key(test: &PullTest) -> std::path::PathBuf {
    let key = test.install.path("client.key");
    std::fs::copy(certs().path("client.key"), &key).expect("copy key");
    test.install.replace_in_config(
        &certs().path("client.key").display().to_string(),
        &key.display().to_string(),
    );
    key
}

#[test]
fn a_private_key_others_can_read_is_refused() {
    let test = PullTest::new(envelopes(0xf1, 1), "");
    let key = own_copy_of_the_key(&test);
    for (mode, refused) in [(0o644, true), (0o640, false), (0o600, false), (0o604, true)] {
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .expect("chmod");
        let (code, stdout, stderr) = outcome(&test.install.run(&["check"]));
        if refused {
            assert_eq!(code, 1, "{mode:o}: {stdout}{stderr}");
            assert!(
                stdout.contains("can be read or changed by other users"),
                "{mode:o}: {stdout}"
            );
            assert!(stdout.contains("chmod 600"), "{stdout}");
        } else {
            // Root's key may be readable by its group (root:beskedhent, 0640).
            assert!(
                stdout.contains("ok    certificate and key"),
                "{mode:o}: {stdout}"
            );
        }
    }
    // `sync` refuses it too, and acknowledges nothing.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let (code, _, stderr) = outcome(&test.install.run(&["sync"]));
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(test.depth(), 1);
}

#[test]
fn the_sts_client_follows_no_redirect_and_reads_no_endless_answer() {
    let test = PullTest::new(envelopes(0xf2, 1), "");
    // Elsewhere: another STS, which must never see the request (it carries the certificate).
    let elsewhere = FakeSts::start(Duration::from_secs(3600));
    test.sts.state.lock().expect("lock").raw_answer = Some(
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            elsewhere.url()
        )
        .into_bytes(),
    );
    let (code, stdout, _) = outcome(&test.install.run(&["check"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("a redirect, which is not followed"),
        "{stdout}"
    );
    assert!(elsewhere.requests().is_empty());
    // An answer without end: cut off at 1 MiB, not read into memory.
    let mut endless = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\nConnection: close\r\n\r\n".to_vec();
    endless.extend(std::iter::repeat_n(b' ', 4 * 1024 * 1024));
    test.sts.state.lock().expect("lock").raw_answer = Some(endless);
    let (code, stdout, _) = outcome(&test.install.run(&["check"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("more than 1024 KiB"), "{stdout}");
    assert_eq!(test.depth(), 1);
}

#[test]
fn trace_logging_never_shows_what_the_broker_sent() {
    // A letter id holding a CPR number, in the frames the broker sends.
    let letter = "brev-2512489996";
    let body = status_envelope(&test_uuid(0xf3, 1), letter, 1).into_bytes();
    let test = PullTest::new(vec![body], "");
    let output = test.install.run_with_env(
        &["sync"],
        &[("BESKEDHENT_LOG", "trace,lapin=trace,amq_protocol=trace")],
    );
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("feed status: 1 new"), "{stdout}");
    // The number as text, and as the byte array a frame's Debug form would print.
    let as_bytes = "2512489996"
        .bytes()
        .map(|byte| byte.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    assert!(!stderr.contains("2512489996"), "{stderr}");
    assert!(!stderr.contains(&as_bytes), "frames reached the log");
    assert!(
        !stderr.contains(" TRACE "),
        "a library's trace line was shown"
    );
}

#[test]
fn a_private_key_of_another_user_or_group_is_refused() {
    let test = PullTest::new(envelopes(0xf4, 1), "");
    let other = LocalUser::create();
    let key = own_copy_of_the_key(&test);
    // Root's key, readable by a group root does not run as.
    std::os::unix::fs::chown(&key, Some(0), Some(other.gid)).expect("chown");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o640))
        .expect("chmod");
    let (code, stdout, _) = outcome(&test.install.run(&["check"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("can be read or changed by other users"),
        "{stdout}"
    );
    // Another user's key, however private.
    std::os::unix::fs::chown(&key, Some(other.uid), Some(other.gid)).expect("chown");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let (code, stdout, _) = outcome(&test.install.run(&["check"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!("belongs to user {}", other.name)),
        "{stdout}"
    );
}
