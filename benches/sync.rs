//! End-to-end pull benchmark: `cargo bench --bench sync` (needs RabbitMQ installed, as
//! `scripts/test` does; BENCH_N sets the count, default 50000).
//!
//! Starts a throwaway RabbitMQ (TLS, client certificates, EXTERNAL) and the fake STS of the
//! tests, queues N realistic envelopes (about 3.4 KB each) and times `beskedhent sync` until the
//! queue is empty: every message parsed, committed and acknowledged. In the same run it does the
//! same with batching turned off (`batch_size = 1`: one commit and one acknowledgement per
//! message), on N/5 messages. Reports rates and peak memory (from `wait4`). BENCH_SYNC adds
//! `[sync]` keys (separated by `;`); BENCH_MAX_MESSAGE_BYTES sets `max_message_bytes`.
//! BENCH_MESSAGE_BYTES makes every envelope a failed status whose error text fills it to about
//! that size (decoding keeps the text besides the bytes), to measure memory with messages as
//! large as `max_message_bytes` allows.
//! BENCH_SYNC_REPLICA names a replica (say, the queries benchmark's) to sync into a copy of,
//! against the rate into an empty one.
//! BENCH_BASELINE_BIN names another build of `beskedhent` (say, of the previous release) to run
//! the batched measurement with too, against the same broker in the same run (and, with
//! BENCH_SYNC_REPLICA, the measurement into the copy of the replica as well).

// The test harness's broker and STS, shared rather than copied; the benchmark uses part of it.
mod common;
#[path = "common/pull.rs"]
mod pull;
use pull::{config_text, raw_drain};

#[allow(dead_code)]
#[path = "../tests/it/broker.rs"]
mod broker;
#[allow(dead_code)]
#[path = "../tests/it/fake_sts.rs"]
mod fake_sts;

use std::process::Command;
use std::time::Duration;

#[path = "../tests/support/sample.rs"]
mod sample;
use sample::{UuidGenerator, failed_with_error_text, status_envelope};

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
    let ceiling = raw_drain(&broker, &sts, count);
    let this = std::path::PathBuf::from(env!("CARGO_BIN_EXE_beskedhent"));
    let batched = measure(
        &this,
        &broker,
        &sts,
        "batched",
        count,
        &format!("{tuning}\n"),
    );
    // BENCH_SYNC_REPLICA: the same into a copy of that replica (say, the queries benchmark's
    // million messages), against the rate into an empty one.
    let replica = std::env::var("BENCH_SYNC_REPLICA").ok();
    let into_full = |binary: &std::path::Path, name: &str, sync: &str| {
        replica.as_ref().map(|replica| {
            measure_from(
                binary,
                &broker,
                &sts,
                name,
                count,
                sync,
                Some(std::path::Path::new(replica)),
            )
        })
    };
    let full = into_full(&this, "into full", &format!("{tuning}\n"));
    if let Some(full) = full {
        println!(
            "sync into the full replica runs at {:.0}% of its rate into an empty one",
            100.0 * full / batched
        );
    }
    if let Ok(baseline) = std::env::var("BENCH_BASELINE_BIN") {
        let baseline = std::path::Path::new(&baseline);
        let other = measure(baseline, &broker, &sts, "baseline", count, "");
        println!(
            "this build runs at {:.0}% of the baseline build's rate",
            100.0 * batched / other
        );
        // Both: the baseline build into a copy of that replica too.
        if let (Some(full), Some(other_full)) = (full, into_full(baseline, "base full", "")) {
            println!(
                "the baseline build into the full replica runs at {:.0}% of its rate into an empty one; this build runs there at {:.0}% of the baseline's rate",
                100.0 * other_full / other,
                100.0 * full / other_full
            );
        }
    }
    let unbatched = measure(
        &this,
        &broker,
        &sts,
        "unbatched",
        (count / 5).max(1),
        "batch_size = 1\n",
    );
    println!("batching makes sync {:.1}x faster", batched / unbatched);
    println!(
        "sync runs at {:.0}% of the bare consumer's rate (the broker's and the transport's ceiling here)",
        100.0 * batched / ceiling
    );
    broker.stop();
}

/// Queues `count` envelopes, runs `sync` to an empty queue; returns messages per second.
fn measure(
    binary: &std::path::Path,
    broker: &broker::Broker,
    sts: &fake_sts::FakeSts,
    name: &str,
    count: u64,
    sync: &str,
) -> f64 {
    measure_from(binary, broker, sts, name, count, sync, None)
}

/// [`measure`], into a copy of `replica` when given instead of an empty database.
fn measure_from(
    binary: &std::path::Path,
    broker: &broker::Broker,
    sts: &fake_sts::FakeSts,
    name: &str,
    count: u64,
    sync: &str,
    replica: Option<&std::path::Path>,
) -> f64 {
    let mut ids = UuidGenerator::new(count ^ name.len() as u64);
    let queue = ids.next_uuid();
    let size: usize = std::env::var("BENCH_MESSAGE_BYTES")
        .ok()
        .and_then(|bytes| bytes.parse().ok())
        .unwrap_or(0);
    broker.fill(
        &queue,
        (0..count).map(|n| {
            if size > 0 {
                failed_with_error_text(&ids.next_uuid(), &ids.next_uuid(), size)
            } else {
                status_envelope(&ids.next_uuid(), &ids.next_uuid(), (n % 60) as u32).into_bytes()
            }
        }),
    );
    let dir = broker::scratch_dir("bench");
    std::fs::write(
        dir.join("config.toml"),
        config_text(broker, sts, &queue, sync),
    )
    .expect("config");
    let before: i64 = match replica {
        None => 0,
        Some(replica) => {
            std::fs::copy(replica, dir.join("replica.db")).expect("copy the replica");
            // SAFETY: sync(2) takes no arguments and cannot fail.
            unsafe { libc::sync() };
            rusqlite::Connection::open(dir.join("replica.db"))
                .and_then(|db| db.query_row("SELECT count(*) FROM message", [], |row| row.get(0)))
                .expect("count")
        }
    };
    let run = common::run_measured(
        Command::new(binary)
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
    assert_eq!((stored - before) as u64, count, "every message stored once");
    let rate = count as f64 / run.seconds;
    println!(
        "{name:<9} {count:>6} messages: {rate:>8.0} messages/s ({:.2} s), peak RSS {:.1} MiB, CPU {:.2} s user + {:.2} s system",
        run.seconds, run.peak_rss_mib, run.user_seconds, run.system_seconds
    );
    rate
}
