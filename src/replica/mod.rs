//! The SQLite replica: the only module with SQL.
//!
//! A new replica is created from `schema.sql`, the current schema; an older one is brought to
//! it by an append-only list of migrations (`schema`), tracked with `PRAGMA user_version` and
//! applied in one exclusive transaction. Every batch of incoming
//! messages is one transaction that also moves its source's `cursor` row, so a run killed at any
//! point leaves either the whole batch or none of it.

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rusqlite::Connection;

use crate::config::EventRules;

/// When refused row `rejected` is a copy of stored message `m` (the rule of schema 6, which
/// `MIGRATION_6` applied to the rows kept before it): the same BeskedId, and the envelope's
/// bytes or their beginning (a copy cut off on the way). `length` of a blob column reads no
/// content, so a large refused row that is no copy is not loaded.
macro_rules! copy_of_stored {
    () => {
        "m.besked_id = rejected.besked_id AND m.envelope_pruned_at IS NULL
             AND rejected.raw_size > 0 AND rejected.raw_size <= length(m.envelope)
             AND rejected.raw = substr(m.envelope, 1, length(rejected.raw))"
    };
}

mod backup;
mod busy;
pub mod changes;
mod health;
pub mod lookups;
pub mod mirror;
mod outbox;
pub mod queries;
mod reprocess;
mod retention;
mod runs;
mod schema;
mod search;
mod write;

pub use backup::{BackedUp, SKIP_UPGRADE_BACKUP_ENV, copies_beside};
pub use busy::{PATIENCE, describe_wait, is_busy, patience, set_patience};
pub use health::{FeedCursor, Followers, MirrorFollower, SourceHealth};
pub use outbox::{NotificationCounts, Pending};
pub use reprocess::Reprocessed;
pub use retention::{Forgotten, Party, Pruned};
pub use runs::{CursorRow, RunEnd, RunStatus, TableCounts};
pub use schema::SCHEMA_VERSION;
pub use write::{Counts, Incoming, Outcome, RAW_KEEP_MAX, RAW_PREFIX_BYTES, Raw};

/// Database page size in bytes, for new databases.
const PAGE_SIZE: i64 = 8 * 1024;
/// Page cache of a connection, in KiB.
const CACHE_KIB: u32 = 4 * 1024;
/// Page cache of `import`'s writer, in KiB, when messages are at most 64 KiB: it holds at most
/// one batch of small messages besides, so it can afford more cache for the indexes.
const IMPORT_CACHE_KIB: u32 = 24 * 1024;
/// The same when messages may be up to 1 MiB.
const IMPORT_LARGE_CACHE_KIB: u32 = 16 * 1024;
/// Page cache of a feed's writer in `sync`, in KiB, when `max_message_bytes` is at most
/// [`PULL_CACHE_AT_BYTES`] (the default); smaller in proportion above it (never under
/// [`CACHE_KIB`]), since the unacknowledged window of large messages takes more memory besides.
/// It holds the pages of the indexes that every batch touches.
const PULL_CACHE_KIB: u32 = 8 * 1024;
const PULL_CACHE_AT_BYTES: u64 = 64 * 1024;
/// WAL bytes after which a commit checkpoints: 32 MiB.
const CHECKPOINT_BYTES: i64 = 32 * 1024 * 1024;
/// The same for a feed's writer in `sync`: 256 MiB. Every batch dirties randomly placed
/// pages of the indexes keyed by UUIDs; a longer WAL lets a page written by many batches be
/// copied to the database once.
const PULL_CHECKPOINT_BYTES: i64 = 256 * 1024 * 1024;
/// The same for `import`, whose batches are larger: 512 MiB.
const IMPORT_CHECKPOINT_BYTES: i64 = 512 * 1024 * 1024;
/// After a checkpoint the WAL file is cut back to this size, so a long `import` does not leave
/// a large one behind. The writers of `sync` and `import` keep theirs at the checkpoint size
/// while they run (growing the file again after every checkpoint costs more than reusing it);
/// the file goes when the last connection closes.
const WAL_KEEP_BYTES: i64 = 64 * 1024 * 1024;

/// The page cache of a feed's writer, in KiB, for messages of up to `max_message_bytes`.
fn pull_cache_kib(max_message_bytes: usize) -> u32 {
    let scaled =
        u64::from(PULL_CACHE_KIB) * PULL_CACHE_AT_BYTES / (max_message_bytes.max(1) as u64);
    scaled.clamp(u64::from(CACHE_KIB), u64::from(PULL_CACHE_KIB)) as u32
}

