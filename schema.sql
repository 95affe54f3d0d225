-- The beskedhent replica, schema version 9: every table, view, index and column.
--
-- Every table, view and column below is a public interface: people's sqlite3 queries and
-- reports depend on them. A new replica is created from this file; an older one is brought to
-- it by the migrations in src/replica/schema.rs (starting from src/replica/schema_v1.sql), and a
-- test proves that both give exactly these tables, views, indexes and columns. Columns that a
-- migration added come last in their table, as they do in a migrated replica.
--
-- Times are UTC text `YYYY-MM-DDTHH:MM:SS.fffZ`, so string order is time order. Identifiers
-- are the text received, trimmed; a UUID BeskedId is kept in lower case.

-- One row per distinct BeskedId. The first copy wins; later copies are counted in `cursor`.
CREATE TABLE message (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT, -- only grows: follow with WHERE seq > ?
    besked_id          TEXT NOT NULL UNIQUE,              -- Haendelsesbesked/BeskedId
    beskedtype         TEXT,                              -- Filtreringsdata/Beskedtype
    kind               TEXT NOT NULL,                     -- post_status | digitalpost_registration | nemsms_registration | other
    source             TEXT NOT NULL,                     -- the feed name, or the import source
    received_at        TEXT NOT NULL,                     -- when beskedhent received it
    created_at         TEXT,                              -- Leveranceinformation/Dannelsestidspunkt
    transaktions_id    TEXT,                              -- Leveranceinformation/TransaktionsId
    producer_uuid      TEXT,                              -- Filtreringsdata/BeskedAnsvarligAktoer
    origin             TEXT,                              -- file path, or AMQP queue and message-id
    envelope           BLOB NOT NULL,                     -- the exact bytes received (empty once dropped)
    envelope_pruned_at TEXT,                              -- when retention or `forget` dropped the envelope
    envelope_sha256    TEXT                               -- fingerprint of a dropped envelope
);
-- Envelopes not dropped yet, by age: what retention looks at.
CREATE INDEX message_envelope_age ON message (created_at, received_at)
    WHERE envelope_pruned_at IS NULL;
-- Messages of no known kind, by beskedtype: what monitoring looks at to say that a beskedtype
-- is configured nowhere.
CREATE INDEX message_other_by_beskedtype ON message (beskedtype) WHERE kind = 'other';

-- Everything refused, with its exact bytes (or, above 256 MiB, their first MiB) and a reason
-- a person understands. The same bytes received again are counted as a duplicate, not stored
-- twice.
CREATE TABLE rejected (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    source       TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    reason       TEXT NOT NULL,
    raw_sha256   TEXT NOT NULL,                        -- hex SHA-256 of all the bytes received
    besked_id    TEXT,                                 -- when it could be read
    origin       TEXT,                                 -- file path, or AMQP queue and message-id
    resolved_seq INTEGER REFERENCES message (seq),     -- the message that took it in (reprocess, or a copy of a stored message)
    raw_size     INTEGER NOT NULL,                     -- bytes received
    raw_complete INTEGER NOT NULL DEFAULT 1,           -- 0 when `raw` holds only the beginning
    raw          BLOB NOT NULL                         -- last, so a large one is written in place
);
CREATE INDEX rejected_by_sha256 ON rejected (raw_sha256);
CREATE INDEX rejected_by_time ON rejected (received_at);
CREATE INDEX rejected_by_resolved ON rejected (resolved_seq) WHERE resolved_seq IS NOT NULL;
CREATE INDEX rejected_unresolved_by_besked_id ON rejected (besked_id)
    WHERE besked_id IS NOT NULL AND resolved_seq IS NULL;

-- One row per PKO_PostStatus message (DigitalPost_StatusPrint).
CREATE TABLE print_status (
    seq                 INTEGER PRIMARY KEY REFERENCES message (seq),
    besked_id           TEXT NOT NULL,
    message_uuid        TEXT,                          -- the letter's id chosen by the sender
    transmission_id     TEXT,
    message_id          TEXT,                          -- Digital Post's own id
    kanal               TEXT,                          -- Digital Post | Fysisk Post
    status              TEXT,                          -- TransaktionsStatusKode as sent
    event               TEXT,                          -- ObjektHandling by name, e.g. Afleveret Digital Post
    event_uuid          TEXT,                          -- ObjektHandling as sent
    final               INTEGER NOT NULL,              -- 1 for Fejlet, Afleveret Digital Post, Modtaget Post Danmark, Tilbagekaldt
    outcome             TEXT,                          -- failed | delivered | recalled for a final status
    occurred_at         TEXT,                          -- TransaktionsDatoTid, else Registreringstidspunkt
    fejl_kode           TEXT,
    fejl_tekst          TEXT,
    afsendelse_id       TEXT,
    forsendelse_id      TEXT,
    forsendelse_type_id TEXT,
    bruger_navn         TEXT,
    enhed_tekst         TEXT,
    afsender_system_id  TEXT,
    correlation_id      TEXT,
    producer            TEXT,                          -- Digital Post | Strålfors | Edora | KMD Charlie Tango
    producer_uuid       TEXT,
    letter_id           INTEGER REFERENCES letter (id) -- the letter of message_uuid: find a letter's statuses by it
);
-- A letter's statuses: by the letter's number, which grows as letters are first seen, so that
-- a new status lands at the end of this index rather than on a random page of it.
CREATE INDEX print_status_by_letter_id ON print_status (letter_id);
CREATE INDEX print_status_by_time ON print_status (occurred_at);

