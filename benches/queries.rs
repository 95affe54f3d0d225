//! Query benchmark: `cargo bench --bench queries` (BENCH_N sets the number of status messages,
//! default 1000000). How writing scales with the replica's size is the `scale` benchmark's.
//!
//! Builds a replica through the real write path (envelopes generated, decoded and committed in
//! batches as `import` does): about 3 statuses per letter, sent over a year, arriving roughly
//! in time order with the statuses of neighbouring letters interleaved; 5 % of letters fail,
//! 3 % never get a final status; plus registrations of 10,000 parties. Then, in the same run:
//! - the cookbook's per-letter questions, through `letter` and through `print_status_latest`,
//!   and a letter's history by its number and (unindexed) by `message_uuid`, on a warm page
//!   cache. Each is run several times; the median is reported;
//! - operations at this size: `status --check`, the metrics file, `backup`, and `prune` and
//!   `forget` while another thread commits small batches as `sync` does (how long its commits
//!   take meanwhile); BENCH_SKIP_OPERATIONS=1 leaves them out and the replica as built, in
//!   `target/bench-queries/replica.db`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../tests/support/sample.rs"]
mod sample;
use beskedhent::replica::{Incoming, Raw, Store};
use sample::{Status, UuidGenerator, status_envelope_with};

#[path = "common/traffic.rs"]
mod traffic;
use traffic::{Traffic, YEAR_START, format_time};

#[allow(dead_code)]
mod common;

const TYPES: &str = "database = \"replica.db\"
[types.digitalpost_registration]
beskedtype = \"5b1e4a32-7d0c-4a58-9b0e-1c2f3a4b5c6d\"
registered = [\"0f0e7a1c-1111-4a2b-9c3d-4e5f6a7b8c9d\"]
deregistered = [\"0f0e7a1c-2222-4a2b-9c3d-4e5f6a7b8c9d\"]
";

fn main() {
    let count: usize = env_number("BENCH_N", 1_000_000);
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

    // The replica, through the real write path.
    let path = scratch.join("replica.db");
    let built = traffic::build_replica(&path, &decoder, &mut generator);
    let (first_rate, last_rate) = (built.first_rate, built.last_rate);
    let store = built.store;
    let messages: i64 = value(store.connection(), "SELECT count(*) FROM message");
    let letters: i64 = value(store.connection(), "SELECT count(*) FROM letter");
    println!(
        "built: {messages} messages ({} statuses, {letters} letters, {} registrations) in {:.0} s; \
         in-process write rate {first_rate:.0}/s over the first 100,000, {last_rate:.0}/s over the last",
        generator.statuses, generator.registrations, built.seconds
    );
    drop(store);
    let bytes = std::fs::metadata(&path).expect("db").len();
    println!("replica file: {:.0} MiB", bytes as f64 / 1048576.0);

    // Queries, on a read-only connection as a person with sqlite3 would use.
    let db =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open");
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
    ] {
        query(
            "one letter's latest status",
            through,
            &one.replace("{}", view),
            &[&letter],
            25,
        );
    }
    // The cookbook's history of a letter, by its number (schema 8), and as asked before it: by
    // `message_uuid`, which no index answers any more.
    query(
        "one letter's whole history",
        "print_status by letter_id",
        "SELECT occurred_at, event, producer, fejl_kode FROM print_status
         WHERE letter_id = (SELECT id FROM letter WHERE message_uuid = ?1)
         ORDER BY occurred_at, seq",
        &[&letter],
        25,
    );
    query(
        "one letter's whole history",
        "print_status by message_uuid (no index)",
        "SELECT occurred_at, event, producer, fejl_kode FROM print_status
         WHERE message_uuid = ?1 ORDER BY occurred_at, seq",
        &[&letter],
        1,
    );
    let failed = "SELECT message_uuid, occurred_at, fejl_kode, fejl_tekst FROM {}
        WHERE outcome = 'failed' AND occurred_at >= ?1 AND occurred_at < ?2";
    for (through, view, runs) in [
        ("letter", "letter", 25),
        ("print_status_latest", "print_status_latest", 25),
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

    // The change feed: everything from the start, streamed to nowhere.
    std::fs::write(
        scratch.join("feed.toml"),
        format!("database = \"{}\"\n", path.display()),
    )
    .expect("config");
    for feed in ["letters", "statuses"] {
        let run = common::run_measured(
            Command::new(env!("CARGO_BIN_EXE_beskedhent"))
                .arg("--config")
                .arg(scratch.join("feed.toml"))
                .args(["export", feed])
                .env("BESKEDHENT_LOG", "warn")
                .stdout(std::process::Stdio::null()),
        );
        assert_eq!(run.exit_code, 0, "export failed");
        let objects: i64 = value(
            &rusqlite::Connection::open(&path).expect("open"),
            &format!(
                "SELECT count(*) FROM change WHERE kind = '{}'",
                if feed == "letters" {
                    "letter"
                } else {
                    "status"
                }
            ),
        );
        println!(
            "export {feed}: {objects} objects in {:.2} s ({:.0} objects/s), peak RSS {:.1} MiB",
            run.seconds,
            objects as f64 / run.seconds,
            run.peak_rss_mib
        );
        let (rows, seconds) = bare_feed(&path, feed);
        println!(
            "  baseline: the same rows joined in seq order and written as JSON in-process: {rows} in {seconds:.2} s ({:.0} objects/s)",
            rows as f64 / seconds
        );
    }

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

/// The least a change feed does: the changed rows joined in `seq` order and written as one
/// JSON object each (to nowhere), in this process; how many and the seconds it took.
fn bare_feed(path: &Path, feed: &str) -> (u64, f64) {
    use std::io::Write as _;
    let (kind, table) = if feed == "letters" {
        ("letter", "letter")
    } else {
        ("status", "print_status")
    };
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open");
    let started = Instant::now();
    let mut statement = db
        .prepare(&format!(
            "SELECT c.seq, t.* FROM change AS c JOIN {table} AS t ON t.rowid = c.id
             WHERE c.kind = '{kind}' ORDER BY c.seq"
        ))
        .expect("select");
    let names: Vec<String> = statement.column_names().map(|n| n.to_string()).collect();
    let mut out = std::io::BufWriter::new(std::io::sink());
    let mut rows = statement.query([]).expect("rows");
    let mut count = 0;
    while let Some(row) = rows.next().expect("row") {
        let mut object = serde_json::Map::new();
        for (index, name) in names.iter().enumerate() {
            let value = match row.get_ref(index).expect("value") {
                rusqlite::types::ValueRef::Integer(n) => serde_json::Value::from(n),
                rusqlite::types::ValueRef::Text(t) => {
                    serde_json::Value::from(String::from_utf8_lossy(t).into_owned())
                }
                _ => serde_json::Value::Null,
            };
            object.insert(name.clone(), value);
        }
        serde_json::to_writer(&mut out, &object).expect("json");
        out.write_all(b"\n").expect("write");
        count += 1;
    }
    (count, started.elapsed().as_secs_f64())
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
