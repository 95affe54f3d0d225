//! The replica's schema: a new replica is created from `schema.sql` (the current schema, every
//! table, view, index and column); an older one is brought to it by the migrations, applied in
//! one exclusive transaction and tracked by `PRAGMA user_version`. A test proves both give the
//! same replica.

use anyhow::{Context, Result, bail};
use rusqlite::TransactionBehavior;

use super::Store;

/// Schema versions: index `i` holds the SQL that takes a database from version `i` to `i + 1`.
/// Append only; never edit a released entry.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("schema_v1.sql"),
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
    MIGRATION_6,
    MIGRATION_7,
    MIGRATION_8,
    MIGRATION_9,
];

/// Version 2: how much of a refused message `rejected.raw` holds (and `raw` moved to the end
/// of the row, so that a large one can be written in place without being held in memory), and
/// UUID BeskedIds in lower case so that an upper-case copy is recognised as the same message.
pub(super) const MIGRATION_2: &str = "
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

/// Version 3: `letter`, one row per letter (`message_uuid`) with its current status, kept up to
/// date in the same transaction as the statuses; `print_status_latest` is served from it.
/// `notification`, the outbox of events to send; `cursor.failed_runs` and `failing_since`.
pub(super) const MIGRATION_3: &str = "
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
pub(super) const MIGRATION_4: &str = "
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
pub(super) const MIGRATION_5: &str = "
ALTER TABLE message ADD COLUMN envelope_sha256 TEXT;
";

/// Version 6: a refused copy of a stored message (its bytes are the message's envelope, or the
/// beginning of it: a copy cut off on the way) is taken in by that message (`resolved_seq`),
/// whichever arrived first, so it is not counted as still refused. UUID ids in `rejected` are
/// kept in lower case, as in `message`, and an index finds the unresolved copies of an id as
/// each message is stored. Other content under a stored id stays refused.
pub(super) const MIGRATION_6: &str = "
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

/// Version 7: the messages of no known kind, by beskedtype (a partial index: only they are in
/// it), so that monitoring can say cheaply that a beskedtype is configured nowhere.
pub(super) const MIGRATION_7: &str = "
CREATE INDEX IF NOT EXISTS message_other_by_beskedtype ON message (beskedtype) WHERE kind = 'other';
";

/// Version 8: each letter gets a number (`letter.id`, in the order letters were first seen,
/// kept by `VACUUM`), and each status the number of its letter (`print_status.letter_id`).
/// A letter's statuses are found by it, so the index of statuses by the random `message_uuid`
/// goes: a new status now lands at the end of an index, not on a random page of it. `letter`
/// is rebuilt for its new key (its rows keep their order); `print_status_latest` is made again
/// over it, unchanged.
pub(super) const MIGRATION_8: &str = "
DROP VIEW print_status_latest;
CREATE TABLE letter_v8 (
    message_uuid    TEXT NOT NULL UNIQUE,
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
    transmission_id TEXT,
    id              INTEGER PRIMARY KEY AUTOINCREMENT
);
INSERT INTO letter_v8 (message_uuid, seq, event, outcome, final, kanal, occurred_at,
        first_seen_at, final_at, statuses, fejl_kode, fejl_tekst, afsendelse_id,
        transmission_id, id)
    SELECT message_uuid, seq, event, outcome, final, kanal, occurred_at, first_seen_at,
        final_at, statuses, fejl_kode, fejl_tekst, afsendelse_id, transmission_id, rowid
    FROM letter ORDER BY rowid;
DROP TABLE letter;
ALTER TABLE letter_v8 RENAME TO letter;
CREATE INDEX letter_by_time ON letter (occurred_at, outcome);
CREATE INDEX letter_pending_by_time ON letter (occurred_at) WHERE final = 0;
CREATE INDEX letter_pending_by_first_seen ON letter (first_seen_at) WHERE final = 0;
CREATE VIEW print_status_latest AS
SELECT l.seq AS seq, p.besked_id AS besked_id, l.message_uuid AS message_uuid,
    l.transmission_id AS transmission_id, p.message_id AS message_id, l.kanal AS kanal,
    p.status AS status, l.event AS event, p.event_uuid AS event_uuid, l.final AS final,
    l.outcome AS outcome, l.occurred_at AS occurred_at, l.fejl_kode AS fejl_kode,
    l.fejl_tekst AS fejl_tekst, l.afsendelse_id AS afsendelse_id,
    p.forsendelse_id AS forsendelse_id, p.forsendelse_type_id AS forsendelse_type_id,
    p.bruger_navn AS bruger_navn, p.enhed_tekst AS enhed_tekst,
    p.afsender_system_id AS afsender_system_id, p.correlation_id AS correlation_id,
    p.producer AS producer, p.producer_uuid AS producer_uuid, l.id AS letter_id
FROM letter AS l JOIN print_status AS p ON p.seq = l.seq;
ALTER TABLE print_status ADD COLUMN letter_id INTEGER REFERENCES letter (id);
UPDATE print_status SET letter_id = l.id FROM letter AS l
    WHERE l.message_uuid = print_status.message_uuid;