/// Makes every transaction committed so far durable, for a connection whose commits do not
/// wait for the disk (`synchronous = NORMAL` in WAL mode): such a commit has written its pages
/// to the WAL file but not synced it. Syncing the file from another thread lets the next batch
/// be written meanwhile. Checkpoints sync on their own, so a page that left the WAL for the
/// database file is already durable.
#[derive(Debug, Clone)]
pub struct WalFlusher {
    wal: PathBuf,
}

impl WalFlusher {
    /// Syncs the WAL file to disk. Blocks: call it on a blocking thread.
    pub fn flush(&self) -> Result<()> {
        match OpenOptions::new().write(true).open(&self.wal) {
            Ok(file) => file
                .sync_data()
                .with_context(|| format!("cannot sync `{}` to disk", self.wal.display())),
            // Only the last connection's close removes it, after a checkpoint that synced
            // everything into the database file; the writer's connection is open.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => {
                Err(error).with_context(|| format!("cannot open `{}`", self.wal.display()))
            }
        }
    }
}

/// How commits reach the disk. Either way a killed process never leaves a half-written batch
/// or a corrupt file; they differ only after a power loss or an operating-system crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The WAL is synced before a commit returns (`synchronous=FULL`), for commits that are
    /// followed by an acknowledgement. (A feed's writer in `sync` syncs on its own instead:
    /// see [`Store::tune_for_pull`].)
    Full,
    /// Synced at checkpoints only (`synchronous=NORMAL`): a power loss can take back the last
    /// commits. Enough for `import`, whose files remain and can be imported again.
    Normal,
}

/// An open replica.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// When set, events are written to `notification` with the changes that cause them.
    events: Option<EventRules>,
}

/// Refuses a database that is not a beskedhent replica, or that SQLite would not keep whole,
/// deciding without writing anything: read-only, so that SQLite neither rolls back another
/// program's journal nor checkpoints and deletes its WAL. A replica is always in WAL mode, so
/// a database with a journal left by an unfinished transaction is another program's; a missing
/// or empty file is a new replica unless a WAL or journal is beside it; a file with two names
/// (hard links) is refused.
fn refuse_foreign(path: &Path) -> Result<()> {
    // SQLite keeps a database's journal and WAL beside its real file.
    let real = crate::files::real_path(path);
    let beside = |suffix: &str| {
        let mut name = real.as_os_str().to_owned();
        name.push(suffix);
        std::fs::metadata(PathBuf::from(name)).is_ok_and(|meta| meta.len() > 0)
    };
    let hot = beside("-journal");
    let foreign = || {
        anyhow::anyhow!(
            "`{}` is an SQLite database of another program (its tables or its schema version are not a beskedhent replica's); check `database` in the configuration",
            path.display()
        )
    };
    if std::fs::metadata(&real).map_or(true, |meta| meta.len() == 0) {
        // A missing or empty file is a new replica, unless another program's WAL or journal
        // is beside it: SQLite would throw that away on opening.
        if hot || beside("-wal") {
            bail!(
                "`{}` is missing or empty, but a `-wal` or `-journal` of another program's database is beside it (SQLite would discard it); move them away or check `database` in the configuration",
                path.display()
            );
        }
        return Ok(());
    }
    // SQLite finds a database's WAL and locks by its name: two runs writing through two names
    // of one file (hard links) would each keep a WAL of their own, and one would undo the
    // other's commits.
    if let Ok(meta) = std::fs::metadata(&real)
        && std::os::unix::fs::MetadataExt::nlink(&meta) > 1
    {
        bail!(
            "`{}` has {} names (hard links); SQLite keeps a database's WAL and locks by name, so writing through two of them loses commits: keep one name (a symbolic link is safe)",
            path.display(),
            std::os::unix::fs::MetadataExt::nlink(&meta)
        );
    }
    let conn = match Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(conn) => conn,
        Err(_) if hot => return Err(foreign()),
        Err(error) => return Err(name_database(error.into(), path)),
    };
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    let store = Store {
        events: None,
        conn,
        path: path.to_path_buf(),
    };
    match store.foreign() {
        Ok(false) => Ok(()),
        Ok(_) => Err(foreign()),
        Err(_) if hot => Err(foreign()),
        Err(error) => Err(name_database(error, path)),
    }
}

