//! Waiting for another writer. SQLite lets one connection write at a time; a run that finds the
//! replica's write lock taken (another `import` streaming a large file, a `sqlite3` session in
//! a transaction) waits for it, says after a second that it waits and on whom, says so again
//! every half minute, and gives up after `wait_for_replica_seconds` (10 min unless configured):
//! the command then ends with exit code 5, as it does when another run holds its source's lock.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The longest a write waits for another writer before giving up, unless configured.
pub const PATIENCE: Duration = Duration::from_secs(10 * 60);

/// The longest this process waits, in seconds: [`PATIENCE`] or the configured time.
static PATIENCE_SECONDS: AtomicU64 = AtomicU64::new(PATIENCE.as_secs());

/// Makes this process wait at most `patience` for another writer.
pub fn set_patience(patience: Duration) {
    PATIENCE_SECONDS.store(patience.as_secs().max(1), Ordering::Relaxed);
}

/// The longest this process waits for another writer.
pub fn patience() -> Duration {
    Duration::from_secs(PATIENCE_SECONDS.load(Ordering::Relaxed))
}

/// A wait as people read it: `45 s`, `10 min`, `1 min 30 s`.
pub fn describe_wait(wait: Duration) -> String {
    match (wait.as_secs() / 60, wait.as_secs() % 60) {
        (0, seconds) => format!("{seconds} s"),
        (minutes, 0) => format!("{minutes} min"),
        (minutes, seconds) => format!("{minutes} min {seconds} s"),
    }
}

/// After how long a wait is said, and how often again.
const SAY_AFTER: Duration = Duration::from_secs(1);
const SAY_AGAIN: Duration = Duration::from_secs(30);

/// The replica this process writes, to name who holds it.
static REPLICA: Mutex<Option<PathBuf>> = Mutex::new(None);

thread_local! {
    /// Since when this thread waits, and when it last said so.
    static WAITING: Cell<Option<(Instant, Option<Instant>)>> = const { Cell::new(None) };
}

/// Makes `conn`, a connection to `database`, wait for other writers as described above.
pub(super) fn wait_for_writers(
    conn: &mut rusqlite::Connection,
    database: &std::path::Path,
) -> rusqlite::Result<()> {
    *REPLICA
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(database.to_path_buf());
    conn.busy_handler(Some(on_busy))
}

/// SQLite's busy handler: `attempt` counts from 0 for each statement that finds the lock
/// taken. True to try again (after a pause), false to give up.
fn on_busy(attempt: i32) -> bool {
    let now = Instant::now();
    let (since, said) = match WAITING.get() {
        Some(waiting) if attempt > 0 => waiting,
        _ => (now, None),
    };
    let waited = now - since;
    let patience = patience();
    if waited >= patience {
        WAITING.set(None);
        tracing::error!(
            "gave up waiting for the replica after {}: {}",
            describe_wait(patience),
            holders()
        );
        return false;
    }
    let said = if waited >= SAY_AFTER && said.is_none_or(|at| now - at >= SAY_AGAIN) {
        tracing::warn!(
            "waiting for the replica ({} s so far, at most {}): {}",
            waited.as_secs(),
            describe_wait(patience),
            holders()
        );
        Some(now)
    } else {
        said
    };
    WAITING.set(Some((since, said)));
    // Short pauses first (most waits are for another run's commit), then longer ones.
    let pause = Duration::from_millis(match attempt {
        0..10 => 5,
        10..50 => 25,
        _ => 100,
    });
    std::thread::sleep(pause);
    true
}

/// Who holds the replica, as far as its lock files tell: the runs of other sources at work.
fn holders() -> String {
    let replica = REPLICA
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    let runs = replica
        .map(|database| crate::files::runs_holding(&database))
        .unwrap_or_default();
    if runs.is_empty() {
        "another program holds its write lock (a `sqlite3` session in a transaction, say)".into()
    } else {
        let runs: Vec<String> = runs
            .iter()
            .map(|(source, pid)| match pid {
                Some(pid) => format!("source `{source}` (pid {pid})"),
                None => format!("source `{source}`"),
            })
            .collect();
        format!("another beskedhent run is writing it: {}", runs.join(", "))
    }
}

/// Whether `error` is SQLite's "database is locked" after waiting.
pub fn is_busy(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<rusqlite::Error>()
            .and_then(rusqlite::Error::sqlite_error_code)
            .is_some_and(|code| {
                matches!(
                    code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                )
            })
    })
}
