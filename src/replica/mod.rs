//! The SQLite replica: the only module with SQL.
//!
//! The schema is `schema.sql` (version 1) followed by an append-only list of migrations, tracked
//! with `PRAGMA user_version` and applied in one exclusive transaction. Every batch of incoming
//! messages is one transaction that also moves its source's `cursor` row, so a run killed at any
//! point leaves either the whole batch or none of it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::EventRules;
use crate::decode::message::{Detail, Message, Rejection};

mod backup;
mod health;
pub mod queries;
mod retention;
mod search;

use crate::decode::payload::post_status::PostStatus;
pub use backup::{BackedUp, SKIP_UPGRADE_BACKUP_ENV, copies_beside};
pub use health::SourceHealth;
pub use retention::{Forgotten, Party, Pruned};

/// Schema versions: index `i` holds the SQL that takes a database from version `i` to `i + 1`.
/// Append only; never edit a released entry.
const MIGRATIONS: &[&str] = &[
    include_str!("../../schema.sql"),
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
    MIGRATION_6,
];

/// Version 2: how much of a refused message `rejected.raw` holds (and `raw` moved to the end
/// of the row, so that a large one can be written in place without being held in memory), and
/// UUID BeskedIds in lower case so that an upper-case copy is recognised as the same message.
const MIGRATION_2: &str = "
CREATE TABLE rejected_v2 (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    source       TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    reason       TEXT NOT NULL,
    raw_sha256   TEXT NOT NULL,
    besked_id    TEXT,
    origin       TEXT,
    resolved_seq INTEGER REFERENCES message (seq),
    raw_size     INTEGER NOT NULL,
    raw_complete INTEGER NOT NULL DEFAULT 1,
    raw          BLOB NOT NULL
);
INSERT INTO rejected_v2 (id, source, received_at, reason, raw_sha256, besked_id, origin,
        resolved_seq, raw_size, raw_complete, raw)
    SELECT id, source, received_at, reason, raw_sha256, besked_id, origin, resolved_seq,
        length(raw), 1, raw FROM rejected;
DROP TABLE rejected;
ALTER TABLE rejected_v2 RENAME TO rejected;
CREATE INDEX rejected_by_sha256 ON rejected (raw_sha256);
CREATE INDEX rejected_by_time ON rejected (received_at);
UPDATE OR IGNORE message SET besked_id = lower(besked_id)
    WHERE besked_id <> lower(besked_id) AND besked_id GLOB
    '[0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f]-[0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f]-[0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f]-[0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f]-[0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f]';
UPDATE print_status SET besked_id = (SELECT besked_id FROM message WHERE seq = print_status.seq)
    WHERE besked_id <> (SELECT besked_id FROM message WHERE seq = print_status.seq);
UPDATE print_status_postal_event
    SET besked_id = (SELECT besked_id FROM message WHERE seq = print_status_postal_event.seq)
    WHERE besked_id <> (SELECT besked_id FROM message WHERE seq = print_status_postal_event.seq);
UPDATE registration SET besked_id = (SELECT besked_id FROM message WHERE seq = registration.seq)
    WHERE besked_id <> (SELECT besked_id FROM message WHERE seq = registration.seq);
";

/// A failed attempt at event `?1`: error `?2`, next attempt not before `?3`; an event sent
/// meanwhile (by another delivery) stays as it is.
const MARK_FAILED: &str = "UPDATE notification SET attempts = attempts + 1, last_error = ?2,
    next_attempt_at = ?3 WHERE id = ?1 AND sent_at IS NULL";

/// Letters overdue (no final status, first seen before `?1`) without a `letter_overdue` event.
const OVERDUE_UNRECORDED: &str = "final = 0 AND first_seen_at < ?1
    AND NOT EXISTS (SELECT 1 FROM notification
                    WHERE key = 'letter_overdue:' || letter.message_uuid)";

/// Version 3: `letter`, one row per letter (`message_uuid`) with its current status, kept up to
/// date in the same transaction as the statuses; `print_status_latest` is served from it.
/// `notification`, the outbox of events to send; `cursor.failed_runs` and `failing_since`.
const MIGRATION_3: &str = "
CREATE TABLE letter (
    message_uuid    TEXT NOT NULL PRIMARY KEY,
    seq             INTEGER NOT NULL,
    event           TEXT,
    outcome         TEXT,
    final           INTEGER NOT NULL,
    kanal           TEXT,
    occurred_at     TEXT,
    first_seen_at   TEXT,
    final_at        TEXT,
    statuses        INTEGER NOT NULL,
    fejl_kode       TEXT,
    fejl_tekst      TEXT,
    afsendelse_id   TEXT,
    transmission_id TEXT
);
CREATE INDEX letter_by_time ON letter (occurred_at, outcome);
CREATE INDEX letter_pending_by_time ON letter (occurred_at) WHERE final = 0;
CREATE INDEX letter_pending_by_first_seen ON letter (first_seen_at) WHERE final = 0;
CREATE TABLE notification (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    key             TEXT NOT NULL UNIQUE,
    event           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    occurred_at     TEXT,
    suppressed      INTEGER NOT NULL DEFAULT 0,
    sent_at         TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error      TEXT
);
CREATE INDEX notification_unsent ON notification (id) WHERE sent_at IS NULL AND suppressed = 0;
ALTER TABLE cursor ADD COLUMN failed_runs INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cursor ADD COLUMN failing_since TEXT;
DROP VIEW print_status_latest;
CREATE VIEW print_status_latest AS
SELECT l.seq AS seq, p.besked_id AS besked_id, l.message_uuid AS message_uuid,
    l.transmission_id AS transmission_id, p.message_id AS message_id, l.kanal AS kanal,
    p.status AS status, l.event AS event, p.event_uuid AS event_uuid, l.final AS final,
    l.outcome AS outcome, l.occurred_at AS occurred_at, l.fejl_kode AS fejl_kode,
    l.fejl_tekst AS fejl_tekst, l.afsendelse_id AS afsendelse_id,
    p.forsendelse_id AS forsendelse_id, p.forsendelse_type_id AS forsendelse_type_id,
    p.bruger_navn AS bruger_navn, p.enhed_tekst AS enhed_tekst,
    p.afsender_system_id AS afsender_system_id, p.correlation_id AS correlation_id,
    p.producer AS producer, p.producer_uuid AS producer_uuid
FROM letter AS l JOIN print_status AS p ON p.seq = l.seq;
";

/// Version 4: `run`, one row per run of a source (its history, where `cursor` keeps only the
/// last); `message.envelope_pruned_at`, set when retention or `forget` dropped the envelope.
const MIGRATION_4: &str = "
CREATE TABLE run (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT NOT NULL,
    command     TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    status      TEXT NOT NULL,
    messages    INTEGER NOT NULL DEFAULT 0,
    duplicates  INTEGER NOT NULL DEFAULT 0,
    rejected    INTEGER NOT NULL DEFAULT 0,
    error       TEXT
);
CREATE INDEX run_by_source ON run (source, started_at);
CREATE INDEX run_by_outcome ON run (source, status, ended_at);
INSERT INTO run (source, command, started_at, ended_at, status, error)
    SELECT source, 'unknown', run_started_at, run_ended_at,
        CASE WHEN run_status = 'running' THEN 'killed' ELSE run_status END, run_error
    FROM cursor WHERE run_started_at IS NOT NULL;
ALTER TABLE message ADD COLUMN envelope_pruned_at TEXT;
CREATE INDEX message_envelope_age ON message (created_at, received_at)
    WHERE envelope_pruned_at IS NULL;
CREATE INDEX rejected_by_resolved ON rejected (resolved_seq) WHERE resolved_seq IS NOT NULL;
";

/// Version 5: `message.envelope_sha256`, the fingerprint of an envelope kept when retention or
/// `forget` drops its bytes, so that a later copy with other content is still told apart.
const MIGRATION_5: &str = "
ALTER TABLE message ADD COLUMN envelope_sha256 TEXT;
";

/// Version 6: a refused copy of a stored message (its bytes are the message's envelope, or the
/// beginning of it: a copy cut off on the way) is taken in by that message (`resolved_seq`),
/// whichever arrived first, so it is not counted as still refused. UUID ids in `rejected` are
/// kept in lower case, as in `message`, and an index finds the unresolved copies of an id as
/// each message is stored. Other content under a stored id stays refused.
const MIGRATION_6: &str = "
UPDATE rejected SET besked_id = lower(besked_id)
    WHERE besked_id <> lower(besked_id) AND besked_id GLOB
    '[0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f]-[0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f]-[0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f]-[0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f]-[0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f]';
CREATE INDEX rejected_unresolved_by_besked_id ON rejected (besked_id)
    WHERE besked_id IS NOT NULL AND resolved_seq IS NULL;
UPDATE rejected SET resolved_seq = m.seq
FROM message AS m
WHERE rejected.resolved_seq IS NULL AND rejected.besked_id IS NOT NULL
    AND m.besked_id = rejected.besked_id AND m.envelope_pruned_at IS NULL
    AND rejected.raw_size > 0 AND rejected.raw_size <= length(m.envelope)
    AND rejected.raw = substr(m.envelope, 1, length(rejected.raw));
";

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