-- Postal events of physical letters (ForsendelseHaendelseSamling).
CREATE TABLE print_status_postal_event (
    seq         INTEGER NOT NULL REFERENCES print_status (seq),
    besked_id   TEXT NOT NULL,
    type_kode   TEXT,
    occurred_at TEXT,
    beloeb      TEXT
);
CREATE INDEX print_status_postal_event_by_seq ON print_status_postal_event (seq);

-- One row per letter (message_uuid) with its current status, kept up to date in the
-- transaction that stores each status: the newest by occurred_at (then by arrival), except that
-- a final status is never replaced by a non-final one, whenever that arrived or happened.
CREATE TABLE letter (
    message_uuid    TEXT NOT NULL UNIQUE,
    seq             INTEGER NOT NULL,                  -- print_status.seq of the current status
    event           TEXT,
    outcome         TEXT,                              -- failed | delivered | recalled, when final
    final           INTEGER NOT NULL,
    kanal           TEXT,
    occurred_at     TEXT,                              -- of the current status
    first_seen_at   TEXT,                              -- the earliest occurred_at of its statuses
    final_at        TEXT,                              -- occurred_at of the final status
    statuses        INTEGER NOT NULL,                  -- how many statuses the letter has
    fejl_kode       TEXT,
    fejl_tekst      TEXT,
    afsendelse_id   TEXT,
    transmission_id TEXT,
    id              INTEGER PRIMARY KEY AUTOINCREMENT   -- the letter's number, in the order letters were first seen
);
CREATE INDEX letter_by_time ON letter (occurred_at, outcome);
CREATE INDEX letter_pending_by_time ON letter (occurred_at) WHERE final = 0;
CREATE INDEX letter_pending_by_first_seen ON letter (first_seen_at) WHERE final = 0;

-- Each letter's current status with all its fields: served from `letter`.
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

-- One row per registration change (DigitalPostTilmelding, NemSMSTilmelding).
CREATE TABLE registration (
    seq        INTEGER PRIMARY KEY REFERENCES message (seq),
    besked_id  TEXT NOT NULL,
    party      TEXT NOT NULL,                          -- 10-digit CPR or 8-digit CVR, no URN prefix
    party_type TEXT NOT NULL,                          -- cpr | cvr
    channel    TEXT NOT NULL,                          -- digitalpost | nemsms
    registered INTEGER NOT NULL,                       -- 1 registered, 0 deregistered
    changed_at TEXT NOT NULL,                          -- Registreringstidspunkt
    handling   TEXT                                    -- ObjektHandling as sent
);
CREATE INDEX registration_by_party ON registration (party, channel, changed_at, seq);
CREATE INDEX registration_by_time ON registration (changed_at);

-- The current state of each (party, channel): the newest change by changed_at, whatever the
-- arrival order.
CREATE VIEW registration_current AS
SELECT r.*
FROM registration AS r
WHERE r.seq = (
    SELECT s.seq FROM registration AS s
    WHERE s.party = r.party AND s.channel = r.channel
    ORDER BY s.changed_at DESC, s.seq DESC
    LIMIT 1);

-- One row per source (feed or import source): position, counts and the last run.
CREATE TABLE cursor (
    source           TEXT PRIMARY KEY,
    last_seq         INTEGER,                          -- message.seq of the newest message
    last_besked_id   TEXT,
    last_received_at TEXT,
    messages         INTEGER NOT NULL DEFAULT 0,       -- new messages stored
    duplicates       INTEGER NOT NULL DEFAULT 0,       -- copies of a BeskedId already stored
    rejected         INTEGER NOT NULL DEFAULT 0,       -- rows written to `rejected`
    run_started_at   TEXT,
    run_ended_at     TEXT,                             -- NULL while a run is going (or was killed)
    run_status       TEXT,                             -- running | ok | failed | interrupted
    run_error        TEXT,
    failed_runs      INTEGER NOT NULL DEFAULT 0,       -- failed runs in a row
    failing_since    TEXT                              -- start of the first of them
);

-- One row per run of a source: its history, where `cursor` keeps only the last.
CREATE TABLE run (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT NOT NULL,
    command     TEXT NOT NULL,                         -- sync | daemon | import (unknown: from before schema 4)
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    status      TEXT NOT NULL,                         -- running | ok | failed | interrupted | killed
    messages    INTEGER NOT NULL DEFAULT 0,
    duplicates  INTEGER NOT NULL DEFAULT 0,
    rejected    INTEGER NOT NULL DEFAULT 0,
    error       TEXT
);
CREATE INDEX run_by_source ON run (source, started_at);
CREATE INDEX run_by_outcome ON run (source, status, ended_at);

-- The outbox: events written with the change that causes them, sent after the commit and
-- marked sent only once delivered.
CREATE TABLE notification (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    key             TEXT NOT NULL UNIQUE,              -- e.g. letter_failed:<message_uuid>
    event           TEXT NOT NULL,                     -- letter_failed | letter_overdue | feed_failing | message_rejected
    payload         TEXT NOT NULL,                     -- the JSON sent
    created_at      TEXT NOT NULL,
    occurred_at     TEXT,                              -- when what it tells of happened
    suppressed      INTEGER NOT NULL DEFAULT 0,        -- 1: older than max_age_days, never sent
    sent_at         TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error      TEXT
);
CREATE INDEX notification_unsent ON notification (id) WHERE sent_at IS NULL AND suppressed = 0;

-- The change feed (`beskedhent export`): one row per letter, status or registration, at the
-- `seq` of its latest change, in the transaction that made it; a deletion leaves a tombstone
-- naming the thing by its keys only.
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
