//! `schema.sql` is the replica's real schema: a replica created new and one brought up from
//! version 1 by the migrations have exactly its tables, views, indexes and columns; and the
//! comparison sees a changed column, index or view, but not a comment.

use std::collections::BTreeMap;

use rusqlite::Connection;

use crate::support::{Install, outcome, rows, value};

/// Everything that makes a schema, in comparable form: per table and view its columns (name,
/// type, not null, default, primary key, in order), its foreign keys and, for a view, its SQL;
/// per index its table, columns, uniqueness and condition.
fn shape(db: &Connection) -> BTreeMap<String, Vec<String>> {
    let mut shape = BTreeMap::new();
    let objects = rows(
        db,
        "SELECT type, name, tbl_name FROM sqlite_master
         WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
    );
    for object in objects {
        let [kind, name, table]: [&str; 3] = object
            .splitn(3, '|')
            .collect::<Vec<_>>()
            .try_into()
            .expect("three fields");
        let mut facts = vec![format!("{kind} on {table}")];
        match kind {
            "table" | "view" => {
                facts.extend(rows(
                    db,
                    &format!(
                        "SELECT cid, name, type, \"notnull\", dflt_value, pk
                         FROM pragma_table_info('{name}')"
                    ),
                ));
                facts.extend(rows(
                    db,
                    &format!(
                        "SELECT \"table\", \"from\", \"to\" FROM pragma_foreign_key_list('{name}')"
                    ),
                ));
                if kind == "view" {
                    facts.push(normalized(&value::<String>(
                        db,
                        &format!("SELECT sql FROM sqlite_master WHERE name = '{name}'"),
                    )));
                }
            }
            "index" => {
                facts.extend(rows(
                    db,
                    &format!("SELECT seqno, name FROM pragma_index_info('{name}')"),
                ));
                facts.extend(rows(
                    db,
                    &format!(
                        "SELECT \"unique\", partial FROM pragma_index_list('{table}')
                         WHERE name = '{name}'"
                    ),
                ));
                let sql: Option<String> = db
                    .query_row(
                        "SELECT sql FROM sqlite_master WHERE name = ?1",
                        [name],
                        |row| row.get(0),
                    )
                    .expect("index sql");
                // The condition of a partial index.
                if let Some(condition) = sql
                    .as_deref()
                    .and_then(|sql| sql.split_once(" WHERE "))
                    .map(|(_, condition)| normalized(condition))
                {
                    facts.push(condition);
                }
            }
            _ => {}
        }
        shape.insert(format!("{kind} {name}"), facts);
    }
    shape
}

/// SQL with its comments dropped and its white space collapsed.
fn normalized(sql: &str) -> String {
    sql.lines()
        .map(|line| line.split("--").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn schema_sql_is_what_the_migrations_make_and_what_a_new_replica_has() {
    // Brought up from version 1 by the migrations.
    let migrated = Install::new("");
    {
        let db = Connection::open(migrated.db_path()).expect("create");
        db.execute_batch("PRAGMA journal_mode = WAL").expect("wal");
        db.execute_batch(include_str!("../../src/replica/schema_v1.sql"))
            .expect("schema 1");
        db.pragma_update(None, "user_version", 1).expect("version");
    }
    let (code, stdout, stderr) = outcome(&migrated.run(&["init"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("from schema 1 to"), "{stdout}");
    // Created new.
    let created = Install::new("");
    let (code, stdout, stderr) = outcome(&created.run(&["init"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    // `schema.sql` on its own.
    let file = Connection::open_in_memory().expect("memory");
    file.execute_batch(include_str!("../../schema.sql"))
        .expect("schema.sql runs");

    let expected = shape(&file);
    assert!(expected.contains_key("table letter"), "{expected:?}");
    assert!(expected.contains_key("view print_status_latest"));
    for (what, db) in [("migrated", migrated.db()), ("created", created.db())] {
        let found = shape(&db);
        for (name, facts) in &expected {
            assert_eq!(found.get(name), Some(facts), "{what}: {name}");
        }
        let extra: Vec<&String> = found
            .keys()
            .filter(|name| !expected.contains_key(*name))
            .collect();
        assert!(
            extra.is_empty(),
            "{what} has more than schema.sql: {extra:?}"
        );
        assert_eq!(
            value::<i64>(&db, "PRAGMA user_version"),
            value::<i64>(&created.db(), "PRAGMA user_version")
        );
    }
}

#[test]
fn the_shape_sees_a_missing_column_an_index_and_a_changed_view() {
    let base = "CREATE TABLE t (a TEXT, b INTEGER NOT NULL DEFAULT 0);
                CREATE INDEX t_by_a ON t (a) WHERE b = 0;
                CREATE VIEW v AS SELECT a FROM t;";
    let shape_of = |sql: &str| {
        let db = Connection::open_in_memory().expect("memory");
        db.execute_batch(sql).expect("sql");
        shape(&db)
    };
    let original = shape_of(base);
    // Comments and line breaks in the SQL are no part of the shape.
    let commented = base
        .replace("SELECT a FROM t", "SELECT a -- the only column\n FROM t")
        .replace("WHERE b = 0", "WHERE b = 0 -- not yet done\n");
    assert_ne!(commented, base);
    assert_eq!(shape_of(&commented), original);
    for changed in [
        base.replace(", b INTEGER NOT NULL DEFAULT 0", ", b INTEGER"),
        base.replace("WHERE b = 0", "WHERE b = 1"),
        base.replace("ON t (a)", "ON t (b)"),
        base.replace("SELECT a FROM t", "SELECT b FROM t"),
        format!("{base} CREATE INDEX t_by_b ON t (b);"),
    ] {
        assert_ne!(shape_of(&changed), original, "{changed}");
    }
}
