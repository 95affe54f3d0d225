//! Query and write-scaling benchmark: `cargo bench --bench queries` (BENCH_N sets the number of
//! status messages, default 1000000; BENCH_IMPORT_N the size of the import sets, default 100000).
//!
//! Builds a replica through the real write path (envelopes generated, decoded and committed in
//! batches as `import` does): about 3 statuses per letter, sent over a year, arriving roughly
//! in time order with the statuses of neighbouring letters interleaved; 5 % of letters fail,
//! 3 % never get a final status; plus registrations of 10,000 parties. Then, in the same run:
//! - `beskedhent import` of new envelopes into an empty replica and into the full one (rate and
//!   peak RSS of the child process);
//! - the cookbook's per-letter questions, through `letter`, through `print_status_latest`, and
//!   through the view as it was before `letter` existed (a correlated subquery), on a warm
//!   page cache. Each is run several times; the median is reported;
//! - operations at this size: `status --check`, the metrics file, `backup`, and `prune` and
//!   `forget` while another thread commits small batches as `sync` does (how long its commits
//!   take meanwhile); BENCH_SKIP_OPERATIONS=1 leaves them out and the replica as built, in
//!   `target/bench-queries/replica.db`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../tests/support/sample.rs"]
mod sample;
use beskedhent::replica::{Durability, Incoming, Raw, Store};
use sample::{Status, UuidGenerator, status_envelope_with};

mod common;

/// The view as it was in schema 1 and 2, for comparison.
const OLD_VIEW: &str = "CREATE TEMP VIEW old_latest AS SELECT p.* FROM print_status AS p
    WHERE p.message_uuid IS NOT NULL AND p.seq = (
        SELECT q.seq FROM print_status AS q WHERE q.message_uuid = p.message_uuid
        ORDER BY q.final DESC, q.occurred_at DESC, q.seq DESC LIMIT 1)";

