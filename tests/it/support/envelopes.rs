//! Test ids and times, and status envelopes (from `crate::sample`) made into queue bodies or
//! written into a directory.

use std::path::Path;

pub use crate::sample::status_envelope;
use crate::sample::{Status, status_envelope_with};

/// A deterministic UUID-shaped id for test message `n`.
pub fn test_uuid(prefix: u32, n: u64) -> String {
    format!("{prefix:08x}-0000-4000-8000-{n:012x}")
}

/// The time `hours` ago, as beskedhent writes times.
pub fn ago(hours: i64) -> String {
    beskedhent::time::format_utc(chrono::Utc::now() - chrono::Duration::hours(hours))
}

/// `count` realistic status envelopes: message `n` has BeskedId `test_uuid(prefix, n)` and
/// is about letter `test_uuid(prefix + 1, n)`.
pub fn envelopes(prefix: u32, count: u64) -> Vec<Vec<u8>> {
    (0..count)
        .map(|n| {
            status_envelope(
                &test_uuid(prefix, n),
                &test_uuid(prefix + 1, n),
                (n % 60) as u32,
            )
            .into_bytes()
        })
        .collect()
}

/// Writes [`envelopes`] into `dir` (made if need be), as `000000.xml`, `000001.xml`, ...
pub fn write_envelopes(dir: &Path, prefix: u32, count: u64) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for (n, envelope) in envelopes(prefix, count).into_iter().enumerate() {
        std::fs::write(dir.join(format!("{n:06}.xml")), envelope).expect("write");
    }
}

/// Writes one status envelope into `dir` (made if need be) as `name`: BeskedId `besked_id`,
/// about `letter`, at `at`.
pub fn write_status(
    dir: &Path,
    name: &str,
    besked_id: &str,
    letter: &str,
    at: &str,
    kind: Status<'_>,
) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let envelope = status_envelope_with(besked_id, letter, &Status { at, ..kind });
    std::fs::write(dir.join(name), envelope).expect("write");
}

/// A status saying letter `test_uuid(prefix, n)` failed an hour ago (BeskedId
/// `test_uuid(prefix + 1, n)`).
pub fn failed_letter_envelope(prefix: u32, n: u64) -> String {
    status_envelope_with(
        &test_uuid(prefix + 1, n),
        &test_uuid(prefix, n),
        &Status {
            at: &ago(1),
            ..Status::FAILED
        },
    )
}

/// Writes [`failed_letter_envelope`] into `dir` (made if need be) as `n.xml`; the letter's id.
pub fn failed_letter(dir: &Path, prefix: u32, n: u64) -> String {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(
        dir.join(format!("{n}.xml")),
        failed_letter_envelope(prefix, n),
    )
    .expect("write");
    test_uuid(prefix, n)
}

/// [`failed_letter`] for `n` from 1 to `count`; their ids.
pub fn failed_letters(dir: &Path, prefix: u32, count: u64) -> Vec<String> {
    (1..=count).map(|n| failed_letter(dir, prefix, n)).collect()
}
