//! The pull set-up: the shared broker, a fake STS, a queue (a dueslag) filled for one test,
//! and an installation configured to pull it.

use std::time::Duration;

use crate::broker::{self, Broker, certs};
use crate::fake_sts::FakeSts;

use super::{Install, TYPES, test_uuid};

/// A unique queue name (a dueslag UUID) for one test.
pub fn queue_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    test_uuid(
        0xd0e5_1a90,
        std::process::id() as u64 * 1000 + NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
    )
}

/// The config of an installation that pulls `queues` (feed name, queue) from `broker` with
/// tokens from `sts`, presenting the client certificate `cert` (`client`, `stranger`, ...).
pub fn pull_config(
    broker: &Broker,
    sts: &FakeSts,
    queues: &[(&str, &str)],
    cert: &str,
    sync: &str,
) -> String {
    let certs = certs();
    let mut text = format!(
        r#"{TYPES}
[sts]
url = "{sts}"
entity_id = "http://entityid.kombit.dk/service/bfo_modtag/2"
cvr = "12345678"
certificate = "{cert_pem}"
private_key = "{cert_key}"
ca_file = "{ca}"

[amqp]
url = "{amqp}"
ca_file = "{ca}"

[sync]
{sync}
"#,
        sts = sts.url(),
        cert_pem = certs.path(&format!("{cert}.pem")).display(),
        cert_key = certs.path(&format!("{cert}.key")).display(),
        ca = certs.path("ca.pem").display(),
        amqp = broker.url(),
        sync = with_defaults(sync),
    );
    for (name, queue) in queues {
        text.push_str(&format!(
            "\n[[feed]]\nname = \"{name}\"\ndueslag = \"{queue}\"\n"
        ));
    }
    text
}

/// The `[sync]` keys of a test: quick retries and drain checks unless `sync` sets them.
fn with_defaults(sync: &str) -> String {
    let mut text = sync.to_string();
    for (key, value) in [
        ("retries", "2"),
        ("retry_backoff_ms", "100"),
        ("drain_check_ms", "300"),
    ] {
        if !sync.contains(&format!("{key} =")) {
            text.push_str(&format!("{key} = {value}\n"));
        }
    }
    text
}

/// The usual set-up: the shared broker, a fake STS, one `status` feed whose queue holds
/// `bodies`, and an installation that pulls it.
pub struct PullTest {
    pub broker: &'static Broker,
    pub sts: FakeSts,
    pub queue: String,
    pub install: Install,
}

impl PullTest {
    /// Pulling with the client certificate from an STS whose tokens live an hour.
    pub fn new(bodies: Vec<Vec<u8>>, sync: &str) -> PullTest {
        PullTest::with(
            FakeSts::start(Duration::from_secs(3600)),
            "client",
            bodies,
            sync,
        )
    }

    /// Pulling from `sts`, presenting the certificate `cert`.
    pub fn with(sts: FakeSts, cert: &str, bodies: Vec<Vec<u8>>, sync: &str) -> PullTest {
        let broker = broker::shared();
        let queue = queue_name();
        broker.fill(&queue, bodies);
        let install = Install::new(&pull_config(
            broker,
            &sts,
            &[("status", &queue)],
            cert,
            sync,
        ));
        PullTest {
            broker,
            sts,
            queue,
            install,
        }
    }

    /// Messages still in the feed's queue (ready or unacknowledged).
    pub fn depth(&self) -> u32 {
        self.broker.depth(&self.queue)
    }

    /// Points the feed at a queue that does not exist (a mistyped dueslag); the config as it
    /// was.
    pub fn mistype_the_dueslag(&self) -> String {
        self.install
            .replace_in_config(&self.queue, "00000000-0000-4000-8000-000000000bad")
    }
}
