//! End-to-end pull benchmark: `cargo bench --bench sync` (needs RabbitMQ installed, as
//! `scripts/test` does; BENCH_N sets the count, default 50000).
//!
//! Starts a throwaway RabbitMQ (TLS, client certificates, EXTERNAL) and the fake STS of the
//! tests, queues N realistic envelopes (about 3.4 KB each) and times `beskedhent sync` until the
//! queue is empty: every message parsed, committed and acknowledged. In the same run it does the
//! same with batching turned off (`batch_size = 1`: one commit and one acknowledgement per
//! message), on N/5 messages. Reports rates and peak memory (from `wait4`).

// The test harness's broker and STS, shared rather than copied; the benchmark uses part of it.
mod common;

#[allow(dead_code)]
#[path = "../tests/it/broker.rs"]
mod broker;
#[allow(dead_code)]
#[path = "../tests/it/fake_sts.rs"]
mod fake_sts;

use std::process::Command;
use std::time::Duration;

use beskedhent::sample::{UuidGenerator, status_envelope};

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let count: u64 = std::env::var("BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50_000);
    let broker = broker::Broker::start();
    let sts = fake_sts::FakeSts::start(Duration::from_secs(3600));
    println!("machine: {}", common::machine());
    // BENCH_SYNC adds `[sync]` keys to the batched run, to try other tuning.
    let tuning = std::env::var("BENCH_SYNC")
        .unwrap_or_default()
        .replace(';', "\n");
    let batched = measure(&broker, &sts, "batched", count, &format!("{tuning}\n"));
    let unbatched = measure(
        &broker,
        &sts,
        "unbatched",
        (count / 5).max(1),
        "batch_size = 1\n",
    );
    println!("batching makes sync {:.1}x faster", batched / unbatched);
    broker.stop();
}

/// Queues `count` envelopes, runs `sync` to an empty queue; returns messages per second.
fn measure(
    broker: &broker::Broker,
    sts: &fake_sts::FakeSts,
    name: &str,
    count: u64,
    sync: &str,
) -> f64 {
    let mut ids = UuidGenerator::new(count ^ name.len() as u64);
    let queue = ids.next_uuid();
    broker.fill(
        &queue,
        (0..count).map(|n| {
            status_envelope(&ids.next_uuid(), &ids.next_uuid(), (n % 60) as u32).into_bytes()
        }),
    );
    let dir = broker::scratch_dir("bench");
    let certs = broker::certs();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "database = \"replica.db\"\n[sts]\nurl = \"{}\"\nentity_id = \"http://entityid.kombit.dk/service/bfo_modtag/2\"\ncvr = \"12345678\"\n\
             certificate = \"{}\"\nprivate_key = \"{}\"\nca_file = \"{}\"\n[amqp]\nurl = \"{}\"\nca_file = \"{}\"\n\
             [[feed]]\nname = \"status\"\ndueslag = \"{queue}\"\n[sync]\n{sync}",
            sts.url(),
            certs.path("client.pem").display(),
            certs.path("client.key").display(),
            certs.path("ca.pem").display(),
            broker.url(),
            certs.path("ca.pem").display(),
        ),
    )
    .expect("config");
    let run = common::run_measured(
        Command::new(env!("CARGO_BIN_EXE_beskedhent"))
            .arg("--config")
            .arg(dir.join("config.toml"))
            .arg("sync")
            .env("BESKEDHENT_LOG", "warn"),
    );
    assert_eq!(run.exit_code, 0, "sync failed");
    assert_eq!(broker.depth(&queue), 0, "queue drained");
    let db = rusqlite::Connection::open(dir.join("replica.db")).expect("db");
    let stored: i64 = db
        .query_row("SELECT count(*) FROM message", [], |row| row.get(0))
        .expect("count");
    assert_eq!(stored as u64, count, "every message stored once");
    let rate = count as f64 / run.seconds;
    println!(
        "{name:<9} {count:>6} messages: {rate:>8.0} messages/s ({:.2} s), peak RSS {:.1} MiB, CPU {:.2} s user + {:.2} s system",
        run.seconds, run.peak_rss_mib, run.user_seconds, run.system_seconds
    );
    rate
}
