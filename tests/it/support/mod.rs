//! The integration tests' shared helpers, each in one place under one name (the files of this
//! folder; everything is re-exported here, so a test names `crate::support::x`):
//!
//! - `install`: a temporary installation (config and replica) and running the binary on it,
//!   with whatever environment, input or standard streams a test needs;
//! - `envelopes`: test ids, times, and status envelopes made into queue bodies or written into a
//!   directory;
//! - `processes`: signals, waiting for a file, a commit or a process to be gone, peak memory;
//! - `pull`: the pull set-up (the shared broker, a fake STS, a filled queue, the config);
//! - `notify_script`: the notify command that logs what it is sent;
//! - `users`: throwaway local users and directories they can reach.
//!
//! Below: reading a run's outcome, the replica, a file's mode and the fixtures. The envelope
//! generator shared with the benchmarks is `tests/support/sample.rs` (`crate::sample`).

mod envelopes;
mod install;
mod notify_script;
mod processes;
mod pull;
mod users;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use rusqlite::Connection;

pub use envelopes::*;
pub use install::*;
pub use notify_script::*;
pub use processes::*;
pub use pull::*;
pub use users::*;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_beskedhent");

/// The fixtures directory of this repository.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The bytes of every file in the fixtures directory `dir` (`good`, `bad`), in name order.
pub fn fixture_files(dir: &str) -> Vec<Vec<u8>> {
    let mut paths: Vec<_> = std::fs::read_dir(fixtures().join(dir))
        .expect("fixtures")
        .map(|entry| entry.expect("entry").path())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| std::fs::read(path).expect("read"))
        .collect()
}

/// Exit code, stdout and stderr as text, for assertions and their messages.
pub fn outcome(output: &Output) -> (i32, String, String) {
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs one query returning a single value.
pub fn value<T: rusqlite::types::FromSql>(db: &Connection, sql: &str) -> T {
    db.query_row(sql, [], |row| row.get(0))
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
}

/// Runs a query and renders every row as `a|b|c` (NULL as `-`).
pub fn rows(db: &Connection, sql: &str) -> Vec<String> {
    let mut statement = db
        .prepare(sql)
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    let columns = statement.column_count();
    statement
        .query_map([], |row| {
            Ok((0..columns)
                .map(|i| match row.get_ref(i).expect("column") {
                    rusqlite::types::ValueRef::Null => "-".to_string(),
                    rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                    rusqlite::types::ValueRef::Real(v) => v.to_string(),
                    rusqlite::types::ValueRef::Text(v) => String::from_utf8_lossy(v).into_owned(),
                    rusqlite::types::ValueRef::Blob(v) => format!("<{} bytes>", v.len()),
                })
                .collect::<Vec<_>>()
                .join("|"))
        })
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

/// The permission bits of `path` itself (a link is not followed), set-id and sticky bits
/// included: `0o600`, `0o1777`.
pub fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}