/// Fills `letter` from `print_status` (after the migration that adds it, and after `reprocess`
/// re-derived the statuses): per `message_uuid` the latest status under the rule of
/// `print_status_latest`, the earliest `occurred_at`, and the count.
const REBUILD_LETTERS: &str = "
DELETE FROM letter;
INSERT INTO letter (message_uuid, seq, event, outcome, final, kanal, occurred_at, first_seen_at,
        final_at, statuses, fejl_kode, fejl_tekst, afsendelse_id, transmission_id)
SELECT p.message_uuid, p.seq, p.event, p.outcome, p.final, p.kanal, p.occurred_at,
    a.first_seen_at, CASE WHEN p.final THEN p.occurred_at END, a.statuses, p.fejl_kode,
    p.fejl_tekst, p.afsendelse_id, p.transmission_id
FROM (SELECT message_uuid, count(*) AS statuses, min(occurred_at) AS first_seen_at,
          (SELECT q.seq FROM print_status AS q WHERE q.message_uuid = g.message_uuid
           ORDER BY q.final DESC, q.occurred_at DESC, q.seq DESC LIMIT 1) AS latest
      FROM print_status AS g WHERE message_uuid IS NOT NULL GROUP BY message_uuid) AS a
JOIN print_status AS p ON p.seq = a.latest;
";

/// Envelopes larger than this are written into their row in place, not bound as parameters.
const IN_PLACE_BYTES: usize = 256 * 1024;

/// Refused messages up to this size are kept whole in `rejected.raw`.
pub const RAW_KEEP_MAX: u64 = 256 * 1024 * 1024;
/// Of a refused message larger than [`RAW_KEEP_MAX`], `rejected.raw` keeps this many first
/// bytes; `raw_size` and `raw_sha256` still describe the whole message.
pub const RAW_PREFIX_BYTES: u64 = 1024 * 1024;

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

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
/// [`PULL_CACHE_AT_BYTES`]; smaller in proportion above it (never under [`CACHE_KIB`]), since
/// the unacknowledged window of large messages takes more memory besides: at the default
/// limit of 64 KiB it is 4 MiB, which keeps a window full of the largest messages a few MiB
/// within the bound.
const PULL_CACHE_KIB: u32 = 8 * 1024;
const PULL_CACHE_AT_BYTES: u64 = 32 * 1024;
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

/// The bytes of something received.
#[derive(Debug)]
pub enum Raw {
    Bytes(Vec<u8>),
    /// An open file too large to hold in memory: streamed into its `rejected` row.
    File {
        file: File,
        path: PathBuf,
        len: u64,
    },
}

impl Raw {
    /// How many bytes this holds in memory.
    pub fn held_bytes(&self) -> usize {
        match self {
            Raw::Bytes(bytes) => bytes.len(),
            Raw::File { .. } => 0,
        }
    }
}

/// One thing received, already decoded: the unit a batch is made of.
#[derive(Debug)]
pub struct Incoming {
    pub raw: Raw,
    /// Where it came from: a file path, or AMQP queue and message-id.
    pub origin: String,
    pub decoded: std::result::Result<Message, Rejection>,
}

/// What became of one [`Incoming`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    New,
    Duplicate,
    /// Refused: stored in `rejected`.
    Rejected,
    /// Its BeskedId was already stored with other bytes: this copy is stored in `rejected`.
    Conflict {
        seq: i64,
    },
}

/// Counts of one batch or run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub new: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.new += other.new;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
    }

    pub fn total(&self) -> u64 {
        self.new + self.duplicates + self.rejected
    }
}

/// How a run ended, as written to `cursor.run_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Ok,
    Failed,
    Interrupted,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// How a run ended, for [`Store::end_run`].
#[derive(Debug, Clone, Copy)]
pub struct RunEnd<'a> {
    pub ended_at: &'a str,
    pub status: RunStatus,
    pub error: Option<&'a str>,
    /// What the run stored.
    pub counts: Counts,
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

/// One `cursor` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CursorRow {
    pub source: String,
    pub last_seq: Option<i64>,
    pub last_besked_id: Option<String>,
    pub last_received_at: Option<String>,
    pub messages: i64,
    pub duplicates: i64,
    pub rejected: i64,
    pub run_started_at: Option<String>,
    pub run_ended_at: Option<String>,
    pub run_status: Option<String>,
    pub run_error: Option<String>,
}

/// An open replica.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// When set, events are written to `notification` with the changes that cause them.
    events: Option<EventRules>,
}

/// An event waiting to be sent.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: i64,
    pub key: String,
    pub event: String,
    pub payload: String,
    pub attempts: i64,
    pub created_at: String,
    pub last_error: Option<String>,
}

