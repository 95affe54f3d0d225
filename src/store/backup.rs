//! `backup`: a consistent copy of the replica through SQLite's online backup, safe while a
//! `sync` writes (it copies one snapshot, in a read transaction a writer does not wait for).

use std::fs::OpenOptions;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rusqlite::Connection;
use rusqlite::backup::{Backup, StepResult};

use super::{SCHEMA_VERSION, Store};

/// Set to skip the copy taken before a schema migration (e.g. when there is no room for it
/// and a backup was made another way).
pub const SKIP_UPGRADE_BACKUP_ENV: &str = "BESKEDHENT_SKIP_UPGRADE_BACKUP";

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct BackedUp {
    pub path: PathBuf,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Store {
    /// Copies the database to `dest` (which must not exist), mode 0600, as one self-contained
    /// file (no WAL), and checks the copy with `integrity_check` before it is put in place:
    /// until then it lives under a temporary name beside `dest`.
    pub fn backup_to(&self, dest: &Path) -> Result<BackedUp> {
        let started = Instant::now();
        if dest.is_dir() {
            bail!(
                "`{}` is a directory; give the path of the new file, e.g. `{}`",
                dest.display(),
                dest.join("replica-backup.db").display()
            );
        }
        if dest.exists() || dest.is_symlink() {
            bail!(
                "`{}` exists already; a backup never overwrites: choose a new name or remove it",
                dest.display()
            );
        }
        // The names of the replica's own files beside it, beside the path configured and beside
        // the real file it may link to: SQLite would take a file there for the replica's
        // journal, WAL or shared memory, and a feed's run would write its pid into a lock file.
        if let Some(name) = dest.file_name() {
            let real_dir = |dir: Option<&Path>| {
                let dir = match dir {
                    Some(dir) if !dir.as_os_str().is_empty() => dir,
                    _ => Path::new("."),
                };
                std::fs::canonicalize(dir).ok()
            };
            let dest_dir = real_dir(dest.parent());
            let databases = [
                Some(self.path.clone()),
                std::fs::canonicalize(&self.path).ok(),
            ];
            let own = databases.iter().flatten().any(|database| {
                database.file_name().is_some_and(|own| {
                    dest_dir.is_some()
                        && real_dir(database.parent()) == dest_dir
                        && super::is_claimed_file_name(own.as_bytes(), name.as_bytes())
                })
            });
            if own {
                bail!(
                    "`{}` is the name of one of the replica's own files (SQLite would take it for the replica's journal, or a run for its lock); choose another name",
                    dest.display()
                );
            }
        }
        let (dir, partial) = temporary_beside(dest, "partial")?;
        if !dir.is_dir() {
            bail!(
                "the directory `{}` of the backup does not exist; create it first",
                dir.display()
            );
        }
        let result = self.copy_checked(&partial).and_then(|()| {
            // A link, not a rename: it fails rather than replace a file that appeared at
            // `dest` in the meantime.
            std::fs::hard_link(&partial, dest).map_err(|error| {
                if error.kind() == std::io::ErrorKind::AlreadyExists {
                    anyhow::anyhow!(
                        "`{}` appeared while the copy was made; a backup never overwrites: choose a new name",
                        dest.display()
                    )
                } else {
                    anyhow::Error::new(error).context(format!("cannot create `{}`", dest.display()))
                }
            })?;
            if let Ok(dir) = std::fs::File::open(&dir) {
                let _ = dir.sync_all();
            }
            Ok(())
        });
        // The temporary name goes in every case, and whatever SQLite made beside it.
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let mut path = partial.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
        if let Err(error) = result {
            return Err(error.context(format!("backup to `{}` failed", dest.display())));
        }
        Ok(BackedUp {
            path: dest.to_path_buf(),
            bytes: std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0),
            elapsed: started.elapsed(),
        })
    }

    fn copy_checked(&self, partial: &Path) -> Result<()> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(partial)
            .with_context(|| format!("cannot create `{}`", partial.display()))?;
        let mut copy = Connection::open(partial)
            .with_context(|| format!("cannot open `{}`", partial.display()))?;
        {
            let backup = Backup::new(&self.conn, &mut copy)?;
            // All pages in one step: one read transaction, so one consistent snapshot, which
            // in WAL mode does not hold up a writer.
            loop {
                match backup.step(-1)? {
                    StepResult::Done => break,
                    StepResult::More => {}
                    StepResult::Busy | StepResult::Locked => {
                        std::thread::sleep(Duration::from_millis(100))
                    }
                    _ => {}
                }
            }
        }
        // One file, readable by sqlite3 on its own.
        copy.pragma_update_and_check(None, "journal_mode", "DELETE", |_| Ok(()))?;
        let verdict: String = copy.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
        if verdict != "ok" {
            bail!("the copy failed its integrity check: {verdict}");
        }
        copy.close().map_err(|(_, error)| error)?;
        std::fs::File::open(partial)?.sync_all()?;
        Ok(())
    }

    /// Before a migration of an existing replica: a backup beside it,
    /// `<database>.schema<version>.bak`, unless [`SKIP_UPGRADE_BACKUP_ENV`] is set.
    pub(super) fn backup_before_upgrade(&self, version: usize) -> Result<()> {
        if std::env::var_os(SKIP_UPGRADE_BACKUP_ENV).is_some() {
            tracing::warn!(
                "{SKIP_UPGRADE_BACKUP_ENV} is set: migrating schema {version} to {SCHEMA_VERSION} without a backup"
            );
            return Ok(());
        }
        let first = PathBuf::from(format!("{}.schema{version}.bak", self.path.display()));
        // A name of its own when that one is taken (an earlier upgrade, or another process
        // upgrading at this moment).
        let other = PathBuf::from(format!(
            "{}.schema{version}-{}-{}.bak",
            self.path.display(),
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
            std::process::id()
        ));
        let done = if first.exists() {
            self.backup_to(&other)
        } else {
            self.backup_to(&first).or_else(|error| {
                if first.exists() {
                    self.backup_to(&other)
                } else {
                    Err(error)
                }
            })
        };
        let done = done.with_context(|| {
            format!(
                "the database is not migrated (schema {version} to {SCHEMA_VERSION}) without a backup; make room for a copy of it, or take a backup yourself (`beskedhent backup PATH` with the previous version) and set {SKIP_UPGRADE_BACKUP_ENV}=1"
            )
        })?;
        // A warning, so it is seen: a copy of the whole replica now takes disk space.
        tracing::warn!(
            backup = %done.path.display(),
            "migrating schema {version} to {SCHEMA_VERSION}; the replica as it was is kept in the backup (delete it once this version has run well)"
        );
        Ok(())
    }
}

/// The directory of `path` and a hidden name in it for a file on its way to `path`:
/// `.<name>.<tag>-<pid>`, so it is renamed or linked into place within one file system.
pub fn temporary_beside(path: &Path, tag: &str) -> Result<(PathBuf, PathBuf)> {
    let dir = match path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("`{}` does not name a file", path.display()))?;
    let temporary = dir.join(format!(
        ".{}.{tag}-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    Ok((dir, temporary))
}
