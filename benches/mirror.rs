//! Mirror benchmark: `cargo bench --bench mirror` (BENCH_N sets the number of status messages,
//! default 1000000; PostgreSQL's server installed, as `scripts/test` does).
//!
//! Builds a replica of a year of traffic through the real write path (as the queries benchmark
//! does), starts a throwaway PostgreSQL, and times in one run:
//! - the baseline: the same rows (messages' metadata, statuses, letters, registrations) loaded
//!   with COPY into tables of text columns without keys or indexes, the least a copy into
//!   PostgreSQL does;
//! - `beskedhent mirror`'s first copy of the whole replica, with its peak memory;
//! - the steady state: how long `beskedhent mirror` takes to bring PostgreSQL up to date after
//!   a sync of 1,000 and of 50,000 new statuses (the lag a reader of PostgreSQL sees after the
//!   sync's last commit).

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[path = "../tests/support/sample.rs"]
mod sample;

#[path = "common/traffic.rs"]
mod traffic;

#[allow(dead_code)]
mod common;

#[allow(dead_code)]
#[path = "../tests/it/broker.rs"]
mod broker;

#[allow(dead_code)]
#[path = "../tests/it/postgres.rs"]
mod postgres;

const TYPES: &str = "database = \"replica.db\"
[types.digitalpost_registration]
beskedtype = \"5b1e4a32-7d0c-4a58-9b0e-1c2f3a4b5c6d\"
registered = [\"0f0e7a1c-1111-4a2b-9c3d-4e5f6a7b8c9d\"]
deregistered = [\"0f0e7a1c-2222-4a2b-9c3d-4e5f6a7b8c9d\"]
";

/// The replica's tables a mirror copies, with the columns the baseline loads.
const BASELINE: &[(&str, &str)] = &[
    (
        "message",
        "seq, besked_id, beskedtype, kind, source, received_at, created_at, transaktions_id, producer_uuid, origin",
    ),
    (
        "print_status",
        "seq, besked_id, message_uuid, letter_id, transmission_id, message_id, kanal, status, event, event_uuid, final, outcome, occurred_at, fejl_kode, fejl_tekst, afsendelse_id, forsendelse_id, forsendelse_type_id, bruger_navn, enhed_tekst, afsender_system_id, correlation_id, producer, producer_uuid",
    ),
    (
        "letter",
        "id, message_uuid, seq, event, outcome, final, kanal, occurred_at, first_seen_at, final_at, statuses, fejl_kode, fejl_tekst, afsendelse_id, transmission_id",
    ),
    (
        "registration",
        "seq, besked_id, party, party_type, channel, registered, changed_at, handling",
    ),
];

fn main() {
    let count: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let scratch = std::env::current_dir()
        .expect("cwd")
        .join("target")
        .join("bench-mirror");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    println!("machine: {}", common::machine());

    let config =
        beskedhent::config::Config::parse(TYPES, Path::new("config.toml")).expect("config");
    let mut traffic = traffic::Traffic::new(count);
    let path = scratch.join("replica.db");
    let built = traffic::build_replica(&path, &config.decoder(), &mut traffic);
    drop(built.store);
    let db = rusqlite::Connection::open(&path).expect("open");
    let rows: i64 = BASELINE
        .iter()
        .map(|(table, _)| {
            db.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get::<_, i64>(0)
            })
            .expect("count")
        })
        .sum();
    println!(
        "replica: {} statuses, {} registrations, {rows} rows to copy, built in {:.0} s ({:.0} and {:.0} messages/s over the first and last 100,000)",
        traffic.statuses, traffic.registrations, built.seconds, built.first_rate, built.last_rate
    );

    let server = postgres::Postgres::start();
    let baseline = copy_baseline(&db, &server);
    println!(
        "baseline   (COPY of the same rows as text, no keys or indexes): {:>8.0} rows/s ({baseline:.1} s)",
        rows as f64 / baseline
    );

    let database = server.database();
    let config_path = scratch.join("config.toml");
    std::fs::write(
        &config_path,
        format!(
            "{TYPES}\n[mirror]\npostgresql = \"{}\"\ninstallation = \"bench\"\n",
            server.url(&database)
        ),
    )
    .expect("config");
    let mirror = || {
        common::run_measured(
            Command::new(env!("CARGO_BIN_EXE_beskedhent"))
                .arg("--config")
                .arg(&config_path)
                .arg("mirror")
                .stdout(std::process::Stdio::null()),
        )
    };
    let first = mirror();
    assert_eq!(first.exit_code, 0, "the first mirror failed");
    println!(
        "first copy (beskedhent mirror): {:>8.0} rows/s ({:.1} s), peak RSS {:.1} MiB, CPU {:.1} s user + {:.1} s system; {:.0} % of the baseline's rate",
        rows as f64 / first.seconds,
        first.seconds,
        first.peak_rss_mib,
        first.user_seconds,
        first.system_seconds,
        100.0 * baseline / first.seconds
    );
    drop(db);

    let mut ids = sample::UuidGenerator::new(0x5eed_3117);
    for sync in [1_000usize, 50_000] {
        let mut store = beskedhent::replica::Store::open(&path, None).expect("open");
        let decoder = config.decoder();
        let batch: Vec<_> = (0..sync)
            .map(|n| {
                let raw =
                    sample::status_envelope(&ids.next_uuid(), &ids.next_uuid(), (n % 60) as u32);
                beskedhent::replica::Incoming {
                    origin: String::new(),
                    decoded: decoder.decode(raw.as_bytes()),
                    raw: beskedhent::replica::Raw::Bytes(raw.into_bytes()),
                }
            })
            .collect();
        for chunk in batch.chunks(1_000) {
            store
                .write_batch("bench", "2027-01-01T00:00:00.000Z", chunk)
                .expect("write");
        }
        drop(store);
        let started = Instant::now();
        let step = mirror();
        assert_eq!(step.exit_code, 0, "the mirror after a sync failed");
        println!(
            "after a sync of {sync:>6} statuses: PostgreSQL up to date {:.2} s after the sync's last commit (peak RSS {:.1} MiB)",
            started.elapsed().as_secs_f64(),
            step.peak_rss_mib
        );
    }
    server.stop();
    let _ = std::fs::remove_dir_all(&scratch);
}