const TYPES: &str = "database = \"replica.db\"
[types.digitalpost_registration]
beskedtype = \"5b1e4a32-7d0c-4a58-9b0e-1c2f3a4b5c6d\"
registered = [\"0f0e7a1c-1111-4a2b-9c3d-4e5f6a7b8c9d\"]
deregistered = [\"0f0e7a1c-2222-4a2b-9c3d-4e5f6a7b8c9d\"]
";

/// Start of the generated year.
const YEAR_START: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn main() {
    let count: usize = env_number("BENCH_N", 1_000_000);
    let import_count: usize = env_number("BENCH_IMPORT_N", 100_000);
    let scratch = std::env::current_dir()
        .expect("cwd")
        .join("target")
        .join("bench-queries");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    println!("machine: {}", common::machine());

    let config =
        beskedhent::config::Config::parse(TYPES, Path::new("config.toml")).expect("config");
    let decoder = config.decoder();
    let mut generator = Traffic::new(count);

    // Two sets of new envelopes as files, for `import` into an empty and into a full replica.
    let empty_set = scratch.join("set-empty");
    let full_set = scratch.join("set-full");
    for dir in [&empty_set, &full_set] {
        std::fs::create_dir(dir).expect("mkdir");
        let mut ids = UuidGenerator::new(dir.as_os_str().len() as u64 ^ 0xfeed);
        for n in 0..import_count {
            let at = format_time(YEAR_START + 366 * 86_400 + n as i64);
            let envelope = status_envelope_with(
                &ids.next_uuid(),
                &ids.next_uuid(),
                &Status {
                    at: &at,
                    ..Status::SENT
                },
            );
            std::fs::write(dir.join(format!("{n:07}.xml")), envelope).expect("write");
        }
    }
    std::fs::write(
        scratch.join("empty.toml"),
        format!(
            "database = \"{}\"\n{}",
            scratch.join("empty.db").display(),
            TYPES.lines().skip(1).collect::<Vec<_>>().join("\n")
        ),
    )
    .expect("config");
    std::fs::write(
        scratch.join("full.toml"),
        format!(
            "database = \"{}\"\n{}",
            scratch.join("replica.db").display(),
            TYPES.lines().skip(1).collect::<Vec<_>>().join("\n")
        ),
    )
    .expect("config");

    // The replica, through the real write path.
    let path = scratch.join("replica.db");
    let mut store = Store::open(&path, None).expect("open");
    store
        .set_durability(Durability::Normal)
        .expect("durability");
    let started = Instant::now();
    let mut window = Instant::now();
    let mut first_rate = 0.0;
    let mut last_rate = 0.0;
    let mut written = 0usize;
    let mut batch = Vec::with_capacity(1000);
    while let Some(raw) = generator.next() {
        batch.push(Incoming {
            origin: String::new(),
            decoded: decoder.decode(raw.as_bytes()),
            raw: Raw::Bytes(raw.into_bytes()),
        });
        if batch.len() == 1000 {
            store
                .write_batch("bench", "2027-01-01T00:00:00.000Z", &batch)
                .expect("write");
            batch.clear();
            written += 1000;
            if written.is_multiple_of(100_000) {
                let rate = 100_000.0 / window.elapsed().as_secs_f64();
                if written == 100_000 {
                    first_rate = rate;
                }
                last_rate = rate;
                window = Instant::now();
            }
        }
    }
    if !batch.is_empty() {
        store
            .write_batch("bench", "2027-01-01T00:00:00.000Z", &batch)
            .expect("write");
    }
    let messages: i64 = value(store.connection(), "SELECT count(*) FROM message");
    let letters: i64 = value(store.connection(), "SELECT count(*) FROM letter");
    println!(
        "built: {messages} messages ({} statuses, {letters} letters, {} registrations) in {:.0} s; \
         in-process write rate {first_rate:.0}/s over the first 100,000, {last_rate:.0}/s over the last",
        generator.statuses,
        generator.registrations,
        started.elapsed().as_secs_f64()
    );
    drop(store);
    let bytes = std::fs::metadata(&path).expect("db").len();
    println!("replica file: {:.0} MiB", bytes as f64 / 1048576.0);

    // Import: empty replica, then the full one.
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let empty = import(&scratch.join("empty.toml"), &empty_set, import_count);
    unsafe { libc::sync() };
    let full = import(&scratch.join("full.toml"), &full_set, import_count);
    println!(
        "import into the full replica runs at {:.0}% of its rate into an empty one",
        100.0 * full / empty
    );

    // Queries, on a read-only connection as a person with sqlite3 would use.
    let db =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open");
    db.execute_batch(OLD_VIEW).expect("old view");
    let letter = generator.some_letter.clone();
    let day = format_time(YEAR_START + 200 * 86_400)[..10].to_owned();
    let next_day = format_time(YEAR_START + 201 * 86_400)[..10].to_owned();
    let window_start = format_time(YEAR_START + 150 * 86_400);
    let window_end = format_time(YEAR_START + 180 * 86_400);
    // Overdue: non-final with the latest status more than 14 days before the end of the data.
    let overdue_before = format_time(YEAR_START + 351 * 86_400);
    let party = generator.some_party.clone();

    println!();
    println!("| question | through | median | rows |");
    println!("|---|---|---|---|");
    let query = |question: &str, through: &str, sql: &str, params: &[&str], runs: usize| {
        let (median, rows) = time_query(&db, sql, params, runs);
        println!(
            "| {question} | {through} | {} | {rows} |",
            format_duration(median)
        );
    };
    let one = "SELECT * FROM {} WHERE message_uuid = ?1";
    for (through, view) in [
        ("letter", "letter"),
        ("print_status_latest", "print_status_latest"),
        ("old view", "old_latest"),
    ] {
        query(
            "one letter's latest status",
            through,
            &one.replace("{}", view),
            &[&letter],
            25,
        );
    }
    let failed = "SELECT message_uuid, occurred_at, fejl_kode, fejl_tekst FROM {}
        WHERE outcome = 'failed' AND occurred_at >= ?1 AND occurred_at < ?2";
    for (through, view, runs) in [
        ("letter", "letter", 25),
        ("print_status_latest", "print_status_latest", 25),
        ("old view", "old_latest", 3),
    ] {
        query(
            "failed letters on one day",
            through,
            &failed.replace("{}", view),
            &[&day, &next_day],
            runs,
        );
    }
    let counts = "SELECT outcome, count(*) FROM {}
        WHERE occurred_at >= ?1 AND occurred_at < ?2 GROUP BY outcome";
    for (through, view, runs) in [
        ("letter", "letter", 10),
        ("print_status_latest", "print_status_latest", 10),
        ("old view", "old_latest", 1),
    ] {
        query(
            "outcome counts, latest status in 30 days",
            through,
            &counts.replace("{}", view),
            &[&window_start, &window_end],
            runs,
        );
    }
    let overdue = "SELECT message_uuid, event, occurred_at FROM {}
        WHERE final = 0 AND occurred_at < ?1";
    for (through, view, runs) in [
        ("letter", "letter", 10),
        ("print_status_latest", "print_status_latest", 10),
        ("old view", "old_latest", 1),
    ] {
        query(
            "overdue letters (non-final, latest older than 14 days)",
            through,
            &overdue.replace("{}", view),
            &[&overdue_before],
            runs,
        );
    }
    query(
        "one party's current registration",
        "registration_current",
        "SELECT * FROM registration_current WHERE party = ?1",
        &[&party],
        25,
    );
    query(
        "letters per channel",
        "letter",
        "SELECT kanal, count(*) FROM letter GROUP BY kanal",
        &[],
        3,
    );
    drop(db);

    // BENCH_SKIP_OPERATIONS keeps the replica as built (say, for the sync benchmark's
    // BENCH_SYNC_REPLICA).
    if std::env::var_os("BENCH_SKIP_OPERATIONS").is_none() {
        operations(&scratch, &path, &party);
    }
}

/// Operations at this size: `status --check`, the metrics file, `backup`, `prune` and `forget`,
/// the last two while a writer commits small batches the way `sync` does, timing how long its
/// commits wait.
fn operations(scratch: &Path, path: &Path, party: &str) {
    println!();
    println!("| operation | time | note |");
    println!("|---|---|---|");
    let check = common::run_measured(
        Command::new(env!("CARGO_BIN_EXE_beskedhent"))
            .arg("--config")
            .arg(scratch.join("full.toml"))
            .args(["status", "--check"])
            .env("BESKEDHENT_LOG", "warn"),
    );
    println!(
        "| `status --check` | {} | whole process, peak RSS {:.1} MiB |",
        format_duration(Duration::from_secs_f64(check.seconds)),
        check.peak_rss_mib
    );
    let store = Store::open_existing(path).expect("open");
    let started = Instant::now();
    let text = beskedhent::ops::metrics::metrics_text(&store, None).expect("metrics");
    println!(
        "| metrics file contents | {} | {} lines |",
        format_duration(started.elapsed()),
        text.lines().count()
    );
    let copy = scratch.join("backup.db");
    let done = store
        .backup_to(&copy, &beskedhent::progress::Counter::none())
        .expect("backup");
    println!(
        "| `backup` | {} | {:.0} MiB, {:.0} MiB/s, integrity check included |",
        format_duration(done.elapsed),
        done.bytes as f64 / 1048576.0,
        done.bytes as f64 / 1048576.0 / done.elapsed.as_secs_f64()
    );
    let _ = std::fs::remove_file(&copy);
    drop(store);

    let quiet = with_writer(path, || std::thread::sleep(Duration::from_secs(3)));
    println!(
        "| (a writer alone, for comparison) | 3 s | its commits of 50 statuses: median {}, longest {} |",
        format_duration(quiet.median),
        format_duration(quiet.longest)
    );
    // Half of the year's envelopes, and the letters final in its first quarter.
    let now = chrono::Utc::now().timestamp();
    let days = |since: i64| ((now - since) / 86_400).max(1) as u32;
    let retention = beskedhent::config::RetentionConfig {
        envelope_days: days(YEAR_START + 182 * 86_400),
        status_days: days(YEAR_START + 91 * 86_400),
        ..Default::default()
    };
    let mut pruned = None;
    let busy = with_writer(path, || {
        let mut store = Store::open(path, None).expect("open");
        pruned = Some(
            store
                .prune(&retention, &beskedhent::progress::Counter::none())
                .expect("prune"),
        );
    });
    let pruned = pruned.expect("pruned");
    println!(
        "| `prune` ({} envelopes dropped, {} letters with {} statuses deleted) | {} | meanwhile a writer's commits: median {}, longest {} |",
        pruned.envelopes,
        pruned.letters,
        pruned.statuses,
        format_duration(busy.elapsed),
        format_duration(busy.median),
        format_duration(busy.longest)
    );
    let party = beskedhent::replica::Party::parse(party).expect("party");
    let mut forgotten = None;
    let busy = with_writer(path, || {
        let mut store = Store::open(path, None).expect("open");
        forgotten = Some(
            store
                .forget(&party, &beskedhent::progress::Counter::none())
                .expect("forget"),
        );
    });
    let forgotten = forgotten.expect("forgotten");
    println!(
        "| `forget` (scans every envelope; {} registrations, {} envelopes) | {} | meanwhile a writer's commits: median {}, longest {} |",
        forgotten.registrations,
        forgotten.envelopes,
        format_duration(busy.elapsed),
        format_duration(busy.median),
        format_duration(busy.longest)
    );
}

/// How a writer beside an operation fared.
struct Beside {
    elapsed: Duration,
    median: Duration,
    longest: Duration,
}

/// Runs `operation` while another thread commits batches of 50 new statuses with
/// `synchronous=FULL`, as `sync` does, one every 10 ms; the operation's time and the writer's
/// commit times.
fn with_writer(path: &Path, operation: impl FnOnce()) -> Beside {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let path = path.to_path_buf();
        std::thread::spawn(move || {
            let decoder = beskedhent::config::Config::parse(TYPES, Path::new("config.toml"))
                .expect("config")
                .decoder();
            let mut store = Store::open(&path, None).expect("open");
            let mut ids = UuidGenerator::new(now_nanos());
            let at = format_time(chrono::Utc::now().timestamp());
            let mut times = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let batch: Vec<Incoming> = (0..50)
                    .map(|_| {
                        let raw = status_envelope_with(
                            &ids.next_uuid(),
                            &ids.next_uuid(),
                            &Status {
                                at: &at,
                                ..Status::SENT
                            },
                        );
                        Incoming {
                            origin: String::new(),
                            decoded: decoder.decode(raw.as_bytes()),
                            raw: Raw::Bytes(raw.into_bytes()),
                        }
                    })
                    .collect();
                let started = Instant::now();
                store
                    .write_batch("writer", "2027-01-01T00:00:00.000Z", &batch)
                    .expect("write");
                times.push(started.elapsed());
                std::thread::sleep(Duration::from_millis(10));
            }
            times
        })
    };
    let started = Instant::now();
    operation();
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut times = writer.join().expect("writer");
    times.sort();
    Beside {
        elapsed,
        median: times.get(times.len() / 2).copied().unwrap_or_default(),
        longest: times.last().copied().unwrap_or_default(),
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn value(db: &rusqlite::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |row| row.get(0)).expect(sql)
}

/// `beskedhent import DIR` as a child process; returns envelopes per second.
fn import(config: &Path, input: &Path, count: usize) -> f64 {
    let run = common::run_measured(
        Command::new(env!("CARGO_BIN_EXE_beskedhent"))
            .arg("--config")
            .arg(config)
            .arg("import")
            .arg(input)
            .env("BESKEDHENT_LOG", "warn"),
    );
    assert_eq!(run.exit_code, 0, "import failed");
    let rate = count as f64 / run.seconds;
    println!(
        "import {count} into {}: {rate:.0} envelopes/s ({:.2} s), peak RSS {:.1} MiB, CPU {:.2} s user + {:.2} s system",
        config.file_stem().unwrap_or_default().to_string_lossy(),
        run.seconds,
        run.peak_rss_mib,
        run.user_seconds,
        run.system_seconds
    );
    rate
}

/// Runs a query `runs` times (reading every row); the median time and the row count.
fn time_query(
    db: &rusqlite::Connection,
    sql: &str,
    params: &[&str],
    runs: usize,
) -> (Duration, usize) {
    let mut statement = db.prepare(sql).expect(sql);
    let mut times = Vec::with_capacity(runs);
    let mut rows = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let mut cursor = statement
            .query(rusqlite::params_from_iter(params.iter()))
            .expect("query");
        rows = 0;
        while let Some(row) = cursor.next().expect("row") {
            let _: rusqlite::types::Value = row.get(0).expect("value");
            rows += 1;
        }
        times.push(started.elapsed());
    }
    times.sort();
    (times[times.len() / 2], rows)
}

