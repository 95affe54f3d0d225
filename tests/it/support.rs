//! Shared helpers: a temporary installation with its config, running the binary, reading the
//! replica, and generating realistic envelopes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::Connection;

pub use crate::sample::status_envelope;

pub const BIN: &str = env!("CARGO_BIN_EXE_beskedhent");

/// The fixtures directory of this repository.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A temporary directory holding a config file and a replica.
pub struct Install {
    pub dir: tempfile::TempDir,
}

/// The registration types of the test envelopes (test UUIDs).
pub const TYPES: &str = r#"
[types.digitalpost_registration]
beskedtype = "5b1e4a32-7d0c-4a58-9b0e-1c2f3a4b5c6d"
registered = ["0f0e7a1c-1111-4a2b-9c3d-4e5f6a7b8c9d"]
deregistered = ["0f0e7a1c-2222-4a2b-9c3d-4e5f6a7b8c9d"]

[types.nemsms_registration]
beskedtype = "6c2f5b43-8e1d-4b69-8c1f-2d3e4f5a6b7c"
registered = ["0f0e7a1c-1111-4a2b-9c3d-4e5f6a7b8c9d"]
deregistered = ["0f0e7a1c-2222-4a2b-9c3d-4e5f6a7b8c9d"]
"#;

impl Install {
    /// An installation whose config is `database = "replica.db"` followed by `extra`.
    pub fn new(extra: &str) -> Install {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("config.toml"),
            format!("database = \"replica.db\"\n{extra}"),
        )
        .expect("write config");
        Install { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config(&self) -> PathBuf {
        self.path("config.toml")
    }

    /// Appends `text` to the configuration file.
    pub fn append_config(&self, text: &str) {
        let mut config = std::fs::read_to_string(self.config()).expect("read config");
        config.push_str(text);
        std::fs::write(self.config(), config).expect("write config");
    }

    pub fn db_path(&self) -> PathBuf {
        self.path("replica.db")
    }

    /// Runs `beskedhent --config <this config> args...` from another working directory, so
    /// relative paths in the config must resolve against the config file.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--config")
            .arg(self.config())
            .args(args)
            .current_dir(std::env::temp_dir())
            .env("BESKEDHENT_LOG", "warn")
            .output()
            .expect("run beskedhent")
    }

    pub fn db(&self) -> Connection {
        Connection::open(self.db_path()).expect("open replica")
    }
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

/// A deterministic UUID-shaped id for test message `n`.
pub fn test_uuid(prefix: u32, n: u64) -> String {
    format!("{prefix:08x}-0000-4000-8000-{n:012x}")
}
