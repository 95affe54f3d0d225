//! Progress of long work (`import`, `prune`, `forget`, `reprocess`, `backup`) on standard error,
//! for a person watching a terminal: counts, rate and time left, redrawn in place a few times a
//! second and wiped when the work ends. Never shown when standard error is not a terminal, under
//! systemd's journal, or with JSON logs: logs and cron mail get the summary line only.
//!
//! The work counts through a [`Counter`] (two atomics; a counter of no progress counts nothing);
//! a thread of its own draws.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the work has done, and how much there is in all (0: not known yet).
#[derive(Clone, Default)]
pub struct Counter {
    shared: Option<Arc<Shared>>,
}

#[derive(Default)]
struct Shared {
    done: AtomicU64,
    total: AtomicU64,
    stop: AtomicBool,
}

impl Counter {
    /// A counter that counts nothing: for work nobody watches.
    pub fn none() -> Counter {
        Counter::default()
    }

    /// `count` more units done.
    pub fn add(&self, count: u64) {
        if let Some(shared) = &self.shared {
            shared.done.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// `done` units done in all (for work that measures rather than counts).
    pub fn set_done(&self, done: u64) {
        if let Some(shared) = &self.shared {
            shared.done.store(done, Ordering::Relaxed);
        }
    }

    /// How many units there are in all.
    pub fn set_total(&self, total: u64) {
        if let Some(shared) = &self.shared {
            shared.total.store(total, Ordering::Relaxed);
        }
    }

    /// Whether anyone watches (so that counting the total first is worth it).
    pub fn is_shown(&self) -> bool {
        self.shared.is_some()
    }
}

/// Progress being drawn; wiped when dropped.
pub struct Progress {
    counter: Counter,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing `what` (`import`) counting `unit` (`files`), when a person watches.
    pub fn start(what: &'static str, unit: &'static str) -> Progress {
        if !shown() {
            return Progress {
                counter: Counter::none(),
                thread: None,
            };
        }
        let shared = Arc::new(Shared::default());
        let counter = Counter {
            shared: Some(shared.clone()),
        };
        let thread = std::thread::spawn(move || draw(&shared, what, unit));
        Progress {
            counter,
            thread: Some(thread),
        }
    }

    /// The counter the work counts through.
    pub fn counter(&self) -> Counter {
        self.counter.clone()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(shared) = &self.counter.shared {
            shared.stop.store(true, Ordering::Relaxed);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether progress is shown: standard error is a terminal, not the journal, logs are text.
fn shown() -> bool {
    std::io::stderr().is_terminal()
        && !crate::env::under_journal()
        && !crate::env::log_format().trim().eq_ignore_ascii_case("json")
}

/// Redraws the line until told to stop, then wipes it.
fn draw(shared: &Shared, what: &str, unit: &str) {
    let started = Instant::now();
    let mut drawn = false;
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        // Quick work shows nothing.
        if started.elapsed() < Duration::from_secs(1) {
            continue;
        }
        let line = line(
            what,
            unit,
            shared.done.load(Ordering::Relaxed),
            shared.total.load(Ordering::Relaxed),
            started.elapsed(),
        );
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r{line}\x1b[K");
        let _ = stderr.flush();
        drawn = true;
    }
    if drawn {
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[K");
        let _ = stderr.flush();
    }
}

/// One progress line: `import: 120345 of 1000000 files (12 %), 4512/s, 3 min 15 s left`.
fn line(what: &str, unit: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64().max(0.001);
    let rate = done as f64 / seconds;
    let mut line = match (done.min(total) * 100).checked_div(total) {
        Some(percent) => format!("{what}: {done} of {total} {unit} ({percent} %)"),
        None => format!("{what}: {done} {unit}"),
    };
    line.push_str(&format!(", {rate:.0}/s"));
    if total > done && rate > 0.0 {
        // Rounded up: never "0 s left" while work is left.
        let left = ((total - done) as f64 / rate).ceil() as u64;
        line.push_str(&format!(", {} left", duration(left)));
    } else {
        line.push_str(&format!(", {} so far", duration(elapsed.as_secs())));
    }
    line
}

/// `3 min 15 s`, `2 h 5 min`, `45 s`.
fn duration(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, (seconds % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_counts_rate_and_time_left() {
        assert_eq!(
            line("import", "files", 250, 1000, Duration::from_secs(10)),
            "import: 250 of 1000 files (25 %), 25/s, 30 s left"
        );
        assert_eq!(
            line("prune", "rows", 500, 0, Duration::from_secs(125)),
            "prune: 500 rows, 4/s, 2 min 5 s so far"
        );
        assert_eq!(duration(7500), "2 h 5 min");
        assert_eq!(
            line("import", "files", 999, 1000, Duration::from_secs(10)),
            "import: 999 of 1000 files (99 %), 100/s, 1 s left"
        );
    }

    #[test]
    fn a_counter_nobody_watches_counts_nothing() {
        let counter = Counter::none();
        counter.add(5);
        counter.set_total(10);
        assert!(!counter.is_shown());
    }
}
