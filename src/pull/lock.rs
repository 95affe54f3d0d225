//! The lock of one source's run: `<database>-<source>.lock`, beside the replica's real file,
//! held by `sync` for a feed and by `import` for its source, so that two runs of one source
//! never overlap. Never written through a link or in another user's name.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a feed's lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "feed `{feed}` is being synced by another beskedhent ({holder}, lock file `{path}`); this run leaves it alone"
    )]
    Held {
        feed: String,
        holder: String,
        path: String,
    },
    /// The lock file cannot be created or opened (missing or read-only directory, ...).
    #[error(
        "cannot open lock file `{path}` of `{feed}`: {error}; check that the database's directory exists and is writable by this user"
    )]
    Io {
        feed: String,
        path: String,
        error: std::io::Error,
    },
    /// The replica belongs to another user (see `owner::check_replica`).
    #[error("{0:#}")]
    NotOurs(anyhow::Error),
    /// The lock file is not one this user made: a symbolic link, not a regular file, or
    /// another user's. Writing through it would write where that user chose.
    #[error(
        "lock file `{path}` of `{feed}` is {what}; beskedhent writes its pid into its lock files, so it never uses one that could send that write elsewhere: remove it (and see who put it there)"
    )]
    Foreign {
        feed: String,
        path: String,
        what: String,
    },
}

/// An exclusive lock on one feed, held for the feed's run: `<database>-<feed>.lock`.
pub struct FeedLock {
    _file: File,
}

impl FeedLock {
    /// Takes the lock, or says who holds it.
    ///
    /// The lock file is beside the database's real file (its links resolved), so that runs
    /// that name the replica by different paths (a symbolic link, `..`) still take one lock.
    pub fn acquire(database: &Path, feed: &str) -> Result<FeedLock, LockError> {
        // Before the lock file is created: never one the replica's owner could not open.
        crate::owner::check_replica(database).map_err(LockError::NotOurs)?;
        let path = PathBuf::from(format!(
            "{}-{feed}.lock",
            crate::files::real_path(database).display()
        ));
        let mut file = open_own(&path, feed)?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(LockError::Io {
                    feed: feed.to_owned(),
                    path: path.display().to_string(),
                    error,
                });
            }
            return Err(LockError::Held {
                feed: feed.to_owned(),
                holder: holder(&mut file),
                path: path.display().to_string(),
            });
        }
        // For people: the pid, written in place (never truncated first, so a reader never sees
        // an empty file), then cut to its length.
        let pid = format!("{}\n", std::process::id());
        let _ = file
            .write_all_at(pid.as_bytes(), 0)
            .and_then(|()| file.set_len(pid.len() as u64));
        Ok(FeedLock { _file: file })
    }
}

/// Opens (creating it, mode 0600) the lock file at `path`, never through a link, and only if it
/// is a regular file of this user's.
fn open_own(path: &Path, feed: &str) -> Result<File, LockError> {
    let io = |error| LockError::Io {
        feed: feed.to_owned(),
        path: path.display().to_string(),
        error,
    };
    let foreign = |what: String| LockError::Foreign {
        feed: feed.to_owned(),
        path: path.display().to_string(),
        what,
    };
    let not_ours = |uid: u32| {
        foreign(format!(
            "owned by user {}, not by {} who runs beskedhent",
            crate::owner::user_name(uid),
            crate::owner::user_name(crate::owner::euid())
        ))
    };
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(error) if error.raw_os_error() == Some(libc::ELOOP) => {
            return Err(foreign("a symbolic link".into()));
        }
        Err(error) => {
            // One this user may not open is most likely another user's.
            return Err(match std::fs::symlink_metadata(path) {
                Ok(metadata) if metadata.uid() != crate::owner::euid() => not_ours(metadata.uid()),
                _ => io(error),
            });
        }
    };
    let metadata = file.metadata().map_err(io)?;
    if !metadata.is_file() {
        return Err(foreign(crate::files::kind(&metadata.file_type()).into()));
    }
    if metadata.uid() != crate::owner::euid() {
        return Err(not_ours(metadata.uid()));
    }
    Ok(file)
}

/// Who holds the lock of `file`: the pid from the kernel's lock table, or what it wrote.
fn holder(file: &mut File) -> String {
    match holder_pid(file) {
        Some(pid) => format!("pid {pid}"),
        None => {
            let mut written = String::new();
            let _ = file.read_to_string(&mut written);
            match written.trim() {
                "" => "pid unknown".to_string(),
                pid => format!("pid {pid}, as it wrote"),
            }
        }
    }
}

/// The pid holding a `flock` on `file`, from the kernel's lock table (`/proc/locks`).
fn holder_pid(file: &File) -> Option<u32> {
    let inode = file.metadata().ok()?.ino();
    let table = std::fs::read_to_string("/proc/locks").ok()?;
    table.lines().find_map(|line| {
        // `1: FLOCK  ADVISORY  WRITE 12345 08:01:1234567 0 EOF`
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (kind, pid, id) = (fields.get(1)?, fields.get(4)?, fields.get(5)?);
        let lock_inode: u64 = id.rsplit(':').next()?.parse().ok()?;
        (*kind == "FLOCK" && lock_inode == inode)
            .then(|| pid.parse().ok())
            .flatten()
    })
}