DROP INDEX print_status_by_letter;
CREATE INDEX print_status_by_letter_id ON print_status (letter_id);
";

/// Version 9: the change feed. `change`, one row per letter, status and registration at the
/// `seq` of its latest change (filled for those stored already, in the order they were
/// stored), tombstones for deletions; `change_pruned`; `export_cursor`.
pub(super) const MIGRATION_9: &str = "
CREATE TABLE change (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,      -- only grows: follow with WHERE seq > ?
    kind       TEXT NOT NULL,                          -- letter | status | registration | message
    id         INTEGER NOT NULL,                       -- letter.id, or the message's seq
    key        TEXT,                                   -- letter: message_uuid; the others: besked_id
    deleted_at TEXT                                    -- set when the thing was deleted (a tombstone)
);
CREATE UNIQUE INDEX change_by_thing ON change (kind, id);
CREATE INDEX change_tombstones ON change (deleted_at) WHERE deleted_at IS NOT NULL;

-- Where tombstones were deleted up to (`[retention] deletions_days`): a reader behind it has
-- missed deletions.
CREATE TABLE change_pruned (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    through_seq INTEGER NOT NULL
);

-- The positions `export --cursor NAME` keeps.
CREATE TABLE export_cursor (
    name       TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,                          -- letter | status | registration
    seq        INTEGER NOT NULL,                       -- the last change.seq written out
    updated_at TEXT NOT NULL,
    pruned_seen INTEGER NOT NULL DEFAULT 0             -- change_pruned.through_seq known not to skip a deletion
);

-- How far the PostgreSQL mirror ([mirror]) got, as this replica last saw it; PostgreSQL keeps
-- the positions it goes by in its own mirror_state, in the transaction that copies.
CREATE TABLE mirror_state (
    installation TEXT PRIMARY KEY,
    change_seq   INTEGER NOT NULL,                     -- the last change.seq copied
    message_seq  INTEGER NOT NULL,                     -- the last message.seq copied
    mirrored_at  TEXT,                                 -- when the mirror last caught up
    attempted_at TEXT NOT NULL,                        -- when it last tried
    error        TEXT                                  -- why the last try failed; NULL after a success
);

-- PostForespoerg's answers (`beskedhent lookup`): whether a party was registered for a channel
-- when asked. A technical failure is never stored.
CREATE TABLE registration_lookup (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    party          TEXT NOT NULL,                      -- 10-digit CPR or 8-digit CVR
    party_type     TEXT NOT NULL,                      -- cpr | cvr
    channel        TEXT NOT NULL,                      -- digitalpost | nemsms
    registered     INTEGER NOT NULL,                   -- 1 registered, 0 not
    asked_at       TEXT NOT NULL,                      -- when the answer came
    transaction_id TEXT NOT NULL                       -- X-TransaktionsId sent
);
CREATE INDEX registration_lookup_by_party ON registration_lookup (party, channel, asked_at);
CREATE INDEX registration_lookup_by_time ON registration_lookup (asked_at);

-- The best-known state per party and channel: the newer of the latest registration change of
-- the feed and the latest answer of PostForespoerg, and which one it is (`source`). Written
-- without grouping, so that a question about one party is answered by the indexes.
CREATE VIEW registration_known AS
SELECT r.party AS party, r.party_type AS party_type, r.channel AS channel,
    CASE WHEN l.asked_at > r.changed_at THEN l.registered ELSE r.registered END AS registered,
    CASE WHEN l.asked_at > r.changed_at THEN l.asked_at ELSE r.changed_at END AS known_at,
    CASE WHEN l.asked_at > r.changed_at THEN 'lookup' ELSE 'feed' END AS source
FROM registration_current AS r
LEFT JOIN registration_lookup AS l ON l.id = (
    SELECT m.id FROM registration_lookup AS m
    WHERE m.party = r.party AND m.channel = r.channel
    ORDER BY m.asked_at DESC, m.id DESC LIMIT 1)
UNION ALL
SELECT l.party, l.party_type, l.channel, l.registered, l.asked_at, 'lookup'
FROM registration_lookup AS l
WHERE l.id = (
        SELECT m.id FROM registration_lookup AS m
        WHERE m.party = l.party AND m.channel = l.channel
        ORDER BY m.asked_at DESC, m.id DESC LIMIT 1)
    AND NOT EXISTS (
        SELECT 1 FROM registration AS s WHERE s.party = l.party AND s.channel = l.channel);
INSERT INTO change (kind, id, key)
    SELECT kind, id, key FROM (
        SELECT 'status' AS kind, seq AS id, besked_id AS key, seq AS at FROM print_status
        UNION ALL SELECT 'registration', seq, besked_id, seq FROM registration
        UNION ALL SELECT 'letter', id, message_uuid, seq FROM letter)
    ORDER BY at, kind DESC;
";

/// Fills `letter` from `print_status` after migration 3 added it: per `message_uuid` the latest
/// status under the rule of `print_status_latest`, the earliest `occurred_at`, and the count.
/// The schema of version 3 (with the index of statuses by `message_uuid`); see
/// [`REBUILD_LETTERS`] for the current one.
pub(super) const REBUILD_LETTERS_V3: &str = "
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

