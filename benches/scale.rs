//! How writing scales with the replica: `cargo bench --bench scale` (needs RabbitMQ installed,
//! as `scripts/test` does; the peer needs Debian's python3-pika).
//!
//! One replica grows through a year of a municipality's traffic (`common/traffic.rs`: about 3
//! statuses per letter, in arrival order). At each stage (BENCH_STAGES, default
//! `0,1000000,3000000` messages already stored) it measures, on the next messages of that same
//! traffic:
//! - `beskedhent import` of BENCH_IMPORT_N (default 100,000) envelopes as files;
//! - `beskedhent sync` of BENCH_SYNC_N (default 50,000) envelopes from a throwaway broker (TLS,
//!   client certificate, EXTERNAL) and the tests' fake STS.
//!
//! Each with its rate, peak RSS and CPU time, against its own rate at the first stage. Between
//! stages the replica grows in process through the same write path (batches of 1,000).
//!
//! Baselines, at the first stage and on the same kind of messages: reading the files and
//! inserting their bytes under their BeskedId with no parsing (what `import` does at the
//! least); a bare consumer that only receives and acknowledges (the broker's and the transport's
//! ceiling); and a peer, a batched pika + sqlite3 client (`common/pika_peer.py`) that
//! acknowledges after its commit as `sync` does. It needs about 15 GB of disk under `target/`
//! at the default stages.

mod common;
#[path = "common/pull.rs"]
mod pull;
#[allow(dead_code)]
#[path = "common/traffic.rs"]
mod traffic;

#[allow(dead_code)]
#[path = "../tests/it/broker.rs"]
mod broker;
#[allow(dead_code)]
#[path = "../tests/it/fake_sts.rs"]
mod fake_sts;
#[path = "../tests/support/sample.rs"]
mod sample;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use beskedhent::replica::{Durability, Incoming, Raw, Store};
use sample::{UuidGenerator, status_envelope};

