//! Import benchmark: `cargo bench --bench import` (set BENCH_N to change the count, default
//! 100000).
//!
//! Generates N realistic status envelopes (about 3.3 KB, random UUIDs) as files, then in the
//! same run measures:
//! - baseline: the bare minimum, one thread reading each file and inserting its bytes keyed by
//!   its BeskedId into a fresh WAL database, 500 per transaction, no parsing;
//! - beskedhent: `beskedhent import DIR` into a fresh database, as a child process, with its
//!   wall time and peak resident memory (from `wait4`);
//! - with BENCH_BASELINE_BIN naming another build of `beskedhent` (say, the previous release),
//!   the same import with that build into another fresh database;
//! - the baseline again, last, to show how far the disk's speed drifted meanwhile.

use std::process::Command;

#[path = "../tests/support/sample.rs"]
mod sample;
use sample::{UuidGenerator, status_envelope};

mod common;

fn main() {
    let count: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("envelopes");
    std::fs::create_dir(&input).expect("mkdir");

    let mut ids = UuidGenerator::new(0x5eed);
    let mut bytes = 0usize;
    let mut besked_ids = Vec::with_capacity(count);
    for n in 0..count {
        let besked_id = ids.next_uuid();
        let envelope = status_envelope(&besked_id, &ids.next_uuid(), (n % 60) as u32);
        bytes += envelope.len();
        std::fs::write(input.join(format!("{n:07}.xml")), envelope).expect("write");
        besked_ids.push(besked_id);
    }
    println!("machine: {}", common::machine());
    println!(
        "{count} envelopes, {:.0} bytes each on average, {:.1} MiB in all",
        bytes as f64 / count as f64,
        bytes as f64 / 1048576.0
    );

    // Each phase starts with the disk quiet, so one phase's writeback does not slow the next.
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let baseline = common::bare_insert(&input, &besked_ids, &dir.path().join("baseline.db"), 500);
    println!(
        "baseline   (read + bare insert, no parsing): {:>8.0} envelopes/s  ({:.2} s)",
        count as f64 / baseline,
        baseline
    );

    std::fs::write(
        dir.path().join("config.toml"),
        "database = \"replica.db\"\n",
    )
    .expect("config");
    // SAFETY: as above.
    unsafe { libc::sync() };
    let run = common::run_measured(
        Command::new(env!("CARGO_BIN_EXE_beskedhent"))
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .arg("import")
            .arg(&input),
    );
    assert!(
        run.exit_code == 0,
        "beskedhent import failed with exit code {}",
        run.exit_code
    );
    let db = rusqlite::Connection::open(dir.path().join("replica.db")).expect("open");
    let stored: i64 = db
        .query_row("SELECT count(*) FROM print_status", [], |row| row.get(0))
        .expect("count");
    assert_eq!(
        stored as usize, count,
        "every envelope is a print_status row"
    );
    println!(
        "beskedhent (parse + store + derive):         {:>8.0} envelopes/s  ({:.2} s), peak RSS {:.1} MiB, CPU {:.2} s user + {:.2} s system",
        count as f64 / run.seconds,
        run.seconds,
        run.peak_rss_mib,
        run.user_seconds,
        run.system_seconds
    );
    println!(
        "beskedhent runs at {:.0}% of the baseline's rate",
        100.0 * baseline / run.seconds
    );
    if let Ok(other) = std::env::var("BENCH_BASELINE_BIN") {
        std::fs::write(dir.path().join("other.toml"), "database = \"other.db\"\n").expect("config");
        // SAFETY: as above.
        unsafe { libc::sync() };
        let previous = common::run_measured(
            Command::new(other)
                .arg("--config")
                .arg(dir.path().join("other.toml"))
                .arg("import")
                .arg(&input),
        );
        assert_eq!(previous.exit_code, 0, "the baseline build's import failed");
        println!(
            "baseline build (BENCH_BASELINE_BIN):         {:>8.0} envelopes/s  ({:.2} s), peak RSS {:.1} MiB, CPU {:.2} s user + {:.2} s system",
            count as f64 / previous.seconds,
            previous.seconds,
            previous.peak_rss_mib,
            previous.user_seconds,
            previous.system_seconds
        );
        println!(
            "this build runs at {:.0}% of the baseline build's rate",
            100.0 * previous.seconds / run.seconds
        );
    }
    // The baseline again, last: the disk of a virtual machine slows down and speeds up
    // between phases, and a baseline measured only first would hide it.
    // SAFETY: as above.
    unsafe { libc::sync() };
    let again = common::bare_insert(&input, &besked_ids, &dir.path().join("again.db"), 500);
    println!(
        "baseline again, last:                        {:>8.0} envelopes/s  ({:.2} s); beskedhent at {:.0}% of the mean of both",
        count as f64 / again,
        again,
        100.0 * (baseline + again) / 2.0 / run.seconds
    );
}