impl Store {
    /// Opens (creating it private, mode 0600, if missing) and migrates the database.
    /// `events`: the events to write with the changes that cause them (`[notify]`'s rules),
    /// for a connection that writes messages, runs or the outbox; `None` records none.
    pub fn open(path: &Path, events: Option<EventRules>) -> Result<Store> {
        crate::owner::check_replica(path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            bail!(
                "the directory `{}` of the database does not exist; create it or change `database` in the configuration",
                parent.display()
            );
        }
        // Before it is opened for writing (which would let SQLite roll back a journal or
        // checkpoint and delete a WAL), or created: another program's database is never
        // touched.
        refuse_foreign(path)?;
        create_private(path)?;
        let conn = Connection::open(path)
            .with_context(|| format!("failed to open database `{}`", path.display()))?;
        let mut store = Store {
            events,
            conn,
            path: path.to_path_buf(),
        };
        // The file may have been empty above, and written since by another program.
        if store
            .foreign()
            .map_err(|error| name_database(error, path))?
        {
            bail!(
                "`{}` is an SQLite database of another program (it has tables, but no beskedhent schema); check `database` in the configuration",
                path.display()
            );
        }
        store
            .configure()
            .map_err(|error| name_database(error.into(), path))?;
        let version = store
            .schema_version()
            .map_err(|error| name_database(error, path))?;
        if let Ok(version @ 1..) = usize::try_from(version)
            && version < SCHEMA_VERSION
        {
            store.backup_before_upgrade(version)?;
        }
        store
            .migrate()
            .map_err(|error| name_database(error, path))?;
        Ok(store)
    }

    /// Opens (and migrates) a database that must exist already: for commands that change a
    /// replica but have no business creating one (`reprocess`, `notify`, `prune`, `forget`).
    pub fn open_required(path: &Path, events: Option<EventRules>) -> Result<Store> {
        require_file(path)?;
        // A beskedhent replica, not an empty file or another program's database.
        drop(Store::open_replica_read_only(path)?);
        Store::open(path, events)
    }

