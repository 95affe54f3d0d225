//! The replica's write path, migrations and queries, on in-memory and temporary databases.

use super::schema::REBUILD_LETTERS;
use super::*;
use crate::decode::message::Rejection;

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
                 transmission_id, id) FROM letter ORDER BY message_uuid",
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

/// 300 statuses about 12 letters, written in 20 batches: out of order, final before non-final,
/// equal times.
fn shuffled_statuses() -> Store {
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
    store
}

/// How many statuses name their letter by its number and UUID alike.
fn linked(store: &Store) -> i64 {
    store
        .conn
        .query_row(
            "SELECT count(*) FROM print_status AS p JOIN letter AS l
             ON l.id = p.letter_id AND l.message_uuid = p.message_uuid",
            [],
            |row| row.get(0),
        )
        .unwrap()
}

#[test]
fn letters_kept_one_status_at_a_time_equal_letters_derived_at_once() {
    let store = shuffled_statuses();
    let kept = letters(&store);
    assert_eq!(kept.len(), 12);
    let by_letter: Vec<(String, i64)> = pairs(
        &store,
        "SELECT message_uuid, seq FROM letter ORDER BY message_uuid",
    );
    assert_eq!(by_letter, latest_by_old_rule(&store));
    // Each status names its letter by the letter's number, given in the order letters were
    // first seen.
    assert_eq!(linked(&store), 300);
    let first_seen: Vec<(String, i64)> = pairs(
        &store,
        "SELECT message_uuid, min(seq) FROM print_status GROUP BY message_uuid ORDER BY 2",
    );
    let numbered: Vec<(String, i64)> =
        pairs(&store, "SELECT message_uuid, id FROM letter ORDER BY id");
    assert_eq!(
        first_seen.iter().map(|(uuid, _)| uuid).collect::<Vec<_>>(),
        numbered.iter().map(|(uuid, _)| uuid).collect::<Vec<_>>()
    );
    // Made again from the statuses (as `reprocess` does), every letter keeps its number.
    store
        .conn
        .execute_batch("UPDATE print_status SET letter_id = NULL WHERE seq % 2 = 0")
        .unwrap();
    store.conn.execute_batch(REBUILD_LETTERS).unwrap();
    assert_eq!(letters(&store), kept);
    assert_eq!(linked(&store), 300);
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
    let first = store
        .reprocess(&decode, 1 << 20, &crate::progress::Counter::none())
        .unwrap();
    assert_eq!(
        (first.taken_in, first.already_stored, first.still_rejected),
        (1, 1, 1)
    );
    let again = store
        .reprocess(&decode, 1 << 20, &crate::progress::Counter::none())
        .unwrap();
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
    let store = Store::open_in_memory().unwrap();
    store
        .conn
        .execute_batch(
            "DROP INDEX rejected_unresolved_by_besked_id;
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
    // Migration 6 alone: the later ones expect the schema of their own time.
    store
        .conn
        .execute_batch(super::schema::MIGRATION_6)
        .unwrap();
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
    assert_eq!(pragma("cache_size"), -8 * 1024);
    assert_eq!(pragma("wal_autocheckpoint"), 256 * 1024 * 1024 / PAGE_SIZE);
    assert_eq!(pragma("journal_size_limit"), 256 * 1024 * 1024);
    store.tune_for_pull(1024 * 1024).expect("tune");
    assert_eq!(pragma("cache_size"), -4 * 1024);
    // The cache shrinks as messages may grow, never under the default.
    assert_eq!(pull_cache_kib(1), 8 * 1024);
    assert_eq!(pull_cache_kib(64 * 1024), 8 * 1024);
    assert_eq!(pull_cache_kib(96 * 1024), 5461);
    assert_eq!(pull_cache_kib(256 * 1024), 4 * 1024);
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
    let full =
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL), None);
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
