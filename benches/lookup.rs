//! Bulk lookup benchmark: `cargo bench --bench lookup`. Starts the test STS and a fake
//! PostForespoerg (the tests' own, answering at once), then runs `beskedhent lookup --from FILE`
//! over lists of `BENCH_SIZES` numbers (default 500 and 5,000) at `per_second = BENCH_RATE`
//! (default 100, the most allowed), and reports the pace kept against the configured one and
//! the peak memory at each size: memory must not grow with the list. Then runs the largest list
//! again, every answer kept: the resumed run asks nothing and reads the list at file speed.

use std::process::Command;
use std::time::Duration;

#[allow(dead_code)]
mod common;

#[allow(dead_code)]
#[path = "../tests/it/broker.rs"]
mod broker;

#[allow(dead_code)]
#[path = "../tests/it/fake_sts.rs"]
mod fake_sts;

#[allow(dead_code)]
#[path = "../tests/it/fake_postforespoerg.rs"]
mod fake_postforespoerg;

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .ok()
        .map(|text| {
            text.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        })
        .unwrap_or_else(|| vec![500, 5_000]);
    let rate: f64 = std::env::var("BENCH_RATE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100.0);
    println!("machine: {}", common::machine());
    let scratch = std::env::current_dir()
        .expect("cwd")
        .join("target")
        .join("bench-lookup");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch");
    let service = fake_postforespoerg::FakePostForespoerg::start();
    let sts = fake_sts::FakeSts::start(Duration::from_secs(3600));
    let certs = broker::certs();
    println!(
        "| numbers | questions | time | questions/s | of the configured {rate}/s | peak RSS |"
    );
    println!("|---|---|---|---|---|---|");
    for (run, size) in sizes.iter().enumerate() {
        let dir = scratch.join(format!("run-{run}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "database = \"replica.db\"\n[sts]\nurl = \"{}\"\nentity_id = \"x\"\ncvr = \"29189846\"\ncertificate = \"{}\"\nprivate_key = \"{}\"\nca_file = \"{ca}\"\n[lookup]\nurl = \"{}\"\nca_file = \"{ca}\"\nper_second = {rate}\n",
                sts.url(),
                certs.path("client.pem").display(),
                certs.path("client.key").display(),
                service.url(),
                ca = certs.path("ca.pem").display(),
            ),
        )
        .expect("config");
        let list = dir.join("parties.txt");
        let numbers: Vec<String> = (0..*size)
            .map(|n| format!("{:08}", 10_000_000 + n))
            .collect();
        std::fs::write(&list, numbers.join("\n")).expect("list");
        let lookup = || {
            common::run_measured(
                Command::new(env!("CARGO_BIN_EXE_beskedhent"))
                    .arg("--config")
                    .arg(&config)
                    .args(["lookup", "--csv", "--from"])
                    .arg(&list)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null()),
            )
        };
        let measured = lookup();
        assert_eq!(measured.exit_code, 0, "lookup of {size} failed");
        let questions = size * 2;
        let pace = questions as f64 / measured.seconds;
        println!(
            "| {size} | {questions} | {:.1} s | {pace:.1} | {:.0} % | {:.1} MiB |",
            measured.seconds,
            100.0 * pace / rate,
            measured.peak_rss_mib
        );
        if run + 1 == sizes.len() {
            let resumed = lookup();
            assert_eq!(resumed.exit_code, 0);
            println!(
                "| {size}, every answer kept (a resumed run) | 0 | {:.2} s | | | {:.1} MiB |",
                resumed.seconds, resumed.peak_rss_mib
            );
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