    /// True for a database with tables but not a beskedhent replica's: another program's
    /// (whatever its `user_version` says; many programs set one).
    fn foreign(&self) -> Result<bool> {
        let objects: i64 =
            self.conn
                .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))?;
        // No tables but a version of its own: another program's, set up or emptied.
        Ok((objects > 0 && !self.is_replica()?) || (objects == 0 && self.schema_version()? != 0))
    }

    /// True when the database has a beskedhent schema version and the tables every version
    /// has: `message` (with its key and envelope) and `cursor`.
    fn is_replica(&self) -> Result<bool> {
        if self.schema_version()? < 1 {
            return Ok(false);
        }
        let shape: i64 = self.conn.query_row(
            "SELECT (SELECT count(*) FROM pragma_table_info('message')
                     WHERE name IN ('seq', 'besked_id', 'kind', 'envelope'))
                  + (SELECT count(*) FROM pragma_table_info('cursor')
                     WHERE name IN ('source', 'last_seq'))",
            [],
            |row| row.get(0),
        )?;
        Ok(shape == 6)
    }

    /// Opens an existing database read-only, for commands that only read (`status`): a mistyped
    /// path is an error, never a new empty database, and nothing is written (not even a
    /// migration). Like any reader of a WAL database, SQLite needs its `-shm` file.
    pub fn open_existing(path: &Path) -> Result<Store> {
        warn_if_shared(path, &require_file(path)?);
        Store::open_replica_read_only(path)
    }

    /// [`Store::open_existing`] once the file is known to be there.
    fn open_replica_read_only(path: &Path) -> Result<Store> {
        // A reader of a WAL database creates its `-shm` if missing: as another user, one the
        // replica's owner could not open.
        crate::owner::check_replica(path)?;
        refuse_foreign(path)?;
        let mut conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|error| name_database(error.into(), path))?;
        busy::wait_for_writers(&mut conn, path)?;
        let store = Store {
            events: None,
            conn,
            path: path.to_path_buf(),
        };
        let version = store
            .schema_version()
            .map_err(|error| name_database(error, path))?;
        if !store
            .is_replica()
            .map_err(|error| name_database(error, path))?
        {
            bail!(
                "`{}` is not a beskedhent database; check `database` in the configuration",
                path.display()
            );
        }
        if version > SCHEMA_VERSION as i64 {
            bail!(
                "database `{}` has a schema version newer than this beskedhent knows ({}); upgrade beskedhent",
                path.display(),
                SCHEMA_VERSION
            );
        }
        Ok(store)
    }

    /// Opens an in-memory database, for tests.
    pub fn open_in_memory() -> Result<Store> {
        let mut store = Store {
            events: None,
            conn: Connection::open_in_memory()?,
            path: PathBuf::from(":memory:"),
        };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// The database's size in bytes (its pages).
    pub fn size(&self) -> u64 {
        self.conn
            .query_row(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                [],
                |row| row.get::<_, i64>(0),
            )
            .map_or(0, i64::unsigned_abs)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&mut self) -> rusqlite::Result<()> {
        busy::wait_for_writers(&mut self.conn, &self.path)?;
        // Envelopes are 3-4 KB: large pages hold several, so B-trees stay shallow and a batch
        // touches fewer pages. Only takes effect when the database is created.
        self.conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        // WAL: readers (people running sqlite3) never block the writer. synchronous=FULL makes
        // a commit durable (the WAL is synced) before it returns, so a delivery acknowledged
        // after its commit survives even a power loss; batches make this cheap.
        self.conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        self.conn
            .pragma_update(None, "cache_size", -(CACHE_KIB as i64))?;
        self.checkpoint_after(CHECKPOINT_BYTES, WAL_KEEP_BYTES)?;
        self.conn.pragma_update(None, "foreign_keys", "ON")?;
        // Deleted content (retention, `forget`) is overwritten with zeros, not left in free
        // space where it could still be read from the file.
        self.conn.pragma_update(None, "secure_delete", "ON")?;
        Ok(())
    }

    /// Sets how commits reach the disk, and the page cache and checkpoints that suit the use:
    /// [`Durability::Full`] as after opening, or [`Durability::Normal`] as `import` writes.
    pub fn set_durability(&self, durability: Durability) -> Result<()> {
        match durability {
            Durability::Full => self.tune("FULL", CACHE_KIB, CHECKPOINT_BYTES, WAL_KEEP_BYTES),
            Durability::Normal => self.tune_for_import(0),
        }
    }

    /// Tunes the connection as `import`'s writer ([`Durability::Normal`]), with a page cache
    /// that leaves room for the messages being decoded: the largest when messages are at most
    /// 64 KiB (the default limit), a smaller one up to 1 MiB, and the default above.
    pub fn tune_for_import(&self, max_message_bytes: usize) -> Result<()> {
        let cache_kib = if max_message_bytes <= 64 * 1024 {
            IMPORT_CACHE_KIB
        } else if max_message_bytes <= 1024 * 1024 {
            IMPORT_LARGE_CACHE_KIB
        } else {
            CACHE_KIB
        };
        self.tune(
            "NORMAL",
            cache_kib,
            IMPORT_CHECKPOINT_BYTES,
            IMPORT_CHECKPOINT_BYTES,
        )
    }

    /// Tunes the connection as a feed's writer in `sync`: a larger page cache (see
    /// [`pull_cache_kib`]), a longer WAL, and commits that do not wait for the disk
    /// (`synchronous = NORMAL`): the feed makes each batch durable with [`WalFlusher::flush`]
    /// on another thread while it writes the next, and acknowledges the batch only after that.
    pub fn tune_for_pull(&self, max_message_bytes: usize) -> Result<()> {
        self.tune(
            "NORMAL",
            pull_cache_kib(max_message_bytes),
            PULL_CHECKPOINT_BYTES,
            PULL_CHECKPOINT_BYTES,
        )
    }

    /// What makes this database's committed transactions durable when commits do not wait
    /// for the disk.
    pub fn wal_flusher(&self) -> WalFlusher {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        WalFlusher {
            wal: PathBuf::from(wal),
        }
    }

    fn tune(&self, level: &str, cache_kib: u32, checkpoint: i64, wal_keep: i64) -> Result<()> {
        let result = (|| -> rusqlite::Result<()> {
            self.conn.pragma_update(None, "synchronous", level)?;
            self.conn
                .pragma_update(None, "cache_size", -i64::from(cache_kib))?;
            self.checkpoint_after(checkpoint, wal_keep)
        })();
        result.map_err(|error| name_database(error.into(), &self.path))
    }

    /// Checkpoints once the WAL holds `checkpoint` bytes (in pages of this database's own
    /// size: a replica created by an older build may have other pages than [`PAGE_SIZE`]),
    /// and keeps at most `wal_keep` bytes of WAL file after a checkpoint.
    fn checkpoint_after(&self, checkpoint: i64, wal_keep: i64) -> rusqlite::Result<()> {
        let page_size: i64 = self
            .conn
            .pragma_query_value(None, "page_size", |row| row.get(0))?;
        self.conn
            .pragma_update(None, "wal_autocheckpoint", checkpoint / page_size.max(512))?;
        self.conn
            .pragma_update_and_check(None, "journal_size_limit", wal_keep, |_| Ok(()))?;
        Ok(())
    }

    // Every method that writes names the database in its error (a full disk, a read-only
    // file): through `write` when it is one transaction, through `named` when it is several.

    /// Runs `work` in one IMMEDIATE transaction (it takes the write lock at once, so it never
    /// fails half way for a lock) and commits it; `work` gets the events to record. An error
    /// names the database.
    fn write<T>(
        &mut self,
        work: impl FnOnce(&rusqlite::Transaction<'_>, Option<EventRules>) -> Result<T>,
    ) -> Result<T> {
        let events = self.events;
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let value = work(&tx, events)?;
            tx.commit()?;
            Ok(value)
        })();
        result.map_err(|error| name_database(error, &self.path))
    }

    /// Runs `work`, which writes in transactions of its own, naming the database in its error.
    fn named<T>(&mut self, work: impl FnOnce(&mut Store) -> Result<T>) -> Result<T> {
        let result = work(self);
        result.map_err(|error| name_database(error, &self.path))
    }

    /// Fails, saying what to do, unless the database is at this build's schema version (for
    /// the read-only commands, which do not migrate).
    pub fn require_current(&self) -> Result<()> {
        let version = self.schema_version()?;
        if version < SCHEMA_VERSION as i64 {
            bail!(
                "database `{}` has schema version {version}, older than this beskedhent's {SCHEMA_VERSION}; run `beskedhent init` to migrate it",
                self.path.display()
            );
        }
        Ok(())
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))?)
    }

    /// The connection, for tests and read-only queries.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// Names the database in an error; when SQLite could not write (a read-only file, directory or
