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
use crate::progress::Counter;

/// Set to skip the copy taken before a schema migration (e.g. when there is no room for it
/// and a backup was made another way).
pub const SKIP_UPGRADE_BACKUP_ENV: &str = crate::env::SKIP_UPGRADE_BACKUP;

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
    pub fn backup_to(&self, dest: &Path, progress: &Counter) -> Result<BackedUp> {
        let started = Instant::now();
        let dir = self.check_destination(dest)?;
        let work = WorkDirectory::new(dest)
            .with_context(|| format!("backup to `{}` failed", dest.display()))?;
        // From before the directory exists until after it is gone, a signal (Ctrl-C,
        // systemctl stop) ends the run with the partial copy deleted.
        let cleanup = work.remove_on_signal();
        let result = work.create().and_then(|()| {
            let partial = work.copy();
            let _watch = progress
                .is_shown()
                .then(|| Watch::size_of(&partial, self.size(), progress.clone()));
            self.copy_checked(&partial)?;
            put_in_place(&partial, dest, &dir)
        });
        // The working directory goes in every case, with whatever SQLite made in it; then
        // signals do what they did before.
        drop(work);
        drop(cleanup);
        if let Err(error) = result {
            return Err(error.context(format!("backup to `{}` failed", dest.display())));
        }
        Ok(BackedUp {
            path: dest.to_path_buf(),
            bytes: std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0),
            elapsed: started.elapsed(),
        })
    }

    /// Refuses a destination that exists, that is one of the replica's own names, or whose
    /// directory is missing or lets others take the copy away; its directory.
    fn check_destination(&self, dest: &Path) -> Result<PathBuf> {
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
        if self.is_own_name(dest) {
            bail!(
                "`{}` is the name of one of the replica's own files (SQLite would take it for the replica's journal, or a run for its lock); choose another name",
                dest.display()
            );
        }
        let dir = match dest.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            Some(dir) => dir.to_path_buf(),
            None => PathBuf::from("."),
        };
        if !dir.is_dir() {
            bail!(
                "the directory `{}` of the backup does not exist; create it first",
                dir.display()
            );
        }
        // Where another user may rename or replace what is in it (a directory they can write,
        // without the sticky bit), the copy could be taken away or the backup made to fail.
        if let Ok(metadata) = std::fs::metadata(&dir)
            && let Some(writers) = crate::owner::other_writers_of(&dir, &metadata)
            && std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o1000 == 0
        {
            bail!(
                "the directory `{}` of the backup can be written by {writers} (mode {}), who could take the copy away; write backups into a directory only you can write",
                dir.display(),
                crate::owner::mode(&metadata)
            );
        }
        Ok(dir)
    }

    /// Whether `dest` names one of the replica's own files beside it, beside the path
    /// configured or beside the real file it may link to: SQLite would take a file there for
    /// the replica's journal, WAL or shared memory, and a feed's run would write its pid into a
    /// lock file.
    fn is_own_name(&self, dest: &Path) -> bool {
        let Some(name) = dest.file_name() else {
            return false;
        };
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
        databases.iter().flatten().any(|database| {
            database.file_name().is_some_and(|own| {
                dest_dir.is_some()
                    && real_dir(database.parent()) == dest_dir
                    && crate::files::is_claimed_file_name(own.as_bytes(), name.as_bytes())
            })
        })
    }

    fn copy_checked(&self, partial: &Path) -> Result<()> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
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
        if crate::env::skip_upgrade_backup() {
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
            self.backup_to(&other, &Counter::none())
        } else {
            self.backup_to(&first, &Counter::none()).or_else(|error| {
                if first.exists() {
                    self.backup_to(&other, &Counter::none())
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

/// A thread that counts the bytes of a file being written as progress, until dropped.
struct Watch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn size_of(path: &Path, total: u64, progress: Counter) -> Watch {
        progress.set_total(total);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (path, stopped) = (path.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(metadata) = std::fs::metadata(&path) {
                    progress.set_done(metadata.len());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Watch {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Links the checked copy into place at `dest`: a link, not a rename, so that it fails rather
/// than replace a file that appeared at `dest` in the meantime.
fn put_in_place(partial: &Path, dest: &Path, dir: &Path) -> Result<()> {
    std::fs::hard_link(partial, dest).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "`{}` appeared while the copy was made; a backup never overwrites: choose a new name",
                dest.display()
            )
        } else {
            anyhow::Error::new(error).context(format!("cannot create `{}`", dest.display()))
        }
    })?;
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The prefix of the private directories backups are built in, after the backup's name:
/// `.<name>.backup-<pid>-<random>`.
const WORK_TAG: &str = ".backup-";

/// The private directory (mode 0700) beside a backup's destination that the copy is built in,
/// so that no other user can read a partial copy or steer where it is written. It is removed
/// when dropped, and by a signal that ends the run; only SIGKILL or a crash leaves it, and
/// then the next `backup` to that directory removes it, and `forget` names it.
struct WorkDirectory {
    path: PathBuf,
}

/// The paths a signal handler deletes: set while a copy is made.
static ON_SIGNAL: std::sync::atomic::AtomicPtr<Vec<std::ffi::CString>> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

extern "C" fn remove_and_exit(_: libc::c_int) {
    const SAID: &[u8] = b"error: backup stopped by a signal; the partial copy was removed\n";
    let paths = ON_SIGNAL.load(std::sync::atomic::Ordering::SeqCst);
    if !paths.is_null() {
        // SAFETY: the vector outlives the handler's installation (see `remove_on_signal`);
        // unlink(2), rmdir(2) and _exit(2) are async-signal-safe.
        unsafe {
            let paths = &*paths;
            if let Some((directory, files)) = paths.split_last() {
                for file in files {
                    libc::unlink(file.as_ptr());
                }
                libc::rmdir(directory.as_ptr());
            }
        }
    }
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the process ends at once, as the
    // signal asked.
    unsafe {
        libc::write(2, SAID.as_ptr().cast(), SAID.len());
        libc::_exit(130)
    };
}

/// While alive, SIGINT and SIGTERM delete the working directory and end the process (exit
/// 130); the handlers that were there before come back when it is dropped.
struct SignalCleanup {
    paths: *mut Vec<std::ffi::CString>,
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl Drop for SignalCleanup {
    fn drop(&mut self) {
        for (signal, previous) in &self.previous {
            // SAFETY: puts back the disposition saved in `remove_on_signal`.
            unsafe { libc::sigaction(*signal, previous, std::ptr::null_mut()) };
        }
        ON_SIGNAL.store(std::ptr::null_mut(), std::sync::atomic::Ordering::SeqCst);
        // SAFETY: made by Box::into_raw in `remove_on_signal`; no handler can see it now.
        drop(unsafe { Box::from_raw(self.paths) });
    }
}

impl WorkDirectory {
    /// Names `.<name>.backup-<pid>-<random>` beside `dest`, removing first what a killed
    /// backup of this user left there; [`WorkDirectory::create`] makes it.
    fn new(dest: &Path) -> Result<WorkDirectory> {
        let dir = match dest.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            Some(dir) => dir.to_path_buf(),
            None => PathBuf::from("."),
        };
        remove_abandoned(&dir);
        let name = dest
            .file_name()
            .with_context(|| format!("`{}` does not name a file", dest.display()))?;
        let path = dir.join(format!(
            ".{}{WORK_TAG}{}-{}",
            name.to_string_lossy(),
            std::process::id(),
            crate::files::random_hex(6)?
        ));
        Ok(WorkDirectory { path })
    }

    /// Makes the directory, mode 0700 (and fails if anything is there already).
    fn create(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&self.path)
            .with_context(|| {
                format!(
                    "cannot create the working directory `{}`",
                    self.path.display()
                )
            })
    }

    /// Where the copy is built.
    fn copy(&self) -> PathBuf {
        self.path.join("copy.db")
    }

    /// The files SQLite may make for the copy, and the directory last.
    fn contents(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = ["copy.db", "copy.db-journal", "copy.db-wal", "copy.db-shm"]
            .iter()
            .map(|name| self.path.join(name))
            .collect();
        paths.push(self.path.clone());
        paths
    }

    fn remove_on_signal(&self) -> SignalCleanup {
        let paths: Vec<std::ffi::CString> = self
            .contents()
            .iter()
            .filter_map(|path| std::ffi::CString::new(path.as_os_str().as_bytes()).ok())
            .collect();
        let paths = Box::into_raw(Box::new(paths));
        ON_SIGNAL.store(paths, std::sync::atomic::Ordering::SeqCst);
        let mut previous = Vec::new();
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: installs a handler that only calls async-signal-safe functions, saving
            // the disposition it replaces; zeroed sigaction values are valid.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = remove_and_exit as *const () as libc::sighandler_t;
                libc::sigemptyset(&mut action.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, &action, &mut old) == 0 {
                    previous.push((signal, old));
                }
            }
        }
        SignalCleanup { paths, previous }
    }
}

impl Drop for WorkDirectory {
    fn drop(&mut self) {
        for path in self.contents() {
            if path == self.path {
                let _ = std::fs::remove_dir(&path);
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// Whether `name` is a backup's working directory, and the pid of the run that made it.
fn work_directory_pid(name: &str) -> Option<libc::pid_t> {
    let rest = name.strip_prefix('.')?;
    let (_, tail) = rest.rsplit_once(WORK_TAG)?;
    let (pid, random) = tail.split_once('-')?;
    (!random.is_empty() && random.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| pid.parse().ok())
        .flatten()
}

/// Removes the working directories in `dir` that this user's killed backups left: those whose
/// run is gone.
fn remove_abandoned(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = work_directory_pid(&name) else {
            continue;
        };
        let Ok(metadata) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        // SAFETY: kill(2) with signal 0 only asks whether the process exists.
        let running = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !metadata.is_dir() || metadata.uid() != crate::owner::euid() || running {
            continue;
        }
        let work = WorkDirectory { path: entry.path() };
        drop(work);
    }
}

/// Copies of the replica beside it that `forget` cannot reach, for it to name: every SQLite
/// database in the replica's directory but the replica (the copies taken before migrations,
/// backups written there as the README's example does) and the working directories of
/// backups that were killed.
pub fn copies_beside(database: &Path) -> Vec<String> {
    let real = crate::files::real_path(database);
    let Some(dir) = real.parent() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .flatten()
        .filter(|entry| entry.path() != real)
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            if work_directory_pid(&name).is_some() {
                return true;
            }
            let is_file = entry.file_type().is_ok_and(|kind| kind.is_file());
            is_file && is_sqlite_database(&entry.path())
        })
        .map(|entry| entry.path().display().to_string())
        .collect();
    found.sort();
    found
}

/// Whether a file starts as an SQLite database does.
fn is_sqlite_database(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 16];
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .and_then(|mut file| file.read_exact(&mut header))
        .is_ok_and(|()| &header == b"SQLite format 3\0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_work_directory_is_known_by_its_name() {
        assert_eq!(work_directory_pid(".b.db.backup-123-a1b2c3"), Some(123));
        assert_eq!(work_directory_pid(".b.db.backup-123-"), None);
        assert_eq!(work_directory_pid("b.db.backup-123-a1"), None);
        assert_eq!(work_directory_pid(".b.db.backup-x-a1"), None);
    }
}
