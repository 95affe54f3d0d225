//! XML parser benchmark: `cargo bench --bench xml` (set BENCH_N to change how many times the
//! normal envelope is parsed, default 200000; `cargo bench --bench xml -- WORD` runs only the
//! 10 MiB documents whose name contains WORD, and `-- normal` only the envelope).
//!
//! Prints one row per input: its size, the time to parse it (or refuse it) and the outcome.
//! The first row is a realistic status envelope (about 3.3 KB), timed as the mean of N parses;
//! the others are 10 MiB documents built to make a parser do more than linear work, each timed
//! once.

use std::time::Instant;

use beskedhent::sample::{UuidGenerator, status_envelope};
use beskedhent::xml;

const SIZE: usize = 10 << 20;

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
    for (name, document) in pathological() {
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

/// Repeats `item(n)` for n = 0, 1, … between `head` and `tail` until the document is about
/// [`SIZE`] bytes.
fn fill(head: &str, item: impl Fn(usize) -> String, tail: &str) -> Vec<u8> {
    let mut document = String::with_capacity(SIZE + 64);
    document.push_str(head);
    let mut n = 0;
    while document.len() + tail.len() < SIZE {
        document.push_str(&item(n));
        n += 1;
    }
    document.push_str(tail);
    document.into_bytes()
}

/// Documents that cost a naive parser more than linear time (the same ones as the guard test
/// in `src/xml.rs`).
fn pathological() -> Vec<(&'static str, Vec<u8>)> {
    let declarations: String = (0..20_000)
        .map(|n| format!(" xmlns:p{n}=\"urn:p{n}\""))
        .collect();
    let half_declared = format!("<r{declarations}>");
    // Inside the root: the deepest nesting allowed (256).
    let deep = format!("{}{}", "<a>".repeat(255), "</a>".repeat(255));
    vec![
        (
            "20k xmlns on the root, then elements",
            fill(&half_declared, |n| format!("<p{}:e/>", n % 20_000), "</r>"),
        ),
        (
            "distinct namespace URIs",
            fill("<r>", |n| format!("<e xmlns=\"urn:n{n}\"/>"), "</r>"),
        ),
        (
            "distinct prefixes, one per element",
            fill("<r>", |n| format!("<p{n}:e xmlns:p{n}=\"urn:x\"/>"), "</r>"),
        ),
        (
            "one element, many attributes",
            fill("<r", |n| format!(" a{n}=\"\""), "/>"),
        ),
        (
            "one element, many prefixed attributes",
            fill("<r xmlns:p=\"urn:p\"", |n| format!(" p:a{n}=\"\""), "/>"),
        ),
        (
            "many prefixes for one URI, one attribute",
            fill(
                "<r",
                |n| format!(" xmlns:p{n}=\"urn:same\" p{n}:a{}=\"\"", n),
                "/>",
            ),
        ),
        (
            "elements with 9 attributes each",
            fill(
                "<r>",
                |_| "<e a=\"\" b=\"\" c=\"\" d=\"\" e=\"\" f=\"\" g=\"\" h=\"\" i=\"\"/>".into(),
                "</r>",
            ),
        ),
        (
            "text split by character references",
            fill("<r>", |_| "ab&#x41;".into(), "</r>"),
        ),
        (
            "attribute value full of references",
            fill("<r a=\"", |_| "&amp;&#65;".into(), "\"/>"),
        ),
        ("9 MiB element name", {
            let name = "n".repeat(9 << 20);
            format!("<{name}/>").into_bytes()
        }),
        ("5 MiB name, start and end tag", {
            let name = "n".repeat(5 << 20);
            format!("<{name}></{name}>").into_bytes()
        }),
        (
            "attribute value full of whitespace",
            fill("<r a=\"", |_| "\t\r\n ".into(), "\"/>"),
        ),
        (
            "deepest allowed nesting, repeated",
            fill("<r>", |_| deep.clone(), "</r>"),
        ),
        ("comments", fill("<r>", |_| "<!-- c -->".into(), "</r>")),
        (
            "processing instructions",
            fill("<r>", |_| "<?p d?>".into(), "</r>"),
        ),
        (
            "text with many `]]` and `>`",
            fill("<r>", |_| "]] ]>".into(), "</r>"),
        ),
        (
            "one long comment full of `-`",
            fill("<r><!--", |_| "- ".into(), "--></r>"),
        ),
        (
            "many `&` without `;`",
            fill("<r a=\"", |_| "&a".into(), "\"/>"),
        ),
        ("unclosed start tag", fill("<r", |_| " a=\"\"".into(), "")),
    ]
}