/// `-wal`/`-shm` file, as a change of user or `chmod` leaves behind), says what to check.
fn name_database(error: anyhow::Error, path: &Path) -> anyhow::Error {
    let read_only = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<rusqlite::Error>(),
            Some(rusqlite::Error::SqliteFailure(failure, _))
                if matches!(failure.code, rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen)
        )
    });
    let full = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<rusqlite::Error>(),
            Some(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == rusqlite::ErrorCode::DiskFull
        )
    });
    if read_only {
        let path = path.display();
        error.context(format!(
            "database `{path}` cannot be written: this user must be able to write `{path}`, `{path}-wal`, `{path}-shm` and their directory (check owners and modes, e.g. after running beskedhent as another user)"
        ))
    } else if full {
        error.context(format!(
            "database `{}`: its file system is full; free space there and run again (what failed to be written was not kept, and `sync` did not acknowledge it)",
            path.display()
        ))
    } else {
        error.context(format!("database `{}`", path.display()))
    }
}

/// Creates the database file with mode 0600 if it does not exist, and refuses a file that other
/// users can read.
/// The database must exist, as a regular file: for the commands that never create one, so that
/// a mistyped path is an error rather than a new empty database.
fn require_file(path: &Path) -> Result<std::fs::Metadata> {
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_file() => Ok(metadata),
        Ok(_) => bail!(
            "database `{}` is not a regular file; check `database` in the configuration",
            path.display()
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
            "database `{}` does not exist; check `database` in the configuration, or create it with `beskedhent init` or a first `import`/`sync`",
            path.display()
        ),
        Err(error) => {
            Err(error).with_context(|| format!("cannot read database `{}`", path.display()))
        }
    }
}

/// Warns when other users may read or write the database file.
fn warn_if_shared(path: &Path, metadata: &std::fs::Metadata) {
    let mode = metadata.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            database = %path.display(),
            "the database can be read by other users (mode {:o}); it holds CPR numbers: chmod 600 it",
            mode & 0o777
        );
    }
}

fn create_private(path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!(
            "database `{}` is a directory; `database` must name a file, e.g. `{}`",
            path.display(),
            path.join("replica.db").display()
        );
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let metadata = std::fs::metadata(path)
                .with_context(|| format!("failed to read `{}`", path.display()))?;
            warn_if_shared(path, &metadata);
            Ok(())
        }
        Err(error) => {
            Err(error).with_context(|| format!("failed to create database `{}`", path.display()))
        }
    }
}

#[cfg(test)]
mod tests;