/// The registration types of the generated traffic (the test identifiers).
const TYPES: &str = "[types.digitalpost_registration]
beskedtype = \"5b1e4a32-7d0c-4a58-9b0e-1c2f3a4b5c6d\"
registered = [\"0f0e7a1c-1111-4a2b-9c3d-4e5f6a7b8c9d\"]
deregistered = [\"0f0e7a1c-2222-4a2b-9c3d-4e5f6a7b8c9d\"]
";

/// One measured run of `import` or `sync`.
#[derive(Clone, Copy)]
struct Rate {
    per_second: f64,
    peak_rss_mib: f64,
    cpu_seconds: f64,
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let stages: Vec<usize> = std::env::var("BENCH_STAGES")
        .unwrap_or_else(|_| "0,1000000,3000000".into())
        .split(',')
        .map(|stage| stage.trim().parse().expect("BENCH_STAGES: numbers"))
        .collect();
    let import_n = env_number("BENCH_IMPORT_N", 100_000);
    let sync_n = env_number("BENCH_SYNC_N", 50_000);
    let scratch = std::env::current_dir()
        .expect("cwd")
        .join("target")
        .join("bench-scale");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch");
    let broker = broker::Broker::start();
    let sts = fake_sts::FakeSts::start(Duration::from_secs(3600));
    println!("machine: {}", common::machine());

    let last = stages.iter().copied().max().unwrap_or(0);
    let mut traffic = traffic::Traffic::new(last + stages.len() * (import_n + sync_n) + 1000);
    let config = scratch.join("config.toml");
    let decoder = beskedhent::config::Config::parse(
        &format!("database = \"replica.db\"\n{TYPES}"),
        Path::new("config.toml"),
    )
    .expect("config")
    .decoder();
    let database = scratch.join("replica.db");
    let mut stored = 0usize;
    let mut first: Option<(Rate, Rate)> = None;
    let mut rows = Vec::new();
    for &stage in &stages {
        grow(
            &database,
            &decoder,
            &mut traffic,
            stage.saturating_sub(stored),
        );
        stored = stored.max(stage);
        let queue = UuidGenerator::new(stage as u64 ^ 0x5ca1e).next_uuid();
        write_config(&config, &broker, &sts, &queue);

        let files = scratch.join(format!("import-{stage}"));
        let besked_ids = write_files(&files, &mut traffic, import_n);
        if first.is_none() {
            baseline_insert(&files, &besked_ids, &scratch.join("bare.db"));
        }
        let imported = import(&config, &files, import_n);
        std::fs::remove_dir_all(&files).expect("remove the files");

        broker.fill(
            &queue,
            (0..sync_n).map(|_| traffic.next().expect("traffic").into_bytes()),
        );
        let synced = sync(&config, &broker, &queue, sync_n);
        if first.is_none() {
            pull::raw_drain(&broker, &sts, sync_n as u64);
            peer(&broker, &scratch, sync_n);
        }
        stored += import_n + sync_n;
        let (import_first, sync_first) = *first.get_or_insert((imported, synced));
        rows.push(format!(
            "| {stage} | {:.0} /s, {:.0} MiB | {:.0} % | {:.0} /s, {:.0} MiB | {:.0} % |",
            imported.per_second,
            imported.peak_rss_mib,
            100.0 * imported.per_second / import_first.per_second,
            synced.per_second,
            synced.peak_rss_mib,
            100.0 * synced.per_second / sync_first.per_second,
        ));
    }
    println!();
    println!(
        "| messages stored before | import of {import_n} | of its rate at the first stage | sync of {sync_n} | of its rate at the first stage |"
    );
    println!("|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!(
        "replica: {:.1} GiB",
        std::fs::metadata(&database).map_or(0, |meta| meta.len()) as f64 / (1u64 << 30) as f64
    );
    broker.stop();
}

/// The configuration of the measured runs: the replica, the registration types, pulling the
/// one feed from `queue`.
fn write_config(config: &Path, broker: &broker::Broker, sts: &fake_sts::FakeSts, queue: &str) {
    let pulling = pull::config_text(broker, sts, queue, "");
    // The types must come before the first table of the pull sections.
    let (top, tables) = pulling.split_at(pulling.find("[sts]").expect("[sts]"));
    std::fs::write(config, format!("{top}{TYPES}{tables}")).expect("config");
}

/// Stores the next `count` messages of `traffic` in process, in batches of 1,000.
fn grow(
    database: &Path,
    decoder: &beskedhent::decode::message::Decoder,
    traffic: &mut traffic::Traffic,
    count: usize,
) {
    if count == 0 {
        return;
    }
    let mut store = Store::open(database, None).expect("open");
    store
        .set_durability(Durability::Normal)
        .expect("durability");
    let started = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    for _ in 0..count {
        let raw = traffic.next().expect("traffic").into_bytes();
        batch.push(Incoming {
            origin: String::new(),
            decoded: decoder.decode(&raw),
            raw: Raw::Bytes(raw),
        });
        if batch.len() == 1000 {
            store
                .write_batch("grow", "2027-01-01T00:00:00.000Z", &batch)
                .expect("write");
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store
            .write_batch("grow", "2027-01-01T00:00:00.000Z", &batch)
            .expect("write");
    }
    drop(store);
    println!(
        "grown by {count} messages in process in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// Writes the next `count` messages of `traffic` as files into `dir`; their BeskedIds.
fn write_files(dir: &Path, traffic: &mut traffic::Traffic, count: usize) -> Vec<String> {
    std::fs::create_dir_all(dir).expect("mkdir");
    (0..count)
        .map(|n| {
            let envelope = traffic.next().expect("traffic");
            let path = dir.join(format!("{n:07}.xml"));
            std::fs::write(&path, &envelope).expect("write");
            let start = envelope.find("UUIDIdentifikator>").expect("BeskedId") + 18;
            envelope[start..start + 36].to_owned()
        })
        .collect()
}

/// The least an import does, on the files of `dir`: see [`common::bare_insert`].
fn baseline_insert(dir: &Path, besked_ids: &[String], database: &Path) {
    sync_disks();
    let seconds = common::bare_insert(dir, besked_ids, database, 1000);
    println!(
        "bare insert   {:>7} files: {:>8.0} files/s ({seconds:.2} s; read + insert, no parsing)",
        besked_ids.len(),
        besked_ids.len() as f64 / seconds
    );
}

/// `beskedhent import DIR` into the replica.
fn import(config: &Path, dir: &Path, count: usize) -> Rate {
    sync_disks();
    let run = common::run_measured(
        Command::new(env!("CARGO_BIN_EXE_beskedhent"))
            .arg("--config")
            .arg(config)
            .arg("import")
            .arg(dir)
            .env("BESKEDHENT_LOG", "warn"),
    );
    assert_eq!(run.exit_code, 0, "import failed");
    report("import", count, &run)
}

/// `beskedhent sync` of the queue into the replica.
fn sync(config: &Path, broker: &broker::Broker, queue: &str, count: usize) -> Rate {
    sync_disks();
    let run = common::run_measured(
        Command::new(env!("CARGO_BIN_EXE_beskedhent"))
            .arg("--config")
            .arg(config)
            .arg("sync")
            .env("BESKEDHENT_LOG", "warn"),
    );
    assert_eq!(run.exit_code, 0, "sync failed");
    assert_eq!(broker.depth(queue), 0, "queue drained");
    report("sync", count, &run)
}

fn report(what: &str, count: usize, run: &common::Measured) -> Rate {
    let rate = Rate {
        per_second: count as f64 / run.seconds,
        peak_rss_mib: run.peak_rss_mib,
        cpu_seconds: run.user_seconds + run.system_seconds,
    };
    println!(
        "{what:<13} {count:>7} messages: {:>8.0} /s ({:.2} s), peak RSS {:.1} MiB, CPU {:.2} s",
        rate.per_second, run.seconds, rate.peak_rss_mib, rate.cpu_seconds
    );
    rate
}

/// The pika + sqlite3 peer on `count` envelopes of its own queue, when python3-pika is there.
fn peer(broker: &broker::Broker, scratch: &Path, count: usize) {
    let python = Path::new("/usr/bin/python3");
    let has_pika = Command::new(python)
        .args(["-c", "import pika"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !has_pika {
        println!("peer: skipped (apt-get install python3-pika)");
        return;
    }
    let mut ids = UuidGenerator::new(0x9e3e);
    let queue = ids.next_uuid();
    broker.fill(
        &queue,
        (0..count).map(|n| {
            status_envelope(&ids.next_uuid(), &ids.next_uuid(), (n % 60) as u32).into_bytes()
        }),
    );
    let certs = broker::certs();
    // amqps://localhost:PORT/BF
    let port = broker
        .url()
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .expect("port")
        .to_owned();
    let database: PathBuf = scratch.join("peer.db");
    sync_disks();
    // The whole process is timed, connecting included, as for `sync`.
    let run = common::run_measured(
        Command::new(python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/common/pika_peer.py"))
            .args(["localhost", &port])
            .arg(certs.path("ca.pem"))
            .arg(certs.path("client.pem"))
            .arg(certs.path("client.key"))
            .args([&queue, &count.to_string()])
            .arg(&database),
    );
    assert_eq!(run.exit_code, 0, "the peer failed");
    assert_eq!(broker.depth(&queue), 0, "the peer drained its queue");
    println!(
        "pika peer     {count:>7} messages: {:>8.0} /s ({:.2} s; batched pika + sqlite3, acknowledged after commit), peak RSS {:.1} MiB, CPU {:.2} s",
        count as f64 / run.seconds,
        run.seconds,
        run.peak_rss_mib,
        run.user_seconds + run.system_seconds
    );
}

fn sync_disks() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}