/// Counts of the outbox, for `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NotificationCounts {
    /// Not sent yet (including failing).
    pub pending: i64,
    /// Not sent, and at least one attempt failed.
    pub failing: i64,
    pub sent: i64,
    /// Recorded but not sent: older than `max_age_days`.
    pub suppressed: i64,
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
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|error| name_database(error.into(), path))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
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

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(std::time::Duration::from_secs(30))?;
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
        let result = self.tune_unnamed(level, cache_kib, checkpoint, wal_keep);
        self.named(result)
    }

    fn tune_unnamed(
        &self,
        level: &str,
        cache_kib: u32,
        checkpoint: i64,
        wal_keep: i64,
    ) -> Result<()> {
        self.conn.pragma_update(None, "synchronous", level)?;
        self.conn
            .pragma_update(None, "cache_size", -i64::from(cache_kib))?;
        self.checkpoint_after(checkpoint, wal_keep)?;
        Ok(())
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

    /// Brings the schema up to [`SCHEMA_VERSION`]. Running it again changes nothing.
    pub fn migrate(&mut self) -> Result<usize> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > MIGRATIONS.len() {
            bail!(
                "database `{}` has a schema version newer than this beskedhent knows ({}); upgrade beskedhent",
                self.path.display(),
                MIGRATIONS.len()
            );
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            tx.execute_batch(sql)
                .with_context(|| format!("failed to apply schema migration {}", index + 1))?;
            if index + 1 == 3 {
                // The statuses stored before `letter` existed.
                tx.execute_batch(REBUILD_LETTERS)
                    .context("failed to fill `letter` (schema migration 3)")?;
            }
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
        tx.commit()?;
        Ok(version)
    }

    // Each public method that writes names the database in its error (full disk, read-only
    // file); the `_unnamed` method beside it does the work.

    /// Names the database in an error, with a hint when it is the file system's doing.
    fn named<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|error| name_database(error, &self.path))
    }

    /// Marks the start of a run of `source` by `command` (`sync`, `daemon`, `import`); returns
    /// the run's id in `run`. A run of the same source still marked `running` ended without
    /// recording it (killed, power loss): it is marked `killed`.
    pub fn begin_run(&mut self, source: &str, command: &str, started_at: &str) -> Result<i64> {
        let result = self.begin_run_unnamed(source, command, started_at);
        self.named(result)
    }

    fn begin_run_unnamed(&mut self, source: &str, command: &str, started_at: &str) -> Result<i64> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE run SET status = 'killed' WHERE source = ?1 AND status = 'running'",
            [source],
        )?;
        tx.execute(
            "INSERT INTO cursor (source, run_started_at, run_ended_at, run_status, run_error)
             VALUES (?1, ?2, NULL, 'running', NULL)
             ON CONFLICT (source) DO UPDATE SET run_started_at = ?2, run_ended_at = NULL,
                 run_status = 'running', run_error = NULL",
            params![source, started_at],
        )?;
        tx.execute(
            "INSERT INTO run (source, command, started_at, status) VALUES (?1, ?2, ?3, 'running')",
            params![source, command, started_at],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// Marks the end of run `run` of `source`, with what it stored.
    pub fn end_run(&mut self, run: i64, source: &str, end: RunEnd<'_>) -> Result<()> {
        let result = self.end_run_unnamed(run, source, end);
        self.named(result)
    }

    fn end_run_unnamed(&mut self, run: i64, source: &str, end: RunEnd<'_>) -> Result<()> {
        let RunEnd {
            ended_at,
            status,
            error,
            counts,
        } = end;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let failed = status == RunStatus::Failed;
        let error = error.map(|text| crate::mask::cap(text, 4096).into_owned());
        tx.execute(
            "UPDATE cursor SET run_ended_at = ?2, run_status = ?3, run_error = ?4,
                 failed_runs = CASE WHEN ?5 THEN failed_runs + 1 ELSE 0 END,
                 failing_since = CASE WHEN ?5 THEN coalesce(failing_since, run_started_at)
                     ELSE NULL END
             WHERE source = ?1",
            params![source, ended_at, status.as_str(), error, failed],
        )?;
        tx.execute(
            "UPDATE run SET ended_at = ?2, status = ?3, error = ?4, messages = max(messages, ?5),
                 duplicates = max(duplicates, ?6), rejected = max(rejected, ?7)
             WHERE id = ?1",
            params![
                run,
                ended_at,
                status.as_str(),
                error,
                counts.new as i64,
                counts.duplicates as i64,
                counts.rejected as i64
            ],
        )?;
        let error = error.as_deref();
        if let Some(rules) = self.events.filter(|rules| rules.failing_runs > 0)
            && failed
        {
            let (runs, since): (i64, Option<String>) = tx.query_row(
                "SELECT failed_runs, failing_since FROM cursor WHERE source = ?1",
                [source],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            if runs >= i64::from(rules.failing_runs) {
                // One event per streak of failures: its key names the streak's start.
                let since = since.unwrap_or_default();
                record_event(
                    &tx,
                    &rules,
                    &format!("feed_failing:{source}:{since}"),
                    "feed_failing",
                    serde_json::json!({
                        "feed": source,
                        "runs": runs,
                        "error": error.map(crate::mask::clean_reason),
                    }),
                    Some(ended_at),
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records a `letter_overdue` event for every letter with no final status `days` days after
    /// it was first seen (once per letter). Returns how many were new.
    pub fn scan_overdue(&mut self, days: u32) -> Result<u64> {
        let Some(rules) = self.events else {
            return Ok(0);
        };
        if days == 0 {
            return Ok(0);
        }
        let before =
            crate::time::format_utc(chrono::Utc::now() - chrono::Duration::days(days.into()));
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // message_uuid, first_seen_at, event
        type Overdue = (String, Option<String>, Option<String>);
        let overdue: Vec<Overdue> = tx
            .prepare(&format!(
                "SELECT message_uuid, first_seen_at, event FROM letter WHERE {OVERDUE_UNRECORDED}"
            ))?
            .query_map([&before], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut recorded = 0;
        for (uuid, first_seen_at, event) in overdue {
            // The event is the letter becoming overdue, `days` after it was first seen: that is
            // what `max_age_days` is measured against, not its latest status, which is older.
            let became_overdue = first_seen_at
                .as_deref()
                .and_then(crate::time::parse_timestamp)
                .and_then(|first| first.checked_add_signed(chrono::Duration::days(days.into())))
                .and_then(crate::time::try_format_utc);
            let new = record_event(
                &tx,
                &rules,
                &format!("letter_overdue:{uuid}"),
                "letter_overdue",
                serde_json::json!({
                    "message_uuid": uuid,
                    "first_seen_at": first_seen_at,
                    "latest_event": event,
                }),
                became_overdue.as_deref(),
            )?;
            recorded += u64::from(new);
        }
        tx.commit()?;
        Ok(recorded)
    }

    /// How many letters [`Store::scan_overdue`] would record now (for `notify --dry-run`).
    pub fn unrecorded_overdue(&self, days: u32) -> Result<u64> {
        if days == 0 {
            return Ok(0);
        }
        let before =
            crate::time::format_utc(chrono::Utc::now() - chrono::Duration::days(days.into()));
        let count: i64 = self.conn.query_row(
            &format!("SELECT count(*) FROM letter WHERE {OVERDUE_UNRECORDED}"),
            [&before],
            |row| row.get(0),
        )?;
        Ok(count.unsigned_abs())
    }

    /// Events to send now: unsent, not suppressed, due; oldest first.
    pub fn due_notifications(&self, now: &str, limit: u32) -> Result<Vec<Pending>> {
        self.unsent(
            "AND (next_attempt_at IS NULL OR next_attempt_at <= ?1) ORDER BY id LIMIT ?2",
            now,
            limit,
        )
    }

    /// Every event not sent yet, oldest first (for `notify --dry-run`).
    pub fn unsent_notifications(&self, limit: u32) -> Result<Vec<Pending>> {
        self.unsent("AND ?1 IS NOT NULL ORDER BY id LIMIT ?2", "", limit)
    }

    fn unsent(&self, tail: &str, now: &str, limit: u32) -> Result<Vec<Pending>> {
        let sql = format!(
            "SELECT id, key, event, payload, attempts, created_at, last_error FROM notification
             WHERE sent_at IS NULL AND suppressed = 0 {tail}"
        );
        let rows = self
            .conn
            .prepare(&sql)?
            .query_map(params![now, limit], |row| {
                Ok(Pending {
                    id: row.get(0)?,
                    key: row.get(1)?,
                    event: row.get(2)?,
                    payload: row.get(3)?,
                    attempts: row.get(4)?,
                    created_at: row.get(5)?,
                    last_error: row.get(6)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Claims an unsent, due event for one send: moves its next attempt to `until`, so that
    /// no other delivery takes it meanwhile. False if it was sent, or claimed, by another.
    pub fn claim_notification(&self, id: i64, now: &str, until: &str) -> Result<bool> {
        let claimed = self.conn.execute(
            "UPDATE notification SET next_attempt_at = ?3
             WHERE id = ?1 AND sent_at IS NULL AND suppressed = 0
               AND (next_attempt_at IS NULL OR next_attempt_at <= ?2)",
            params![id, now, until],
        )?;
        Ok(claimed == 1)
    }

    /// Marks an event as delivered; it is never sent again.
    pub fn mark_sent(&self, id: i64, at: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE notification SET sent_at = ?2, attempts = attempts + 1, last_error = NULL,
                 next_attempt_at = NULL WHERE id = ?1",
            params![id, at],
        )?;
        Ok(())
    }

    /// Records a failed attempt; the next one is not before `retry_at`. An event another
    /// delivery has sent meanwhile stays as it is.
    pub fn mark_failed(&self, id: i64, error: &str, retry_at: &str) -> Result<()> {
        self.conn.execute(
            MARK_FAILED,
            params![id, crate::mask::clean_reason(error), retry_at],
        )?;
        Ok(())
    }

    /// [`Store::mark_failed`] for several events (id, retry at) with one error, in one
    /// transaction.
    pub fn mark_all_failed(&mut self, events: &[(i64, String)], error: &str) -> Result<()> {
        let error = crate::mask::clean_reason(error);
        let tx = self.conn.transaction()?;
        for (id, retry_at) in events {
            tx.prepare_cached(MARK_FAILED)?
                .execute(params![id, error, retry_at])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// How many events are pending, failing, sent and suppressed.
    pub fn notification_counts(&self) -> Result<NotificationCounts> {
        Ok(self.conn.query_row(
            "SELECT coalesce(sum(sent_at IS NULL AND suppressed = 0), 0),
                 coalesce(sum(sent_at IS NULL AND suppressed = 0 AND attempts > 0), 0),
                 coalesce(sum(sent_at IS NOT NULL), 0), coalesce(sum(suppressed), 0)
             FROM notification",
            [],
            |row| {
                Ok(NotificationCounts {
                    pending: row.get(0)?,
                    failing: row.get(1)?,
                    sent: row.get(2)?,
                    suppressed: row.get(3)?,
                })
            },
        )?)
    }

    /// Writes a batch in one transaction: new messages with their derived rows, duplicates
    /// counted, rejections with their raw bytes, and the source's cursor. Returns what became of
    /// each item, in order. Nothing is written if it fails.
    pub fn write_batch(
        &mut self,
        source: &str,
        received_at: &str,
        batch: &[Incoming],
    ) -> Result<(Vec<Outcome>, Counts)> {
        let result = self.write_batch_unnamed(source, received_at, batch);
        self.named(result)
    }

    fn write_batch_unnamed(
        &mut self,
        source: &str,
        received_at: &str,
        batch: &[Incoming],
    ) -> Result<(Vec<Outcome>, Counts)> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut counts = Counts::default();
        let mut last: Option<(i64, &str)> = None;
        for item in batch {
            let outcome = match &item.decoded {
                Ok(message) => {
                    let Raw::Bytes(bytes) = &item.raw else {
                        bail!("a decoded message must arrive as bytes");
                    };
                    match insert_message(
                        &tx,
                        message,
                        source,
                        received_at,
                        Some(&item.origin),
                        bytes,
                    )? {
                        Inserted::New(seq) => {
                            last = Some((seq, &message.besked_id));
                            Outcome::New
                        }
                        Inserted::Same(_) => Outcome::Duplicate,
                        Inserted::Differs(seq) => {
                            let rejection = reused_id(&message.besked_id, seq);
                            match insert_rejected(&tx, source, received_at, item, &rejection)? {
                                Outcome::Rejected => Outcome::Conflict { seq },
                                other => other,
                            }
                        }
                    }
                }
                Err(rejection) => insert_rejected(&tx, source, received_at, item, rejection)?,
            };
            if let Some(rules) = &self.events {
                events_of(&tx, rules, source, item, &outcome)?;
            }
            match outcome {
                Outcome::New => counts.new += 1,
                Outcome::Duplicate => counts.duplicates += 1,
                Outcome::Rejected | Outcome::Conflict { .. } => counts.rejected += 1,
            }
            outcomes.push(outcome);
        }
        tx.execute(
            "INSERT INTO cursor (source, last_seq, last_besked_id, last_received_at, messages,
                 duplicates, rejected)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (source) DO UPDATE SET
                 last_seq = coalesce(?2, last_seq),
                 last_besked_id = coalesce(?3, last_besked_id),
                 last_received_at = ?4,
                 messages = messages + ?5,
                 duplicates = duplicates + ?6,
                 rejected = rejected + ?7",
            params![
                source,
                last.map(|(seq, _)| seq),
                last.map(|(_, id)| id),
                received_at,
                counts.new as i64,
                counts.duplicates as i64,
                counts.rejected as i64
            ],
        )?;
        // The source's run so far, so that a run that never ends (killed, or stopped by a
        // full disk) still says what it stored.
        tx.prepare_cached(
            "UPDATE run SET messages = messages + ?2, duplicates = duplicates + ?3,
                 rejected = rejected + ?4
             WHERE source = ?1 AND status = 'running'",
        )?
        .execute(params![
            source,
            counts.new as i64,
            counts.duplicates as i64,
            counts.rejected as i64
        ])?;
        tx.commit()?;
        Ok((outcomes, counts))
    }

    /// Runs everything refused through `decode` again, and derives every stored message's rows
    /// anew, under the current configuration (after `[types.*]` or `max_message_bytes`
    /// changed). Refused bytes that now decode become messages (the `rejected` row keeps its
    /// bytes and gets `resolved_seq`). Every message's kind and derived rows (`print_status`,
    /// `print_status_postal_event`, `registration`) are replaced by what its envelope gives now;
    /// a message that no longer decodes keeps the rows it has. One transaction: all or nothing,
    /// and running it again changes nothing. Rows are read one at a time, so memory stays flat.
    pub fn reprocess(
        &mut self,
        decode: &dyn Fn(&[u8]) -> std::result::Result<Message, Rejection>,
        max_message_bytes: usize,
    ) -> Result<Reprocessed> {
        let result = self.reprocess_unnamed(decode, max_message_bytes);
        self.named(result)
    }

    fn reprocess_unnamed(
        &mut self,
        decode: &dyn Fn(&[u8]) -> std::result::Result<Message, Rejection>,
        max_message_bytes: usize,
    ) -> Result<Reprocessed> {
        const CHUNK: i64 = 500;
        let mut summary = Reprocessed::default();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut after = 0i64;
        loop {
            let ids: Vec<(i64, bool, i64)> = tx
                .prepare_cached(
                    "SELECT id, raw_complete, raw_size FROM rejected
                     WHERE resolved_seq IS NULL AND id > ?1 ORDER BY id LIMIT ?2",
                )?
                .query_map(params![after, CHUNK], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let Some(&(last, _, _)) = ids.last() else {
                break;
            };
            after = last;
            for (id, complete, size) in ids {
                let taken_in_meanwhile: bool = tx
                    .prepare_cached("SELECT resolved_seq IS NOT NULL FROM rejected WHERE id = ?1")?
                    .query_row([id], |row| row.get(0))?;
                if taken_in_meanwhile {
                    // A copy of a message this run took in (see `insert_message`).
                    summary.already_stored += 1;
                    continue;
                }
                if !complete {
                    // Only the start of the message was kept: it cannot be decoded again.
                    summary.still_rejected += 1;
                    continue;
                }
                if size as u64 > max_message_bytes as u64 {
                    // Still too large: decided from its size, without reading it. Its reason
                    // is left as it is: rewriting the row would load it whole into memory.
                    summary.still_rejected += 1;
                    continue;
                }
                let (source, received_at, origin): (String, String, Option<String>) = tx
                    .prepare_cached(
                        "SELECT source, received_at, origin FROM rejected WHERE id = ?1",
                    )?
                    .query_row([id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
                let raw = read_blob(&tx, "rejected", "raw", id)?;
                match decode(&raw) {
                    Ok(message) => {
                        let seq = match insert_message(
                            &tx,
                            &message,
                            &source,
                            &received_at,
                            origin.as_deref(),
                            &raw,
                        )? {
                            Inserted::New(seq) => {
                                summary.taken_in += 1;
                                seq
                            }
                            Inserted::Same(seq) => {
                                summary.already_stored += 1;
                                seq
                            }
                            Inserted::Differs(seq) => {
                                summary.still_rejected += 1;
                                let reason = reused_id(&message.besked_id, seq);
                                tx.execute(
                                    "UPDATE rejected SET reason = ?2 WHERE id = ?1",
                                    params![id, reason.reason()],
                                )?;
                                continue;
                            }
                        };
                        tx.execute(
                            "UPDATE rejected SET resolved_seq = ?2 WHERE id = ?1",
                            params![id, seq],
                        )?;
                    }
                    Err(rejection) => {
                        summary.still_rejected += 1;
                        tx.execute(
                            "UPDATE rejected SET reason = ?2 WHERE id = ?1",
                            params![id, rejection.reason()],
                        )?;
                    }
                }
            }
        }

        let mut after = 0i64;
        loop {
            let seqs: Vec<(i64, String)> = tx
                .prepare_cached(
                    // A message whose envelope was dropped keeps the rows it has.
                    "SELECT seq, kind FROM message WHERE seq > ?1 AND envelope_pruned_at IS NULL
                     ORDER BY seq LIMIT ?2",
                )?
                .query_map(params![after, CHUNK], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let Some(&(last, _)) = seqs.last() else {
                break;
            };
            after = last;
            for (seq, kind) in seqs {
                let envelope = read_blob(&tx, "message", "envelope", seq)?;
                match decode(&envelope) {
                    Ok(message) => {
                        let changed = replace_detail(&tx, seq, &message)?;
                        if kind != message.kind.as_str() {
                            tx.prepare_cached("UPDATE message SET kind = ?2 WHERE seq = ?1")?
                                .execute(params![seq, message.kind.as_str()])?;
                        }
                        if changed || kind != message.kind.as_str() {
                            summary.rederived += 1;
                        }
                    }
                    Err(rejection) => {
                        summary.not_derivable += 1;
                        tracing::warn!(
                            seq,
                            "message {seq} keeps the rows it has: it does not decode under the current configuration: {}",
                            rejection.reason()
                        );
                    }
                }
            }
        }
        // The statuses may have changed in any way: derive the letters from them anew.
        tx.execute_batch(REBUILD_LETTERS)?;
        tx.commit()?;
        Ok(summary)
    }

    /// All cursor rows, by source.
    pub fn cursors(&self) -> Result<Vec<CursorRow>> {
        let mut statement = self.conn.prepare(
            "SELECT source, last_seq, last_besked_id, last_received_at, messages, duplicates,
                 rejected, run_started_at, run_ended_at, run_status, run_error
             FROM cursor ORDER BY source",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(CursorRow {
                source: row.get(0)?,
                last_seq: row.get(1)?,
                last_besked_id: row.get(2)?,
                last_received_at: row.get(3)?,
                messages: row.get(4)?,
                duplicates: row.get(5)?,
                rejected: row.get(6)?,
                run_started_at: row.get(7)?,
                run_ended_at: row.get(8)?,
                run_status: row.get(9)?,
                run_error: row.get(10)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Row counts of the main tables, for `status`.
    pub fn table_counts(&self) -> Result<TableCounts> {
        let count = |table: &str| -> Result<i64> {
            Ok(self
                .conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                    row.get(0)
                })?)
        };
        Ok(TableCounts {
            message: count("message")?,
            rejected: count("rejected")?,
            print_status: count("print_status")?,
            registration: count("registration")?,
        })
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

/// What `reprocess` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reprocessed {
    /// Refused bytes that now decode and became new messages.
    pub taken_in: u64,
    /// Refused bytes that now decode to a BeskedId already stored.
    pub already_stored: u64,
    /// Refused bytes that are still refused (their reason is brought up to date).
    pub still_rejected: u64,
    /// Messages whose kind or derived rows changed.
    pub rederived: u64,
    /// Messages that do not decode under the current configuration (their rows are kept).
    pub not_derivable: u64,
}

/// Row counts of the main tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TableCounts {
    pub message: i64,
    pub rejected: i64,
    pub print_status: i64,
    pub registration: i64,
}

/// The refusal of a copy whose BeskedId is stored already with other bytes.
fn reused_id(besked_id: &str, seq: i64) -> Rejection {
    Rejection::new(
        &format!(
            "BeskedId {} is already stored (message seq {seq}) with different content; this copy is kept in `rejected` and not used",
            crate::mask::cap(besked_id, 100)
        ),
        Some(besked_id.to_owned()),
    )
}

impl Incoming {
    /// For an item that was refused, its besked id (if known) and the reason, for the log.
    pub fn refusal(&self, outcome: &Outcome) -> Option<(Option<String>, String)> {
        match (outcome, &self.decoded) {
            (Outcome::Rejected, Err(rejection)) => {
                Some((rejection.besked_id.clone(), rejection.reason().to_owned()))
            }
            (Outcome::Conflict { seq }, Ok(message)) => {
                let rejection = reused_id(&message.besked_id, *seq);
                Some((rejection.besked_id.clone(), rejection.reason().to_owned()))
            }
            _ => None,
        }
    }
}

/// Records the events one stored item causes: its status made its letter failed, or it was
/// refused.
fn events_of(
    tx: &rusqlite::Transaction<'_>,
    rules: &EventRules,
    source: &str,
    item: &Incoming,
    outcome: &Outcome,
) -> Result<()> {
    match (outcome, &item.decoded) {
        (Outcome::New, Ok(message)) => {
            let Detail::PostStatus(status) = &message.detail else {
                return Ok(());
            };
            let Some(uuid) = &status.message_uuid else {
                return Ok(());
            };
            if status.outcome != Some("failed") {
                return Ok(());
            }
            // Only if this status is now the letter's current one.
            let current = tx
                .prepare_cached(
                    "SELECT 1 FROM letter WHERE message_uuid = ?1
                     AND seq = (SELECT seq FROM message WHERE besked_id = ?2)",
                )?
                .exists(params![uuid, message.besked_id])?;
            if current {
                record_event(
                    tx,
                    rules,
                    &format!("letter_failed:{uuid}"),
                    "letter_failed",
                    serde_json::json!({
                        "message_uuid": uuid,
                        "occurred_at": status.occurred_at,
                        "kanal": status.kanal,
                        "fejl_kode": status.fejl_kode,
                        "fejl_tekst": status.fejl_tekst,
                        "besked_id": message.besked_id,
                        "afsendelse_id": status.afsendelse_id,
                    }),
                    status.occurred_at.as_deref(),
                )?;
            }
        }
        (Outcome::Rejected | Outcome::Conflict { .. }, _) => {
            let (id, reason, received_at): (i64, String, String) = tx
                .prepare_cached(
                    "SELECT id, reason, received_at FROM rejected WHERE id = last_insert_rowid()",
                )?
                .query_row([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
            record_event(
                tx,
                rules,
                &format!("message_rejected:{id}"),
                "message_rejected",
                serde_json::json!({ "id": id, "reason": reason, "source": source }),
                Some(&received_at),
            )?;
        }
        _ => {}
    }
    Ok(())
}

/// Writes one event to the outbox, unless its key is there already; true if it was new. An
/// event about something older than `max_age_days` is recorded as suppressed: never sent.
fn record_event(
    tx: &rusqlite::Connection,
    rules: &EventRules,
    key: &str,
    event: &str,
    facts: serde_json::Value,
    about: Option<&str>,
) -> Result<bool> {
    let now = chrono::Utc::now();
    let suppressed = rules.max_age_days > 0
        && about.is_some_and(|about| {
            about
                < crate::time::format_utc(now - chrono::Duration::days(rules.max_age_days.into()))
                    .as_str()
        });
    let mut payload = match facts {
        serde_json::Value::Object(facts) => facts,
        _ => serde_json::Map::new(),
    };
    // After the facts: no fact can take the place of the key or the kind of event.
    debug_assert!(!payload.contains_key("key") && !payload.contains_key("event"));
    payload.insert("key".into(), key.into());
    payload.insert("event".into(), event.into());
    let inserted = tx
        .prepare_cached(
            "INSERT INTO notification (key, event, payload, created_at, occurred_at, suppressed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (key) DO NOTHING",
        )?
        .execute(params![
            key,
            event,
            serde_json::Value::Object(payload).to_string(),
            crate::time::format_utc(now),
            about,
            suppressed
        ])?;
    Ok(inserted > 0)
}

/// What [`insert_message`] did.
enum Inserted {
    /// Stored as a new message with this seq.
    New(i64),
    /// The BeskedId is stored already with the same bytes.
    Same(i64),
    /// The BeskedId is stored already, with other bytes.
    Differs(i64),
}

/// Inserts a message and its derived rows, unless its BeskedId is stored already.
fn insert_message(
    tx: &rusqlite::Transaction<'_>,
    message: &Message,
    source: &str,
    received_at: &str,
    origin: Option<&str>,
    envelope: &[u8],
) -> Result<Inserted> {
    // A large envelope is written into its row in place rather than bound as a parameter
    // (which SQLite copies); `envelope` is the row's last column, so the room made for it is
    // not filled in memory first.
    let in_place = envelope.len() > IN_PLACE_BYTES;
    let mut insert = tx.prepare_cached(
        "INSERT INTO message (besked_id, beskedtype, kind, source, received_at, created_at,
             transaktions_id, producer_uuid, origin, envelope)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (besked_id) DO NOTHING",
    )?;
    let fields = params![
        message.besked_id,
        message.beskedtype,
        message.kind.as_str(),
        source,
        received_at,
        message.created_at,
        message.transaktions_id,
        message.producer_uuid,
        origin,
    ];
    let inserted = if in_place {
        let mut all = fields.to_vec();
        let room = rusqlite::blob::ZeroBlob(envelope.len() as u64);
        all.push(&room);
        insert.execute(&*all)?
    } else {
        let mut all = fields.to_vec();
        all.push(&envelope);
        insert.execute(&*all)?
    };
    if inserted > 0 && in_place {
        let seq = tx.last_insert_rowid();
        tx.blob_open("main", "message", "envelope", seq, false)?
            .write_all(envelope)?;
    }
    if inserted == 0 {
        let (seq, pruned, fingerprint): (i64, bool, Option<String>) = tx
            .prepare_cached(
                "SELECT seq, envelope_pruned_at IS NOT NULL, envelope_sha256 FROM message
                 WHERE besked_id = ?1",
            )?
            .query_row([&message.besked_id], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
        if pruned {
            // Its envelope was dropped (retention, `forget`); its fingerprint tells a copy of
            // it from other content. Dropped before the fingerprint was kept (schema 4): taken
            // for a copy, since keeping it would store again what was erased.
            return Ok(match fingerprint {
                Some(stored) if stored != envelope_fingerprint(envelope) => Inserted::Differs(seq),
                _ => Inserted::Same(seq),
            });
        }
        let stored = read_blob(tx, "message", "envelope", seq)?;
        return Ok(if same_document(&stored, envelope) {
            Inserted::Same(seq)
        } else {
            Inserted::Differs(seq)
        });
    }
    let seq = tx.last_insert_rowid();
    // Copies of it refused before (a copy cut off on the way, then the whole one) are taken
    // in by it; other content under its id stays refused. Both ids are in their canonical form
    // (a UUID in lower case), so the index of unresolved ids finds them. Asked first with a
    // plain lookup: the join's plan depends on the bound id, so SQLite compiles it again each
    // time it runs, which would cost every new message more than storing it.
    let refused_before = tx
        .prepare_cached(
            "SELECT 1 FROM rejected WHERE besked_id = ?1 AND resolved_seq IS NULL LIMIT 1",
        )?
        .exists([&message.besked_id])?;
    if refused_before {
        tx.prepare_cached(concat!(
            "UPDATE rejected SET resolved_seq = m.seq FROM message AS m
             WHERE rejected.besked_id = ?1 AND rejected.besked_id IS NOT NULL
                 AND rejected.resolved_seq IS NULL AND ",
            copy_of_stored!()
        ))?
        .execute([&message.besked_id])?;
    }
    insert_detail(tx, seq, message)?;
    if let Detail::PostStatus(status) = &message.detail {
        note_letter(tx, seq, status)?;
    }
    Ok(Inserted::New(seq))
}

/// Brings the letter of a newly stored status up to date: the status becomes the letter's
/// current one if it sorts first under the rule of `print_status_latest` (final before
/// non-final, then the newest `occurred_at`, then the latest arrival); the count and the
/// earliest `occurred_at` always take it in. Must agree with [`REBUILD_LETTERS`].
fn note_letter(tx: &rusqlite::Transaction<'_>, seq: i64, status: &PostStatus) -> Result<()> {
    let Some(uuid) = &status.message_uuid else {
        return Ok(());
    };
    let current: Option<(i64, bool, Option<String>)> = tx
        .prepare_cached("SELECT seq, final, occurred_at FROM letter WHERE message_uuid = ?1")?
        .query_row([uuid], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    let final_at = status
        .is_final
        .then_some(status.occurred_at.as_deref())
        .flatten();
    // The status as the letter's current one: ?1 to ?12 of both statements below.
    let current_fields = params![
        uuid,
        seq,
        status.event,
        status.outcome,
        status.is_final,
        status.kanal,
        status.occurred_at,
        final_at,
        status.fejl_kode,
        status.fejl_tekst,
        status.afsendelse_id,
        status.transmission_id,
    ];
    let Some((current_seq, current_final, current_at)) = current else {
        tx.prepare_cached(
            "INSERT INTO letter (message_uuid, seq, event, outcome, final, kanal, occurred_at,
                 first_seen_at, final_at, statuses, fejl_kode, fejl_tekst, afsendelse_id,
                 transmission_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, 1, ?9, ?10, ?11, ?12)",
        )?
        .execute(current_fields)?;
        return Ok(());
    };
    // Text times compare as SQLite compares them (bytewise), and a missing time sorts first,
    // as NULL does.
    let newer = (status.is_final, status.occurred_at.as_deref(), seq)
        > (current_final, current_at.as_deref(), current_seq);
    if newer {
        tx.prepare_cached(
            "UPDATE letter SET seq = ?2, event = ?3, outcome = ?4, final = ?5, kanal = ?6,
                 occurred_at = ?7, final_at = ?8, fejl_kode = ?9, fejl_tekst = ?10,
                 afsendelse_id = ?11, transmission_id = ?12, statuses = statuses + 1,
                 first_seen_at = CASE WHEN ?7 < first_seen_at OR first_seen_at IS NULL
                     THEN coalesce(?7, first_seen_at) ELSE first_seen_at END
             WHERE message_uuid = ?1",
        )?
        .execute(current_fields)?;
    } else {
        tx.prepare_cached(
            "UPDATE letter SET statuses = statuses + 1,
                 first_seen_at = CASE WHEN ?2 < first_seen_at OR first_seen_at IS NULL
                     THEN coalesce(?2, first_seen_at) ELSE first_seen_at END
             WHERE message_uuid = ?1",
        )?
        .execute(params![uuid, status.occurred_at])?;
    }
    Ok(())
}

/// True when two envelopes are the same bytes, apart from a byte-order mark and white space
/// before or after the document (a copy re-sent with a trailing newline is the same message).
fn same_document(a: &[u8], b: &[u8]) -> bool {
    trim_document(a) == trim_document(b)
}

/// What of an envelope counts when copies are compared: without a byte order mark and the
/// whitespace around the document.
fn trim_document(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |at| at + 1);
    &bytes[start..end]
}

/// The fingerprint kept of a dropped envelope: hex SHA-256 of [`trim_document`], so that
/// copies [`same_document`] takes for the same have the same fingerprint.
fn envelope_fingerprint(envelope: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(trim_document(envelope)))
}

/// Replaces a message's derived rows with those of `message`; true when they changed.
fn replace_detail(tx: &rusqlite::Transaction<'_>, seq: i64, message: &Message) -> Result<bool> {
    // The rows before, as one comparable text, to report only real changes.
    let snapshot = |tx: &rusqlite::Transaction<'_>| -> Result<String> {
        Ok(tx
            .prepare_cached(
                "SELECT coalesce((SELECT json_array(message_uuid, transmission_id, message_id, kanal,
                     status, event, event_uuid, final, outcome, occurred_at, fejl_kode, fejl_tekst,
                     afsendelse_id, forsendelse_id, forsendelse_type_id, bruger_navn, enhed_tekst,
                     afsender_system_id, correlation_id, producer, producer_uuid)
                     FROM print_status WHERE seq = ?1), '')
                 || coalesce((SELECT group_concat(json_array(type_kode, occurred_at, beloeb))
                     FROM print_status_postal_event WHERE seq = ?1), '')
                 || coalesce((SELECT json_array(party, party_type, channel, registered, changed_at,
                     handling) FROM registration WHERE seq = ?1), '')",
            )?
            .query_row([seq], |row| row.get(0))?)
    };
    let before = snapshot(tx)?;
    for table in ["print_status_postal_event", "print_status", "registration"] {
        tx.prepare_cached(&format!("DELETE FROM {table} WHERE seq = ?1"))?
            .execute([seq])?;
    }
    insert_detail(tx, seq, message)?;
    Ok(snapshot(tx)? != before)
}

/// Reads one blob without holding anything else in memory.
fn read_blob(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    column: &str,
    row: i64,
) -> Result<Vec<u8>> {
    let blob = tx.blob_open("main", table, column, row, true)?;
    let mut bytes = vec![0; blob.len()];
    blob.read_at_exact(&mut bytes, 0)?;
    Ok(bytes)
}

/// A message's envelope, unless it was dropped already (or there is no such message).
fn read_envelope(tx: &rusqlite::Transaction<'_>, seq: i64) -> Result<Option<Vec<u8>>> {
    let present: bool = tx
        .prepare_cached(
            "SELECT count(*) > 0 FROM message WHERE seq = ?1 AND envelope_pruned_at IS NULL",
        )?
        .query_row([seq], |row| row.get(0))?;
    if !present {
        return Ok(None);
    }
    read_blob(tx, "message", "envelope", seq).map(Some)
}

fn insert_detail(tx: &rusqlite::Transaction<'_>, seq: i64, message: &Message) -> Result<()> {
    match &message.detail {
        Detail::None => {}
        Detail::PostStatus(status) => {
            tx.prepare_cached(
                "INSERT INTO print_status (seq, besked_id, message_uuid, transmission_id,
                     message_id, kanal, status, event, event_uuid, final, outcome, occurred_at,
                     fejl_kode, fejl_tekst, afsendelse_id, forsendelse_id, forsendelse_type_id,
                     bruger_navn, enhed_tekst, afsender_system_id, correlation_id, producer,
                     producer_uuid)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                     ?17, ?18, ?19, ?20, ?21, ?22, ?23)",
            )?
            .execute(params![
                seq,
                message.besked_id,
                status.message_uuid,
                status.transmission_id,
                status.message_id,
                status.kanal,
                status.status,
                status.event,
                status.event_uuid,
                status.is_final,
                status.outcome,
                status.occurred_at,
                status.fejl_kode,
                status.fejl_tekst,
                status.afsendelse_id,
                status.forsendelse_id,
                status.forsendelse_type_id,
                status.bruger_navn,
                status.enhed_tekst,
                status.afsender_system_id,
                status.correlation_id,
                status.producer,
                status.producer_uuid,
            ])?;
            for event in &status.postal_events {
                tx.prepare_cached(
                    "INSERT INTO print_status_postal_event (seq, besked_id, type_kode,
                         occurred_at, beloeb) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    seq,
                    message.besked_id,
                    event.type_kode,
                    event.occurred_at,
                    event.beloeb
                ])?;
            }
        }
        Detail::Registration(registration) => {
            tx.prepare_cached(
                "INSERT INTO registration (seq, besked_id, party, party_type, channel, registered,
                     changed_at, handling) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                seq,
                message.besked_id,
                registration.party,
                registration.party_type,
                registration.channel.as_str(),
                registration.registered,
                registration.changed_at,
                registration.handling,
            ])?;
        }
    }
    Ok(())
}

/// Stores a rejection with its raw bytes; bytes already rejected before count as a duplicate.
/// A file is streamed into its row, never held in memory; of a message over [`RAW_KEEP_MAX`]
/// only the first [`RAW_PREFIX_BYTES`] are kept (`raw_complete = 0`).
fn insert_rejected(
    tx: &rusqlite::Transaction<'_>,
    source: &str,
    received_at: &str,
    item: &Incoming,
    rejection: &Rejection,
) -> Result<Outcome> {
    let (sha256, size) = match &item.raw {
        Raw::Bytes(bytes) => (hex(&Sha256::digest(bytes)), bytes.len() as u64),
        Raw::File { file, path, len } => {
            let mut hasher = Sha256::new();
            let copied = copy_file(file, *len, &mut hasher)
                .with_context(|| format!("failed to read `{}`", path.display()))?;
            if copied != *len {
                bail!(
                    "`{}` changed size while being read ({copied} of {len} bytes); import it again",
                    path.display()
                );
            }
            (hex(&hasher.finalize()), *len)
        }
    };
    let seen = tx
        .prepare_cached("SELECT 1 FROM rejected WHERE raw_sha256 = ?1 LIMIT 1")?
        .exists([&sha256])?;
    if seen {
        return Ok(Outcome::Duplicate);
    }
    let kept = if size > RAW_KEEP_MAX {
        RAW_PREFIX_BYTES
    } else {
        size
    };
    // The row is made with room for the bytes, which are then written into it in place, so a
    // large message is never copied in memory (nor read whole, for a file).
    // `raw` is the row's last column: SQLite then makes room for it without filling that room
    // in memory first.
    tx.prepare_cached(
        "INSERT INTO rejected (source, received_at, reason, raw_sha256, besked_id, origin,
             raw_size, raw_complete, raw)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        source,
        received_at,
        rejection.reason(),
        sha256,
        rejection.besked_id,
        item.origin,
        size as i64,
        kept == size,
        rusqlite::blob::ZeroBlob(kept),
    ])?;
    let rowid = tx.last_insert_rowid();
    let mut blob = tx.blob_open("main", "rejected", "raw", rowid, false)?;
    match &item.raw {
        Raw::Bytes(bytes) => blob.write_all(&bytes[..kept as usize])?,
        Raw::File { file, path, .. } => {
            let copied = copy_file(file, kept, &mut blob).with_context(|| {
                format!("failed to copy `{}` into the database", path.display())
            })?;
            if copied != kept {
                bail!(
                    "`{}` changed size while being read ({copied} of {kept} bytes); import it again",
                    path.display()
                );
            }
        }
    }
    drop(blob);
    // A copy of a message stored already, cut off on the way, is taken in by it as one that
    // arrives before it would be (see `insert_message`); it is still counted as refused.
    if rejection.besked_id.is_some() {
        tx.prepare_cached(concat!(
            "UPDATE rejected SET resolved_seq = m.seq FROM message AS m
             WHERE rejected.id = ?1 AND ",
            copy_of_stored!()
        ))?
        .execute([rowid])?;
    }
    Ok(Outcome::Rejected)
}

/// Copies the first `len` bytes of `file` (from its start, whatever its position) to `sink`.
fn copy_file(file: &File, len: u64, sink: &mut dyn Write) -> std::io::Result<u64> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    while offset < len {
        let want = buffer.len().min((len - offset) as usize);
        let read = match file.read_at(&mut buffer[..want], offset) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        sink.write_all(&buffer[..read])?;
        offset += read as u64;
    }
    Ok(offset)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
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
mod tests {
    use super::*;

    /// An incoming status about `letter`, decoded by the real decoder.
    pub(crate) fn status_item(
        besked_id: &str,
        letter: &str,
        status: &crate::sample::Status<'_>,
    ) -> Incoming {
        let raw = crate::sample::status_envelope_with(besked_id, letter, status).into_bytes();
        let decoder = crate::decode::message::Decoder {
            max_message_bytes: 1 << 20,
            registrations: Vec::new(),
        };
        Incoming {
            origin: format!("test {besked_id}"),
            decoded: decoder.decode(&raw),
            raw: Raw::Bytes(raw),
        }
    }

    fn letters(store: &Store) -> Vec<String> {
        let mut statement = store
            .conn
            .prepare(
                "SELECT json_array(message_uuid, seq, event, outcome, final, kanal, occurred_at,
                     first_seen_at, final_at, statuses, fejl_kode, fejl_tekst, afsendelse_id,
                     transmission_id) FROM letter ORDER BY message_uuid",
            )
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// The old definition of `print_status_latest`, the rule `letter` must keep.
    fn latest_by_old_rule(store: &Store) -> Vec<(String, i64)> {
        pairs(
            store,
            "SELECT p.message_uuid, p.seq FROM print_status AS p
             WHERE p.message_uuid IS NOT NULL AND p.seq = (
                 SELECT q.seq FROM print_status AS q WHERE q.message_uuid = p.message_uuid
                 ORDER BY q.final DESC, q.occurred_at DESC, q.seq DESC LIMIT 1)
             ORDER BY p.message_uuid",
        )
    }

    /// The rows of a query of two columns.
    fn pairs<A: rusqlite::types::FromSql, B: rusqlite::types::FromSql>(
        store: &Store,
        sql: &str,
    ) -> Vec<(A, B)> {
        let mut statement = store.conn.prepare(sql).unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn letters_kept_one_status_at_a_time_equal_letters_derived_at_once() {
        use crate::sample::Status;
        let kinds = [
            Status::SENT,
            Status::RECEIVED,
            Status::DELIVERED,
            Status::FAILED,
            Status::POSTED,
        ];
        let times = [
            "2026-03-01T10:00:00.000Z",
            "2026-03-01T10:00:00.000Z",
            "2026-03-02T09:00:00.000Z",
            "2026-02-27T23:59:59.999Z",
            "2026-03-05T12:00:00.000Z",
        ];
        let mut ids = crate::sample::UuidGenerator::new(7);
        let letters_uuids: Vec<String> = (0..12).map(|_| ids.next_uuid()).collect();
        let mut store = Store::open_in_memory().unwrap();
        // Out of order, final before non-final, equal times, several batches.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..20 {
            let batch: Vec<Incoming> = (0..15)
                .map(|_| {
                    let status = Status {
                        at: times[next(times.len())],
                        ..kinds[next(kinds.len())]
                    };
                    status_item(&ids.next_uuid(), &letters_uuids[next(12)], &status)
                })
                .collect();
            store
                .write_batch("test", "2026-03-06T00:00:00.000Z", &batch)
                .unwrap();
        }
        let kept = letters(&store);
        assert_eq!(kept.len(), 12);
        let by_letter: Vec<(String, i64)> = pairs(
            &store,
            "SELECT message_uuid, seq FROM letter ORDER BY message_uuid",
        );
        assert_eq!(by_letter, latest_by_old_rule(&store));
        store.conn.execute_batch(REBUILD_LETTERS).unwrap();
        assert_eq!(letters(&store), kept);
        let (finals, counted): (i64, i64) = store
            .conn
            .query_row(
                "SELECT sum(final_at IS NOT NULL) - sum(final), sum(statuses) FROM letter",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(finals, 0, "final_at is set exactly for final letters");
        assert_eq!(counted, 300);
    }

    #[test]
    fn a_final_status_is_not_replaced_by_a_later_non_final_one() {
        use crate::sample::Status;
        let mut store = Store::open_in_memory().unwrap();
        let letter = "6f1c1a0e-0000-4000-8000-000000000001";
        let batch = [
            status_item(
                "6f1c1a0e-0000-4000-8000-0000000000a1",
                letter,
                &Status {
                    at: "2026-03-01T10:00:00.000Z",
                    ..Status::FAILED
                },
            ),
            status_item(
                "6f1c1a0e-0000-4000-8000-0000000000a2",
                letter,
                &Status {
                    at: "2026-03-03T10:00:00.000Z",
                    ..Status::SENT
                },
            ),
            status_item(
                "6f1c1a0e-0000-4000-8000-0000000000a3",
                letter,
                &Status {
                    at: "2026-02-28T10:00:00.000Z",
                    ..Status::SENT
                },
            ),
        ];
        store
            .write_batch("test", "2026-03-06T00:00:00.000Z", &batch)
            .unwrap();
        let row: (String, String, i64, String, String, i64, String) = store
            .conn
            .query_row(
                "SELECT event, outcome, final, first_seen_at, final_at, statuses, fejl_kode
                 FROM letter WHERE message_uuid = ?1",
                [letter],
                |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                        row.get(6)?,
                    ))
                },
            )
            .unwrap();
        assert_eq!(
            row,
            (
                "Fejlet".into(),
                "failed".into(),
                1,
                "2026-02-28T10:00:00.000Z".into(),
                "2026-03-01T10:00:00.000Z".into(),
                3,
                "20".into()
            )
        );
    }

    /// A refused item with `besked_id` and the given bytes.
    fn refused_item(besked_id: &str, bytes: &[u8]) -> Incoming {
        Incoming {
            origin: format!("test refused {besked_id}"),
            decoded: Err(Rejection::new("broken", Some(besked_id.to_owned()))),
            raw: Raw::Bytes(bytes.to_vec()),
        }
    }

    fn resolved(store: &Store) -> Vec<(String, Option<i64>)> {
        pairs(
            store,
            "SELECT besked_id, resolved_seq FROM rejected ORDER BY id",
        )
    }

    fn bytes_of(item: &Incoming) -> Vec<u8> {
        match &item.raw {
            Raw::Bytes(bytes) => bytes.clone(),
            Raw::File { .. } => unreachable!("test items are bytes"),
        }
    }

    #[test]
    fn storing_new_messages_compiles_each_statement_once() {
        use crate::sample::{Status, UuidGenerator};
        let mut store = Store::open_in_memory().unwrap();
        let at = "2026-11-28T10:00:00.000Z";
        let mut ids = UuidGenerator::new(7);
        for _ in 0..3 {
            let batch: Vec<Incoming> = (0..5)
                .map(|_| status_item(&ids.next_uuid(), &ids.next_uuid(), &Status::SENT))
                .collect();
            let (_, counts) = store.write_batch("test", at, &batch).unwrap();
            assert_eq!(counts.new, 5);
        }
        // A statement whose plan depends on a bound value is compiled again every time it
        // runs with another value, which costs more than the work it does.
        let mut recompiled = Vec::new();
        // SAFETY: walks the statements of a connection this thread owns and uses only
        // through this loop; sqlite3_sql and sqlite3_stmt_status read from a live statement.
        unsafe {
            let db = store.conn.handle();
            let mut statement = rusqlite::ffi::sqlite3_next_stmt(db, std::ptr::null_mut());
            while !statement.is_null() {
                let count = rusqlite::ffi::sqlite3_stmt_status(
                    statement,
                    rusqlite::ffi::SQLITE_STMTSTATUS_REPREPARE,
                    0,
                );
                if count > 0 {
                    let sql = std::ffi::CStr::from_ptr(rusqlite::ffi::sqlite3_sql(statement));
                    recompiled.push(format!("{count}x {}", sql.to_string_lossy()));
                }
                statement = rusqlite::ffi::sqlite3_next_stmt(db, statement);
            }
        }
        assert!(recompiled.is_empty(), "compiled again: {recompiled:#?}");
    }

    #[test]
    fn a_copy_cut_off_on_the_way_is_taken_in_by_its_message_whichever_came_first() {
        use crate::sample::Status;
        let mut store = Store::open_in_memory().unwrap();
        let at = "2026-11-28T10:00:00.000Z";
        let ids = [
            "8a1b2c3d-0000-4000-8000-00000000abcd",
            "9a1b2c3d-0000-4000-8000-00000000abcd",
            "aa1b2c3d-0000-4000-8000-00000000abcd",
            "ba1b2c3d-0000-4000-8000-00000000abcd",
        ];
        let whole = |n: usize| status_item(ids[n], &format!("letter {}", ids[n]), &Status::SENT);
        let cut = |n: usize, id: &str| refused_item(id, &bytes_of(&whole(n))[..1500]);
        // 0: a cut copy (upper case) in one batch, the whole one in the next. 1: other content
        // under the id, then the message. 2: cut copy and whole one in the same batch.
        store
            .write_batch(
                "test",
                at,
                &[
                    cut(0, &ids[0].to_uppercase()),
                    refused_item(ids[1], b"<other content"),
                ],
            )
            .unwrap();
        assert_eq!(store.rejected_since(at).unwrap(), 2);
        let (_, counts) = store
            .write_batch("test", at, &[whole(0), whole(1), cut(2, ids[2]), whole(2)])
            .unwrap();
        assert_eq!((counts.new, counts.rejected), (3, 1));
        // 3: the message first, then a cut copy, then other content under its id.
        store.write_batch("test", at, &[whole(3)]).unwrap();
        let (_, counts) = store
            .write_batch(
                "test",
                at,
                &[
                    cut(3, ids[3]),
                    status_item(ids[3], "another letter", &Status::FAILED),
                ],
            )
            .unwrap();
        assert_eq!(counts.rejected, 2, "both are counted as refused in the run");
        let seq_of = |besked_id: &str| -> i64 {
            store
                .conn
                .query_row(
                    "SELECT seq FROM message WHERE besked_id = ?1",
                    [besked_id],
                    |row| row.get(0),
                )
                .unwrap()
        };
        assert_eq!(
            resolved(&store),
            [
                // Kept in lower case, as `message` keeps it.
                (ids[0].to_owned(), Some(seq_of(ids[0]))),
                (ids[1].to_owned(), None),
                (ids[2].to_owned(), Some(seq_of(ids[2]))),
                (ids[3].to_owned(), Some(seq_of(ids[3]))),
                (ids[3].to_owned(), None),
            ]
        );
        assert_eq!(store.rejected_since(at).unwrap(), 2, "the other contents");
    }

    #[test]
    fn reprocess_counts_a_copy_it_took_in_on_the_way_once_and_is_idempotent() {
        use crate::sample::Status;
        let mut store = Store::open_in_memory().unwrap();
        let at = "2026-11-28T10:00:00.000Z";
        let id = "8a1b2c3d-0000-4000-8000-00000000abcd";
        let bytes = bytes_of(&status_item(id, "letter", &Status::SENT));
        let other = bytes_of(&status_item(id, "letter", &Status::FAILED));
        // All three refused first (as too large, say): the whole copy, a cut one, other content.
        let refused = [
            refused_item(id, &bytes),
            refused_item(id, &bytes[..1500]),
            refused_item(id, &other),
        ];
        store.write_batch("test", at, &refused).unwrap();
        let decoder = crate::decode::message::Decoder {
            max_message_bytes: 1 << 20,
            registrations: Vec::new(),
        };
        let decode = |raw: &[u8]| decoder.decode(raw);
        let first = store.reprocess(&decode, 1 << 20).unwrap();
        assert_eq!(
            (first.taken_in, first.already_stored, first.still_rejected),
            (1, 1, 1)
        );
        let again = store.reprocess(&decode, 1 << 20).unwrap();
        assert_eq!(
            (again.taken_in, again.already_stored, again.still_rejected),
            (0, 0, 1)
        );
        assert_eq!(
            resolved(&store).iter().map(|(_, r)| *r).collect::<Vec<_>>(),
            [Some(1), Some(1), None]
        );
    }

    #[test]
    fn migration_6_resolves_the_refused_copies_of_stored_messages_only() {
        let mut store = Store::open_in_memory().unwrap();
        store
            .conn
            .execute_batch(
                "DROP INDEX rejected_unresolved_by_besked_id;
                 PRAGMA user_version = 5;
                 INSERT INTO message (seq, besked_id, kind, source, received_at, envelope)
                     VALUES (7, '8a1b2c3d-0000-4000-8000-00000000abcd', 'other', 'import',
                         '2026-11-28T10:00:00.000Z', x'0102030405'),
                     (8, 'brev-a', 'other', 'import', '2026-11-28T10:00:00.000Z', x'0a0b0c');
                 INSERT INTO rejected (source, received_at, reason, raw_sha256, besked_id,
                     raw_size, raw_complete, raw)
                 VALUES ('import', '2026-11-28T10:00:00.000Z', 'cut', 'a',
                         '8A1B2C3D-0000-4000-8000-00000000ABCD', 3, 1, x'010203'),
                     ('import', '2026-11-29T10:00:00.000Z', 'other content', 'b',
                         '8a1b2c3d-0000-4000-8000-00000000abcd', 2, 1, x'0199'),
                     ('import', '2026-11-27T10:00:00.000Z', 'longer', 'c',
                         '8a1b2c3d-0000-4000-8000-00000000abcd', 6, 1, x'010203040506'),
                     ('import', '2026-11-27T10:00:00.000Z', 'cut', 'd', 'BREV-A', 2, 1,
                         x'0a0b'),
                     ('import', '2026-11-27T10:00:00.000Z', 'cut', 'e', 'brev-a', 2, 1,
                         x'0a0b');",
            )
            .unwrap();
        assert_eq!(store.migrate().unwrap(), 5);
        let uuid = "8a1b2c3d-0000-4000-8000-00000000abcd".to_owned();
        assert_eq!(
            resolved(&store),
            [
                (uuid.clone(), Some(7)),
                (uuid.clone(), None),
                (uuid, None),
                ("BREV-A".to_owned(), None),
                ("brev-a".to_owned(), Some(8)),
            ]
        );
    }

    #[test]
    fn migrating_twice_changes_nothing() {
        let mut store = Store::open_in_memory().expect("open");
        assert_eq!(
            store.schema_version().expect("version"),
            SCHEMA_VERSION as i64
        );
        assert_eq!(store.migrate().expect("again"), SCHEMA_VERSION);
        assert_eq!(
            store.schema_version().expect("version"),
            SCHEMA_VERSION as i64
        );
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut store = Store::open_in_memory().expect("open");
        store
            .connection()
            .pragma_update(None, "user_version", 99)
            .expect("set");
        let error = store.migrate().expect_err("newer");
        assert!(
            error
                .to_string()
                .contains("newer than this beskedhent knows"),
            "{error}"
        );
    }

    #[test]
    fn writers_are_tuned_for_their_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("replica.db"), None).expect("open");
        let pragma = |name: &str| -> i64 {
            store
                .connection()
                .pragma_query_value(None, name, |row| row.get(0))
                .expect(name)
        };
        assert_eq!(pragma("journal_size_limit"), 64 * 1024 * 1024);
        assert_eq!(pragma("synchronous"), 2, "FULL");
        store.tune_for_pull(64 * 1024).expect("tune");
        // The feed syncs each commit itself (WalFlusher) while it writes the next.
        assert_eq!(pragma("synchronous"), 1, "NORMAL");
        assert_eq!(pragma("cache_size"), -4 * 1024);
        assert_eq!(pragma("wal_autocheckpoint"), 256 * 1024 * 1024 / PAGE_SIZE);
        assert_eq!(pragma("journal_size_limit"), 256 * 1024 * 1024);
        store.tune_for_pull(1024 * 1024).expect("tune");
        assert_eq!(pragma("cache_size"), -4 * 1024);
        // The cache shrinks as messages may grow, never under the default.
        assert_eq!(pull_cache_kib(1), 8 * 1024);
        assert_eq!(pull_cache_kib(32 * 1024), 8 * 1024);
        assert_eq!(pull_cache_kib(48 * 1024), 5461);
        assert_eq!(pull_cache_kib(64 * 1024), 4 * 1024);
        assert_eq!(pull_cache_kib(usize::MAX), 4 * 1024);
        store.set_durability(Durability::Normal).expect("normal");
        store.tune_for_import(64 * 1024).expect("import");
        assert_eq!(pragma("cache_size"), -24 * 1024);
        store.tune_for_import(64 * 1024 + 1).expect("import");
        assert_eq!(pragma("cache_size"), -16 * 1024);
        store.tune_for_import(1024 * 1024).expect("import");
        assert_eq!(pragma("cache_size"), -16 * 1024);
        store.tune_for_import(1024 * 1024 + 1).expect("import");
        assert_eq!(pragma("cache_size"), -4 * 1024);
        store.set_durability(Durability::Normal).expect("normal");
        assert_eq!(pragma("synchronous"), 1, "NORMAL");
        assert_eq!(pragma("cache_size"), -24 * 1024);
        assert_eq!(pragma("wal_autocheckpoint"), 512 * 1024 * 1024 / PAGE_SIZE);
        assert_eq!(pragma("journal_size_limit"), 512 * 1024 * 1024);
    }

    #[test]
    fn a_full_disk_is_named_with_what_to_do() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        let text = format!(
            "{:#}",
            name_database(full.into(), Path::new("/var/lib/beskedhent/replica.db"))
        );
        assert!(
            text.starts_with(
                "database `/var/lib/beskedhent/replica.db`: its file system is full; free space there"
            ),
            "{text}"
        );
    }

    #[test]
    fn checkpoints_follow_the_page_size_of_an_older_replica() {
        // A replica created by an older build with 32 KiB pages checkpoints after the same
        // number of bytes as a new one, not after four times as many.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("replica.db");
        drop(Store::open(&path, None).expect("create"));
        let db = Connection::open(&path).expect("open");
        db.execute_batch(
            "PRAGMA journal_mode = DELETE; PRAGMA page_size = 32768; VACUUM;
             PRAGMA journal_mode = WAL;",
        )
        .expect("repage");
        drop(db);
        let store = Store::open(&path, None).expect("reopen");
        let pragma = |name: &str| -> i64 {
            store
                .connection()
                .pragma_query_value(None, name, |row| row.get(0))
                .expect(name)
        };
        assert_eq!(pragma("page_size"), 32768);
        assert_eq!(pragma("wal_autocheckpoint"), 32 * 1024 * 1024 / 32768);
        store.tune_for_pull(64 * 1024).expect("tune");
        assert_eq!(pragma("wal_autocheckpoint"), 256 * 1024 * 1024 / 32768);
        store.tune_for_import(0).expect("tune");
        assert_eq!(pragma("wal_autocheckpoint"), 512 * 1024 * 1024 / 32768);
        assert_eq!(pragma("journal_size_limit"), 512 * 1024 * 1024);
    }

    #[test]
    fn the_wal_flusher_syncs_the_file_sqlite_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("replica.db");
        let store = Store::open(&path, None).expect("open");
        store.tune_for_pull(64 * 1024).expect("tune");
        let flusher = store.wal_flusher();
        assert_eq!(flusher.wal, dir.path().join("replica.db-wal"));
        store
            .connection()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .expect("write");
        assert!(flusher.wal.is_file(), "the commit is in the WAL");
        flusher.flush().expect("flush");
        // A WAL that cannot be opened is an error that names it.
        let elsewhere = WalFlusher {
            wal: dir.path().join("replica.db-wal").join("x"),
        };
        let error = elsewhere.flush().expect_err("not a file");
        assert!(format!("{error:#}").contains("replica.db-wal"), "{error:#}");
    }

    #[test]
    fn file_is_created_private_in_wal_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("replica.db");
        let store = Store::open(&path, None).expect("open");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let journal: String = store
            .connection()
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .expect("journal");
        assert_eq!(journal, "wal");
    }

    #[test]
    fn missing_directory_is_named() {
        let error = Store::open(Path::new("/nonexistent-dir/replica.db"), None)
            .err()
            .expect("fails");
        assert!(error.to_string().contains("`/nonexistent-dir`"), "{error}");
    }
}
