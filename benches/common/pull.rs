//! What the pull benchmarks share: the configuration of a run against the throwaway broker and
//! STS, and the ceiling of a bare consumer. Included by path; uses the including benchmark's
//! `broker`, `fake_sts` and `sample` modules.

use crate::sample::{UuidGenerator, status_envelope};
use crate::{broker, fake_sts};

/// The ceiling: a bare consumer on the same TLS + EXTERNAL connection that receives and
/// acknowledges (500 at a time) without decoding or storing anything.
pub fn raw_drain(broker: &broker::Broker, sts: &fake_sts::FakeSts, count: u64) -> f64 {
    use futures_util::StreamExt;
    let mut ids = UuidGenerator::new(count ^ 0xbeef);
    let queue = ids.next_uuid();
    broker.fill(
        &queue,
        (0..count).map(|n| {
            status_envelope(&ids.next_uuid(), &ids.next_uuid(), (n % 60) as u32).into_bytes()
        }),
    );
    let config = beskedhent::config::Config::parse(
        &config_text(broker, sts, &queue, ""),
        std::path::Path::new("config.toml"),
    )
    .expect("config");
    let pull = config.pull().expect("pull");
    let credentials =
        beskedhent::pull::credentials::Credentials::load(&pull.sts).expect("credentials");
    let tokens = beskedhent::pull::sts::TokenClient::new(&pull.sts, &credentials).expect("sts");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let seconds = runtime.block_on(async {
        let token = tokens.token("12345678").await.expect("token");
        let session = beskedhent::pull::amqp::connect(&pull.amqp, &credentials, &token, "bare")
            .await
            .expect("connect");
        let started = std::time::Instant::now();
        let mut consumer = session.consume(&queue, 2000).await.expect("consume");
        let mut received = 0;
        while received < count {
            let delivery = consumer.next().await.expect("open").expect("delivery");
            received += 1;
            if received % 500 == 0 || received == count {
                session
                    .ack_through(delivery.delivery_tag)
                    .await
                    .expect("ack");
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        session.close().await;
        seconds
    });
    assert_eq!(broker.depth(&queue), 0, "queue drained");
    let rate = count as f64 / seconds;
    println!(
        "bare consumer {count:>6} messages: {rate:>8.0} messages/s ({seconds:.2} s; receive and acknowledge only)"
    );
    rate
}

pub fn config_text(
    broker: &broker::Broker,
    sts: &fake_sts::FakeSts,
    queue: &str,
    sync: &str,
) -> String {
    let certs = broker::certs();
    // BENCH_MAX_MESSAGE_BYTES sets `max_message_bytes`, which bounds the prefetch.
    let limit = std::env::var("BENCH_MAX_MESSAGE_BYTES")
        .map(|bytes| format!("max_message_bytes = {bytes}\n"))
        .unwrap_or_default();
    format!(
        "database = \"replica.db\"\n{limit}[sts]\nurl = \"{}\"\nentity_id = \"http://entityid.kombit.dk/service/bfo_modtag/2\"\ncvr = \"12345678\"\n\
         certificate = \"{}\"\nprivate_key = \"{}\"\nca_file = \"{}\"\n[amqp]\nurl = \"{}\"\nca_file = \"{}\"\n\
         [[feed]]\nname = \"status\"\ndueslag = \"{queue}\"\n[sync]\n{sync}",
        sts.url(),
        certs.path("client.pem").display(),
        certs.path("client.key").display(),
        certs.path("ca.pem").display(),
        broker.url(),
        certs.path("ca.pem").display(),
    )
}
