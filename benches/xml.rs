//! XML parser benchmark: `cargo bench --bench xml` (set BENCH_N to change how many times the
//! normal envelope is parsed, default 200000; `cargo bench --bench xml -- WORD` runs only the
//! 10 MiB documents whose name contains WORD, and `-- normal` only the envelope).
//!
//! Prints one row per input: its size, the time to parse it (or refuse it) and the outcome.
//! The first row is a realistic status envelope (about 3.3 KB), timed as the mean of N parses;
//! the others are 10 MiB documents built to make a parser do more than linear work, each timed
//! once.

use std::time::Instant;

#[path = "../tests/support/sample.rs"]
mod sample;
use beskedhent::decode::xml;
use sample::{UuidGenerator, hostile_documents, status_envelope};

fn main() {
    let count: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    // Cargo passes `--bench`; other arguments choose documents.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();

    let mut ids = UuidGenerator::new(0x5eed);
    let envelope = status_envelope(&ids.next_uuid(), &ids.next_uuid(), 5);
    for _ in 0..count / 10 {
        xml::parse(envelope.as_bytes()).expect("valid");
    }
    let started = Instant::now();
    for _ in 0..count {
        std::hint::black_box(xml::parse(std::hint::black_box(envelope.as_bytes())).is_ok());
    }
    let each = started.elapsed().as_secs_f64() / count as f64;
    println!("{:<44} {:>9} {:>12}  result", "input", "MiB", "time");
    println!(
        "{:<44} {:>9.4} {:>9.2} µs  {} (mean of {count})",
        "normal status envelope",
        envelope.len() as f64 / 1048576.0,
        each * 1e6,
        outcome(&xml::parse(envelope.as_bytes())),
    );
    for (name, document) in hostile_documents() {
        if !filters.is_empty() && !filters.iter().any(|filter| name.contains(filter.as_str())) {
            continue;
        }
        let started = Instant::now();
        let result = xml::parse(&document);
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{name:<44} {:>9.2} {:>9.1} ms  {}",
            document.len() as f64 / 1048576.0,
            seconds * 1e3,
            outcome(&result),
        );
    }
}

fn outcome(result: &Result<xml::Tree, xml::XmlError>) -> String {
    match result {
        Ok(tree) => format!(
            "parsed, {} elements",
            tree.descendants(xml::Tree::ROOT).len() + 1
        ),
        Err(error) => {
            let message = error.to_string();
            match message.char_indices().nth(60) {
                Some((cut, _)) => format!("refused: {}…", &message[..cut]),
                None => format!("refused: {message}"),
            }
        }
    }
}
