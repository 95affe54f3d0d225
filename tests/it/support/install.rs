//! A temporary installation: a directory holding a config file and a replica, and the binary
//! run on it.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use rusqlite::Connection;

use super::BIN;

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

/// A temporary directory holding a config file and a replica.
pub struct Install {
    pub dir: tempfile::TempDir,
}

impl Install {
    /// An installation whose config is `database = "replica.db"` followed by `extra`.
    pub fn new(extra: &str) -> Install {
        let dir = tempfile::tempdir().expect("tempdir");
        let install = Install { dir };
        install.write_config(&format!("database = \"replica.db\"\n{extra}"));
        install
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A new directory `name` in the installation.
    pub fn mkdir(&self, name: &str) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir(&dir).expect("mkdir");
        dir
    }

    pub fn config(&self) -> PathBuf {
        self.path("config.toml")
    }

    /// The configuration file's text.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(self.config()).expect("read config")
    }

    /// Replaces the configuration file's text.
    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config(), text).expect("write config");
    }

    /// Appends `text` to the configuration file.
    pub fn append_config(&self, text: &str) {
        self.write_config(&(self.config_text() + text));
    }

    /// Replaces `from` (which must be there) with `to` in the configuration file; returns the
    /// text as it was, to put back.
    pub fn replace_in_config(&self, from: &str, to: &str) -> String {
        let text = self.config_text();
        assert!(
            text.contains(from),
            "`{from}` is not in the config:\n{text}"
        );
        self.write_config(&text.replace(from, to));
        text
    }

    pub fn db_path(&self) -> PathBuf {
        self.path("replica.db")
    }

    pub fn db(&self) -> Connection {
        Connection::open(self.db_path()).expect("open replica")
    }

    /// `beskedhent --config <this config> args...`, to be given an environment, input or
    /// standard streams before it runs. It runs from another working directory, so relative
    /// paths in the config must resolve against the config file; the log filter is the
    /// environment's (`info` unless `BESKEDHENT_LOG` says otherwise).
    pub fn command<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Command {
        let mut command = Command::new(BIN);
        command
            .arg("--config")
            .arg(self.config())
            .args(args)
            .current_dir(std::env::temp_dir());
        command
    }

    /// Runs [`Install::command`], logging warnings and errors only.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_env(args, &[])
    }

    /// [`Install::run`] with `env` set as well (which may set `BESKEDHENT_LOG` too).
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args)
            .env("BESKEDHENT_LOG", "warn")
            .envs(env.iter().copied())
            .output()
            .expect("run beskedhent")
    }

    /// Runs [`Install::command`] with `input` on its standard input.
    pub fn run_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run beskedhent");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write input");
        child.wait_with_output().expect("wait")
    }

    /// Starts [`Install::command`] logging at `info`, its output piped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .env("BESKEDHENT_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn beskedhent")
    }

    /// `beskedhent import path`.
    pub fn import(&self, path: &Path) -> Output {
        self.run(&["import", path.to_str().expect("utf-8")])
    }

    /// Every one of the replica's files (the database and its WAL) where `needle` occurs, with
    /// how often: what is in their bytes, whatever the rows say.
    pub fn occurrences(&self, needle: &str) -> Vec<String> {
        let mut found = Vec::new();
        for name in ["replica.db", "replica.db-wal"] {
            let Ok(bytes) = std::fs::read(self.path(name)) else {
                continue;
            };
            let count = bytes
                .windows(needle.len())
                .filter(|window| *window == needle.as_bytes())
                .count();
            if count > 0 {
                found.push(format!("{name}: {count}"));
            }
        }
        found
    }
}