/// COPYs the rows of [`BASELINE`] into tables of text columns; the seconds it took.
fn copy_baseline(db: &rusqlite::Connection, server: &postgres::Postgres) -> f64 {
    let database = server.database();
    let mut client = server.client(&database);
    for (table, columns) in BASELINE {
        let text: Vec<String> = columns.split(", ").map(|c| format!("{c} text")).collect();
        client
            .batch_execute(&format!("CREATE TABLE {table} ({})", text.join(", ")))
            .expect("create");
    }
    let started = Instant::now();
    for (table, columns) in BASELINE {
        let width = columns.split(", ").count();
        let mut statement = db
            .prepare(&format!("SELECT {columns} FROM {table}"))
            .expect("select");
        let mut rows = statement.query([]).expect("rows");
        let mut writer = client
            .copy_in(&format!("COPY {table} FROM STDIN (FORMAT csv)"))
            .expect("copy");
        let mut line = String::new();
        while let Some(row) = rows.next().expect("row") {
            line.clear();
            for index in 0..width {
                if index > 0 {
                    line.push(',');
                }
                let value: Option<String> = match row.get_ref(index).expect("value") {
                    rusqlite::types::ValueRef::Null => None,
                    rusqlite::types::ValueRef::Integer(n) => Some(n.to_string()),
                    rusqlite::types::ValueRef::Real(n) => Some(n.to_string()),
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        Some(String::from_utf8_lossy(t).into_owned())
                    }
                };
                if let Some(value) = value {
                    line.push('"');
                    line.push_str(&value.replace('"', "\"\""));
                    line.push('"');
                }
            }
            line.push('\n');
            writer.write_all(line.as_bytes()).expect("write");
        }
        writer.finish().expect("finish");
    }
    started.elapsed().as_secs_f64()
}