fn format_duration(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

fn format_time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .expect("time")
        .format("%Y-%m-%dT%H:%M:%S.000Z")
        .to_string()
}

/// A year of a municipality's traffic, in arrival order.
struct Traffic {
    ids: UuidGenerator,
    letters: Vec<String>,
    /// The next step: letter `step` is sent.
    step: usize,
    total_letters: usize,
    pending: std::collections::VecDeque<String>,
    statuses: usize,
    registrations: usize,
    some_letter: String,
    some_party: String,
}

impl Traffic {
    fn new(statuses: usize) -> Traffic {
        Traffic {
            ids: UuidGenerator::new(0x1e77e5),
            letters: Vec::new(),
            step: 0,
            total_letters: statuses / 3,
            pending: std::collections::VecDeque::new(),
            statuses: 0,
            registrations: 0,
            some_letter: String::new(),
            some_party: String::new(),
        }
    }

    /// The next envelope, or None when the year is over. Each step sends letter k's first
    /// status, letter k-1's second and letter k-2's final one, and now and then a registration.
    fn next(&mut self) -> Option<String> {
        if let Some(envelope) = self.pending.pop_front() {
            return Some(envelope);
        }
        let k = self.step;
        if k >= self.total_letters + 2 {
            return None;
        }
        self.step += 1;
        let span = 365 * 86_400 / self.total_letters.max(1) as i64;
        let sent_at = |k: usize| YEAR_START + k as i64 * span;
        if k < self.total_letters {
            let letter = self.ids.next_uuid();
            if k == self.total_letters / 2 {
                self.some_letter = letter.clone();
            }
            self.letters.push(letter);
            self.push(k, sent_at(k), Status::SENT);
        }
        if k >= 1 && k - 1 < self.total_letters {
            self.push(k - 1, sent_at(k - 1) + 60, Status::RECEIVED);
        }
        if k >= 2 && k - 2 < self.total_letters {
            let n = k - 2;
            let hash = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58; // 0..63
            let status = match hash {
                0..=2 => Status::FAILED,
                3 => Status::SENT, // never final (stalled), about 3 %
                4..=9 => Status::POSTED,
                _ => Status::DELIVERED,
            };
            self.push(n, sent_at(n) + 3600 + (hash as i64) * 1800, status);
        }
        if k.is_multiple_of(100) {
            let party = format!("{:010}", 101_010_000 + (k / 100) % 10_000);
            if self.some_party.is_empty() {
                self.some_party = party.clone();
            }
            let at = sent_at(k);
            self.pending.push_back(registration(
                &self.ids.next_uuid(),
                &party,
                &format_time(at),
                (k / 100) % 3 != 2,
            ));
            self.registrations += 1;
        }
        self.pending.pop_front()
    }