/// Brings `letter` and `print_status.letter_id` up to date with `print_status` (after
/// `reprocess` re-derived the statuses): per `message_uuid` the latest status under the rule of
/// `print_status_latest`, the earliest `occurred_at`, and the count. A letter that remains
/// keeps its number; a letter no status names any more goes, after its statuses let go of it.
/// Every letter that changed, came or went is a change of the feed.
pub(super) const REBUILD_LETTERS: &str = "
DROP TABLE IF EXISTS temp.letter_rebuilt;
CREATE TEMP TABLE letter_rebuilt AS
SELECT message_uuid, seq, event, outcome, final, kanal, occurred_at, first_seen_at,
    CASE WHEN final THEN occurred_at END AS final_at, statuses, fejl_kode, fejl_tekst,
    afsendelse_id, transmission_id
FROM (SELECT p.message_uuid, p.seq, p.event, p.outcome, p.final, p.kanal, p.occurred_at,
          p.fejl_kode, p.fejl_tekst, p.afsendelse_id, p.transmission_id,
          row_number() OVER (PARTITION BY p.message_uuid
              ORDER BY p.final DESC, p.occurred_at DESC, p.seq DESC) AS rank,
          count(*) OVER (PARTITION BY p.message_uuid) AS statuses,
          min(p.occurred_at) OVER (PARTITION BY p.message_uuid) AS first_seen_at
      FROM print_status AS p WHERE p.message_uuid IS NOT NULL)
WHERE rank = 1;
INSERT OR REPLACE INTO change (kind, id, key)
    SELECT 'letter', l.id, l.message_uuid FROM letter AS l
    JOIN temp.letter_rebuilt AS r ON r.message_uuid = l.message_uuid
    WHERE l.seq IS NOT r.seq OR l.event IS NOT r.event OR l.outcome IS NOT r.outcome
        OR l.final IS NOT r.final OR l.kanal IS NOT r.kanal OR l.occurred_at IS NOT r.occurred_at
        OR l.first_seen_at IS NOT r.first_seen_at OR l.final_at IS NOT r.final_at
        OR l.statuses IS NOT r.statuses OR l.fejl_kode IS NOT r.fejl_kode
        OR l.fejl_tekst IS NOT r.fejl_tekst OR l.afsendelse_id IS NOT r.afsendelse_id
        OR l.transmission_id IS NOT r.transmission_id;
INSERT INTO letter (message_uuid, seq, event, outcome, final, kanal, occurred_at, first_seen_at,
        final_at, statuses, fejl_kode, fejl_tekst, afsendelse_id, transmission_id)
    SELECT * FROM temp.letter_rebuilt WHERE true
    ON CONFLICT (message_uuid) DO UPDATE SET seq = excluded.seq, event = excluded.event,
        outcome = excluded.outcome, final = excluded.final, kanal = excluded.kanal,
        occurred_at = excluded.occurred_at, first_seen_at = excluded.first_seen_at,
        final_at = excluded.final_at, statuses = excluded.statuses,
        fejl_kode = excluded.fejl_kode, fejl_tekst = excluded.fejl_tekst,
        afsendelse_id = excluded.afsendelse_id, transmission_id = excluded.transmission_id;
UPDATE print_status SET letter_id = (SELECT l.id FROM letter AS l
        WHERE l.message_uuid = print_status.message_uuid)
    WHERE letter_id IS NOT (SELECT l.id FROM letter AS l
        WHERE l.message_uuid = print_status.message_uuid);
INSERT OR IGNORE INTO change (kind, id, key) SELECT 'letter', id, message_uuid FROM letter;
INSERT OR REPLACE INTO change (kind, id, key, deleted_at)
    SELECT 'letter', id, message_uuid, strftime('%Y-%m-%dT%H:%M:%fZ', 'now') FROM letter
    WHERE message_uuid NOT IN (SELECT message_uuid FROM temp.letter_rebuilt);
DELETE FROM letter WHERE message_uuid NOT IN (SELECT message_uuid FROM temp.letter_rebuilt);
DROP TABLE temp.letter_rebuilt;
";

/// The current schema, for a new replica.
pub(super) const SCHEMA: &str = include_str!("../../schema.sql");

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

impl Store {
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
        if version == 0 {
            // A new replica (an empty database: another program's is refused before).
            tx.execute_batch(SCHEMA)
                .context("failed to create the replica's tables (schema.sql)")?;
        }
        let from = if version == 0 {
            MIGRATIONS.len()
        } else {
            version
        };
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(from) {
            tx.execute_batch(sql)
                .with_context(|| format!("failed to apply schema migration {}", index + 1))?;
            if index + 1 == 3 {
                // The statuses stored before `letter` existed.
                tx.execute_batch(REBUILD_LETTERS_V3)
                    .context("failed to fill `letter` (schema migration 3)")?;
            }
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
        tx.commit()?;
        Ok(version)
    }
}
