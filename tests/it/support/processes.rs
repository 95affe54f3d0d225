//! Processes: signalling a child, waiting (for a condition, a file, commits in the replica, a
//! process to be gone), and running the binary while watching its peak memory.

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use super::Install;

/// Sends `signal` to `child`.
pub fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
}

/// Waits until `condition` holds; fails the test, naming `what`, after `within`.
pub fn wait_for(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < within, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `path` exists; fails the test, naming `what`, after `within`.
pub fn wait_for_file(path: &Path, what: &str, within: Duration) {
    wait_for(what, within, || path.exists());
}

/// Whether process `pid` (as written in a pid file) is gone within ten seconds.
pub fn ends_soon(pid: &str) -> bool {
    let alive = Path::new("/proc").join(pid.trim());
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    !alive.exists()
}

/// Waits until the replica's cursors count at least `at_least` messages committed; fails the
/// test if `child` ends first or nothing comes within 120 s.
pub fn wait_for_commits(install: &Install, at_least: i64, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!(
                "beskedhent ended ({status}) before {at_least} messages were committed:\n{stderr}"
            );
        }
        // Never opened before beskedhent made it: opening would make an empty file.
        let committed = install.db_path().exists()
            && rusqlite::Connection::open(install.db_path())
                .and_then(|db| {
                    db.query_row("SELECT coalesce(sum(messages), 0) FROM cursor", [], |r| {
                        r.get::<_, i64>(0)
                    })
                })
                .unwrap_or(0)
                >= at_least;
        if committed {
            return;
        }
        assert!(Instant::now() < deadline, "no commit within 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs beskedhent and watches its peak memory (VmHWM, in KiB) while it runs; fails the test
/// if it runs longer than `limit` (a guard against hangs, not a performance target).
pub fn run_watched(install: &Install, args: &[&str], limit: Duration) -> (Output, u64) {
    let mut child = install
        .command(args)
        .env("BESKEDHENT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status_file = format!("/proc/{}/status", child.id());
    let started = Instant::now();
    let mut peak_kib = 0;
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let readers = [out.map(reader), err.map(reader)];
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_file)
            && let Some(line) = status.lines().find(|line| line.starts_with("VmHWM:"))
        {
            let kib: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            let [out, err] =
                readers.map(|r| r.map(|h| h.join().expect("reader")).unwrap_or_default());
            return (
                Output {
                    status,
                    stdout: out,
                    stderr: err,
                },
                peak_kib,
            );
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("beskedhent {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn reader(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}
