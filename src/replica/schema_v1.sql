-- The beskedhent replica as schema version 1 created it: the first migration, kept as it was
-- released (a replica of version 0 is brought to 1 by it, then on by the migrations in
-- schema.rs). The current schema, with every table, view and column, is `schema.sql` at the top
-- of the repository.
-- Times are UTC text `YYYY-MM-DDTHH:MM:SS.fffZ`, so string order is time order. Identifiers
-- are the text received, trimmed.

-- One row per distinct BeskedId. The first copy wins; later copies are counted in `cursor`.
CREATE TABLE message (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT, -- only grows: follow with WHERE seq > ?
    besked_id       TEXT NOT NULL UNIQUE,              -- Haendelsesbesked/BeskedId
    beskedtype      TEXT,                              -- Filtreringsdata/Beskedtype
    kind            TEXT NOT NULL,                     -- post_status | digitalpost_registration | nemsms_registration | other
    source          TEXT NOT NULL,                     -- the feed name, or the import source
    received_at     TEXT NOT NULL,                     -- when beskedhent received it
    created_at      TEXT,                              -- Leveranceinformation/Dannelsestidspunkt
    transaktions_id TEXT,                              -- Leveranceinformation/TransaktionsId
    producer_uuid   TEXT,                              -- Filtreringsdata/BeskedAnsvarligAktoer
    origin          TEXT,                              -- file path, or AMQP queue and message-id
    envelope        BLOB NOT NULL                      -- the exact bytes received
);

-- Everything refused, with its exact bytes and a reason a person understands. The same bytes
-- received again are counted as a duplicate, not stored twice.
CREATE TABLE rejected (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    source       TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    reason       TEXT NOT NULL,
    raw          BLOB NOT NULL,
    raw_sha256   TEXT NOT NULL,                        -- hex SHA-256 of raw
    besked_id    TEXT,                                 -- when it could be read
    origin       TEXT,                                 -- file path, or AMQP queue and message-id
    resolved_seq INTEGER REFERENCES message (seq)      -- set by `reprocess` once it was taken in
);
CREATE INDEX rejected_by_sha256 ON rejected (raw_sha256);
CREATE INDEX rejected_by_time ON rejected (received_at);

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
    producer_uuid       TEXT
);
CREATE INDEX print_status_by_letter ON print_status (message_uuid);
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

-- The current status of each letter: the newest by occurred_at (then by arrival), except that a
-- final status is never replaced by a non-final one, whenever that arrived or happened.
CREATE VIEW print_status_latest AS
SELECT p.*
FROM print_status AS p
WHERE p.message_uuid IS NOT NULL
  AND p.seq = (
      SELECT q.seq FROM print_status AS q
      WHERE q.message_uuid = p.message_uuid
      ORDER BY q.final DESC, q.occurred_at DESC, q.seq DESC
      LIMIT 1);

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
    run_error        TEXT
);
