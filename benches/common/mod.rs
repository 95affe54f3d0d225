//! What the benchmarks share: running a command while measuring it, naming the machine, and the
//! least an import does (the baseline of `import`).

use std::process::Command;
use std::time::Instant;

/// What a measured run of a child process took.
pub struct Measured {
    pub exit_code: i32,
    pub seconds: f64,
    pub peak_rss_mib: f64,
    pub user_seconds: f64,
    pub system_seconds: f64,
}

/// Runs a command to completion and measures wall time, peak RSS and CPU time. The peak is the
/// child's own `VmHWM`, read from /proc while it runs: `wait4`'s `ru_maxrss` would also count
/// the memory of this (larger) process, which the child shares until it execs.
pub fn run_measured(command: &mut Command) -> Measured {
    let started = Instant::now();
    // The child is reaped by wait4 below, which also reports its resource use.
    #[allow(clippy::zombie_processes)]
    let child = command.spawn().expect("spawn");
    let pid = child.id() as i32;
    let status_path = format!("/proc/{pid}/status");
    let mut peak_kib = 0u64;
    let mut status = 0;
    // SAFETY: rusage is plain data, fully written by wait4 on success.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(kib) = text
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        // SAFETY: waits for our own child without blocking; pointers are valid for the call.
        let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(done >= 0, "wait4 failed");
        if done == pid {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Measured {
        exit_code: libc::WEXITSTATUS(status),
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_mib: if peak_kib > 0 {
            peak_kib as f64 / 1024.0
        } else {
            usage.ru_maxrss as f64 / 1024.0
        },
        user_seconds: seconds(usage.ru_utime),
        system_seconds: seconds(usage.ru_stime),
    }
}

/// CPU model and core count.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

/// The least an import does: reads each file `NNNNNNN.xml` of `dir` (numbered from 0, one per
/// id) and inserts its bytes under its BeskedId, `per_transaction` at a time, into a new WAL
/// database (`synchronous = NORMAL`, as `import`). Seconds taken.
#[allow(dead_code)]
pub fn bare_insert(
    dir: &std::path::Path,
    besked_ids: &[String],
    database: &std::path::Path,
    per_transaction: usize,
) -> f64 {
    let started = Instant::now();
    let mut db = rusqlite::Connection::open(database).expect("open");
    db.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
        .expect("wal");
    db.pragma_update(None, "synchronous", "NORMAL")
        .expect("synchronous");
    db.execute_batch(
        "CREATE TABLE m (seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, body BLOB NOT NULL)",
    )
    .expect("schema");
    for (chunk_index, chunk) in besked_ids.chunks(per_transaction).enumerate() {
        let tx = db.transaction().expect("begin");
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO m (id, body) VALUES (?1, ?2)")
                .expect("prepare");
            for (offset, id) in chunk.iter().enumerate() {
                let n = chunk_index * per_transaction + offset;
                let body = std::fs::read(dir.join(format!("{n:07}.xml"))).expect("read");
                insert.execute(rusqlite::params![id, body]).expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    started.elapsed().as_secs_f64()
}