    fn push(&mut self, letter: usize, at: i64, status: Status<'static>) {
        let at = format_time(at);
        let besked_id = self.ids.next_uuid();
        let envelope = status_envelope_with(
            &besked_id,
            &self.letters[letter],
            &Status { at: &at, ..status },
        );
        self.statuses += 1;
        self.pending.push_back(envelope);
    }
}

/// A DigitalPostTilmelding envelope (the test identifiers of config.toml).
fn registration(besked_id: &str, cpr: &str, at: &str, registered: bool) -> String {
    let handling = if registered {
        "0f0e7a1c-1111-4a2b-9c3d-4e5f6a7b8c9d"
    } else {
        "0f0e7a1c-2222-4a2b-9c3d-4e5f6a7b8c9d"
    };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Haendelsesbesked xmlns="urn:oio:besked:kuvert:1.0" xmlns:oio="urn:oio:sagdok:3.0.0"><BeskedId><oio:UUIDIdentifikator>{besked_id}</oio:UUIDIdentifikator></BeskedId><BeskedVersion>1.0</BeskedVersion><Beskedkuvert><Filtreringsdata><Beskedtype><oio:UUIDIdentifikator>5b1e4a32-7d0c-4a58-9b0e-1c2f3a4b5c6d</oio:UUIDIdentifikator></Beskedtype><ObjektRegistrering><Registreringstidspunkt><oio:TidsstempelDatoTid>{at}</oio:TidsstempelDatoTid></Registreringstidspunkt><ObjektId><oio:URNIdentifikator>urn:oio:cpr-nr:{cpr}</oio:URNIdentifikator></ObjektId><ObjektHandling><oio:UUIDIdentifikator>{handling}</oio:UUIDIdentifikator></ObjektHandling></ObjektRegistrering></Filtreringsdata><Leveranceinformation><Dannelsestidspunkt><oio:TidsstempelDatoTid>{at}</oio:TidsstempelDatoTid></Dannelsestidspunkt></Leveranceinformation></Beskedkuvert></Haendelsesbesked>"#
    )
}
