//! The PostgreSQL mirror (`[mirror]`): after every run, and with `beskedhent mirror`, the
//! replica's public tables are copied into PostgreSQL by the change feed, a batch of changes
//! and new messages at a time. Each batch is one PostgreSQL transaction that applies the
//! changes (upserts by key, deletions) and moves the mirror's position, kept in PostgreSQL's
//! `mirror_state` beside the rows: a step cut short leaves nothing, the next one starts where
//! the last committed one ended, and a batch applied twice changes nothing. The replica stays
//! the source of truth; a PostgreSQL that is away delays the mirror, never pulling.

pub mod connect;
pub mod tables;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postgres::types::ToSql;
use rusqlite::types::Value;

use crate::config::MirrorConfig;
use crate::replica::Store;
use crate::replica::changes::{Kind, Position};
use crate::replica::mirror::{Batch, Rows};
use tables::{Table, Ty};

/// The most envelope bytes one batch holds (with `envelopes = true`): memory stays bounded by
/// bytes whatever the size of the messages.
const ENVELOPE_BYTES: u64 = 16 * 1024 * 1024;

/// What one mirror run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mirrored {
    /// Changes copied (`change` rows), and messages stored since the last run.
    pub changes: u64,
    pub new_messages: u64,
    pub batches: u64,
    /// Why it started again from nothing, if it did.
    pub restarted: Option<&'static str>,
    /// Whether a stop request ended it before it caught up.
    pub interrupted: bool,
    pub seconds: f64,
}

impl Mirrored {
    /// One line for the run's report.
    pub fn line(&self, config: &MirrorConfig) -> String {
        let plural = |n: u64, one: &str, many: &str| {
            if n == 1 {
                format!("1 {one}")
            } else {
                format!("{n} {many}")
            }
        };
        let copied = match (self.changes, self.new_messages) {
            (0, 0) => "nothing new".to_owned(),
            (changes, 0) => format!("{} copied", plural(changes, "change", "changes")),
            (changes, messages) => format!(
                "{} and {} copied",
                plural(changes, "change", "changes"),
                plural(messages, "new message", "new messages")
            ),
        };
        format!(
            "mirror: {copied} to PostgreSQL {} as installation `{}` in {} in {:.1} s{}{}",
            config.target.shown,
            config.installation,
            match self.batches {
                1 => "1 transaction".to_owned(),
                n => format!("{n} transactions"),
            },
            self.seconds,
            self.restarted
                .map(|why| format!(" (copied afresh: {why})"))
                .unwrap_or_default(),
            if self.interrupted {
                "; stopped before it caught up, the next run goes on"
            } else {
                ""
            }
        )
    }
}

/// Copies what changed since the last run into PostgreSQL, batch by batch, until caught up or
/// `stop` says so. Records a failure in the replica's `mirror_state` (for `status --check`).
///
/// The copy runs on a thread of its own with its own connection to the replica `database`,
/// watched from here: PostgreSQL gets `timeout_seconds` to connect and for each batch, and
/// a server that stops answering (or a lock that is never released) ends the mirror with an
/// error instead of holding up the run; a stop request ends it at once. A batch still in flight
/// then is one PostgreSQL transaction: it commits whole or not at all, and the thread writes
/// nothing more.
pub fn run(
    store: &mut Store,
    database: &std::path::Path,
    config: &MirrorConfig,
    stop: &dyn Fn() -> bool,
) -> Result<Mirrored> {
    let result = watched(database, config, stop);
    if let Err(error) = &result {
        // Masked as a log line is (a number joined to letters too, as in a role name).
        let text = crate::logging::safe_line(&format!("{error:#}"));
        let now = crate::time::now_utc();
        if let Err(also) = store.set_mirror_state(&config.installation, None, &now, Some(&text)) {
            tracing::warn!("could not record the mirror's failure in the replica: {also:#}");
        }
    }
    result
}

/// Runs [`copy`] on its own thread, giving up when it makes no progress for the timeout.
fn watched(
    database: &std::path::Path,
    config: &MirrorConfig,
    stop: &dyn Fn() -> bool,
) -> Result<Mirrored> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let abandoned = Arc::new(AtomicBool::new(false));
    let (progress, watch) = std::sync::mpsc::channel::<Option<Result<Mirrored>>>();
    let worker = {
        let (database, config, abandoned) =
            (database.to_path_buf(), config.clone(), abandoned.clone());
        std::thread::Builder::new()
            .name("mirror".into())
            .spawn(move || {
                let result = Store::open(&database, None).and_then(|mut store| {
                    let going_on = || {
                        let _ = progress.send(None);
                        !abandoned.load(Ordering::SeqCst)
                    };
                    copy(&mut store, &config, &going_on)
                });
                let _ = progress.send(Some(result));
            })?
    };
    let patience = Duration::from_secs(config.timeout_seconds);
    let mut last = Instant::now();
    let outcome = loop {
        match watch.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(result)) => break Some(result),
            Ok(None) => last = Instant::now(),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                break Some(Err(anyhow::anyhow!(
                    "the mirror's thread ended without a word"
                )));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if stop() {
            break None;
        }
        if last.elapsed() > patience {
            abandoned.store(true, Ordering::SeqCst);
            bail!(
                "PostgreSQL at {} did not answer within {} s (`mirror.timeout_seconds`); what was committed stays, the next run goes on",
                config.target.shown,
                config.timeout_seconds
            );
        }
    };
    match outcome {
        Some(result) => {
            let _ = worker.join();
            result
        }
        None => {
            abandoned.store(true, Ordering::SeqCst);
            Ok(Mirrored {
                interrupted: true,
                ..Mirrored::default()
            })
        }
    }
}

/// Copies batch by batch until caught up; `going_on` is told of each step's progress and says
/// whether to go on.
fn copy(store: &mut Store, config: &MirrorConfig, going_on: &dyn Fn() -> bool) -> Result<Mirrored> {
    let started = Instant::now();
    let timeout = Duration::from_secs(config.timeout_seconds);
    let mut client = connect::connect(&config.target, timeout, config.password()?)?;
    let schema = &config.schema;
    if !going_on() {
        bail!("stopped");
    }
    prepare(&mut client, schema, &config.target.shown)?;
    let mut done = Mirrored::default();
    loop {
        if !going_on() {
            done.interrupted = true;
            break;
        }
        let step = step(&mut client, store, config)?;
        done.changes += step.changes;
        done.new_messages += step.new_messages;
        done.batches += 1;
        done.restarted = done.restarted.or(step.restarted);
        if !step.more {
            break;
        }
    }
    done.seconds = started.elapsed().as_secs_f64();
    Ok(done)
}

/// Creates the tables where missing (once at a time: several installations may start
/// together) and refuses tables written by a newer beskedhent.
fn prepare(client: &mut postgres::Client, schema: &str, shown: &str) -> Result<()> {
    let mut tx = client.transaction().map_err(|e| pg_error(e, shown))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('beskedhent mirror schema'))",
        &[],
    )
    .map_err(|e| pg_error(e, shown))?;
    // "already exists, skipping" on every run says nothing.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .map_err(|e| pg_error(e, shown))?;
    tx.batch_execute(&tables::create_all(schema))
        .map_err(|e| pg_error(e, shown))
        .with_context(|| format!("cannot create the mirror's tables in schema `{schema}`"))?;
    let newest: Option<i32> = tx
        .query_one(
            &format!("SELECT max(schema_version) FROM {schema}.mirror_state"),
            &[],
        )
        .map_err(|e| pg_error(e, shown))?
        .get(0);
    if let Some(newest) = newest.filter(|version| *version > tables::SCHEMA_VERSION) {
        bail!(
            "the mirror's tables in schema `{schema}` at {shown} are of version {newest}, written by a newer beskedhent (this one writes version {}); upgrade beskedhent",
            tables::SCHEMA_VERSION
        );
    }
    tx.commit().map_err(|e| pg_error(e, shown))?;
    Ok(())
}

fn pg_error(error: postgres::Error, shown: &str) -> anyhow::Error {
    anyhow::anyhow!("PostgreSQL at {shown}: {}", connect::describe(&error))
}

struct Step {
    changes: u64,
    new_messages: u64,
    more: bool,
    restarted: Option<&'static str>,
}

/// One batch in one PostgreSQL transaction.
fn step(client: &mut postgres::Client, store: &mut Store, config: &MirrorConfig) -> Result<Step> {
    let shown = &config.target.shown;
    let schema = &config.schema;
    let installation = &config.installation;
    let pg = |error| pg_error(error, shown);
    let mut tx = client.transaction().map_err(pg)?;
    // One step of an installation at a time (a timer's run and a `mirror` by hand).
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('beskedhent mirror ' || $1))",
        &[installation],
    )
    .map_err(pg)?;
    let through = store.pruned_through()?;
    let position = tx
        .query_opt(
            &format!(
                "SELECT change_seq, message_seq, pruned_seen FROM {schema}.mirror_state
                 WHERE installation = $1"
            ),
            &[installation],
        )
        .map_err(pg)?
        .map(|row| {
            (
                row.get::<_, i64>(0),
                row.get::<_, i64>(1),
                row.get::<_, i64>(2),
            )
        });
    // A mirror starting from nothing skipped no deletion.
    let (mut change_seq, mut message_seq, mut seen) = position.unwrap_or((0, 0, through));
    let afresh = afresh_because(
        store,
        installation,
        (change_seq, message_seq, seen),
        through,
    )?;
    if let Some((why, _)) = &afresh {
        tracing::warn!("{why}: copying everything afresh");
        forget_installation(&mut tx, schema, installation).map_err(pg)?;
        (change_seq, message_seq, seen) = (0, 0, through);
    }
    let restarted = afresh.map(|(_, short)| short);
    let envelopes = config.envelopes.then_some(ENVELOPE_BYTES);
    let batch = store.mirror_batch(change_seq, message_seq, config.batch, envelopes)?;
    apply(&mut tx, schema, installation, &batch).map_err(pg)?;
    let seen = crate::replica::changes::seen_after(batch.change_seq, seen, through);
    tx.execute(
        &format!(
            "INSERT INTO {schema}.mirror_state
                 (installation, change_seq, message_seq, mirrored_at, schema_version, pruned_seen)
             VALUES ($1, $2, $3, now(), $4, $5)
             ON CONFLICT (installation) DO UPDATE SET change_seq = excluded.change_seq,
                 message_seq = excluded.message_seq, mirrored_at = excluded.mirrored_at,
                 schema_version = excluded.schema_version, pruned_seen = excluded.pruned_seen"
        ),
        &[
            installation,
            &batch.change_seq,
            &batch.message_seq,
            &tables::SCHEMA_VERSION,
            &seen,
        ],
    )
    .map_err(pg)?;
    tx.commit().map_err(pg)?;
    let now = crate::time::now_utc();
    store.set_mirror_state(
        installation,
        Some((batch.change_seq, batch.message_seq)),
        &now,
        None,
    )?;
    Ok(Step {
        changes: batch.count - batch.new_messages,
        new_messages: batch.new_messages,
        more: batch.more,
        restarted,
    })
}

/// Why the mirror of `installation`, at these positions in PostgreSQL, must copy everything
/// afresh, if it must: it fell behind deletions forgotten through `through`, or it is past
/// what this replica gave out (a replica restored from an older backup gives out the positions
/// after it again, for other changes). The reason for the log, and in short for the run's line.
fn afresh_because(
    store: &Store,
    installation: &str,
    (change_seq, message_seq, seen): (i64, i64, i64),
    through: i64,
) -> Result<Option<(String, &'static str)>> {
    if let Position::Missed(through) = crate::replica::changes::position(change_seq, seen, through)
    {
        return Ok(Some((
            format!(
                "the mirror of installation `{installation}` is at change {change_seq}, older than deletions forgotten through {through} ([retention] deletions_days)"
            ),
            "it had missed deletions",
        )));
    }
    let (changes, messages) = (store.change_issued()?, store.message_issued()?);
    if change_seq > changes || message_seq > messages {
        return Ok(Some((
            format!(
                "the mirror of installation `{installation}` is at change {change_seq} and message {message_seq}, past the newest this replica gave out ({changes} and {messages}): the replica was restored from an older backup, or another replica mirrors under the same installation name (give each its own)"
            ),
            "it was past what this replica gave out",
        )));
    }
    Ok(None)
}

/// Deletes every row of `installation`, to copy everything afresh.
fn forget_installation(
    tx: &mut postgres::Transaction<'_>,
    schema: &str,
    installation: &str,
) -> Result<(), postgres::Error> {
    for table in tables::ALL_TABLES {
        tx.execute(
            &format!("DELETE FROM {schema}.{table} WHERE installation = $1"),
            &[&installation],
        )?;
    }
    Ok(())
}

/// Applies one batch: deletions first (a thing is in a batch once, deleted or as it is now),
/// then the current rows.
fn apply(
    tx: &mut postgres::Transaction<'_>,
    schema: &str,
    installation: &str,
    batch: &Batch,
) -> Result<(), postgres::Error> {
    delete(tx, schema, installation, &batch.deleted)?;
    for (kind, rows) in [
        (Kind::Message, &batch.messages),
        (Kind::Letter, &batch.letters),
        (Kind::Status, &batch.statuses),
        (Kind::Registration, &batch.registrations),
    ] {
        upsert(tx, schema, installation, &Table::of(kind), rows)?;
    }
    // A status's postal events are replaced as a whole.
    let seqs: Vec<i64> = batch
        .statuses
        .rows
        .iter()
        .filter_map(|row| integer(&row[0]))
        .collect();
    if !seqs.is_empty() {
        tx.execute(
            &format!(
                "DELETE FROM {schema}.print_status_postal_event
                 WHERE installation = $1 AND seq = ANY($2)"
            ),
            &[&installation, &seqs],
        )?;
        let events = Table::postal_event();
        insert(
            tx,
            schema,
            installation,
            &events,
            &batch.postal_events,
            false,
        )?;
    }
    Ok(())
}

/// Deletes the things `deleted` names (a status with its postal events).
fn delete(
    tx: &mut postgres::Transaction<'_>,
    schema: &str,
    installation: &str,
    deleted: &[(Kind, i64)],
) -> Result<(), postgres::Error> {
    for kind in [
        Kind::Letter,
        Kind::Status,
        Kind::Registration,
        Kind::Message,
    ] {
        let ids: Vec<i64> = deleted
            .iter()
            .filter(|(deleted, _)| *deleted == kind)
            .map(|(_, id)| *id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        let table = Table::of(kind);
        let mut names = vec![table.name];
        if kind == Kind::Status {
            names.push("print_status_postal_event");
        }
        for name in names {
            tx.execute(
                &format!(
                    "DELETE FROM {schema}.{name} WHERE installation = $1 AND {} = ANY($2)",
                    table.key
                ),
                &[&installation, &ids],
            )?;
        }
    }
    Ok(())
}

fn upsert(
    tx: &mut postgres::Transaction<'_>,
    schema: &str,
    installation: &str,
    table: &Table,
    rows: &Rows,
) -> Result<(), postgres::Error> {
    insert(tx, schema, installation, table, rows, true)
}

/// Inserts `rows` into `table` in one statement (an array per column), replacing the rows of
/// the same key when `replace`.
fn insert(
    tx: &mut postgres::Transaction<'_>,
    schema: &str,
    installation: &str,
    table: &Table,
    rows: &Rows,
    replace: bool,
) -> Result<(), postgres::Error> {
    if rows.rows.is_empty() {
        return Ok(());
    }
    let typed = table.typed();
    let names: Vec<&str> = typed.iter().map(|(name, _)| *name).collect();
    let mut parameters: Vec<Box<dyn ToSql + Sync>> = vec![Box::new(installation.to_owned())];
    let mut selected = Vec::new();
    let mut arrays = Vec::new();
    for (index, (name, ty)) in typed.iter().enumerate() {
        let column = rows.rows.iter().map(|row| &row[index]);
        let number = index + 2;
        let (array, cast) = match ty {
            Ty::Int => (format!("${number}::bigint[]"), ""),
            Ty::Bool => (format!("${number}::boolean[]"), ""),
            Ty::Bytes => (format!("${number}::bytea[]"), ""),
            Ty::Text => (format!("${number}::text[]"), ""),
            Ty::Time => (format!("${number}::text[]"), "::timestamptz"),
        };
        parameters.push(column_values(*ty, column, table.name, name));
        arrays.push(array);
        selected.push(format!("u.{name}{cast}"));
    }
    let mut sql = format!(
        "INSERT INTO {schema}.{} (installation, {}) SELECT $1, {} FROM unnest({}) AS u({})",
        table.name,
        names.join(", "),
        selected.join(", "),
        arrays.join(", "),
        names.join(", ")
    );
    if replace {
        let updates: Vec<String> = names[1..]
            .iter()
            .map(|name| format!("{name} = excluded.{name}"))
            .collect();
        sql += &format!(
            " ON CONFLICT (installation, {}) DO UPDATE SET {}",
            table.key,
            updates.join(", ")
        );
    }
    let references: Vec<&(dyn ToSql + Sync)> = parameters.iter().map(|p| p.as_ref()).collect();
    tx.execute(&sql, &references)?;
    Ok(())
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Integer(number) => Some(*number),
        Value::Real(number) => Some(*number as i64),
        Value::Text(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// Text as PostgreSQL can hold it (no NUL).
fn text(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::Integer(number) => number.to_string(),
        Value::Real(number) => number.to_string(),
        Value::Text(text) => text.clone(),
        Value::Blob(bytes) => String::from_utf8_lossy(bytes).into_owned(),
    };
    Some(if text.contains('\0') {
        text.replace('\0', "\u{fffd}")
    } else {
        text
    })
}

/// One column's values as the array PostgreSQL gets. A time the replica holds that is not a
/// timestamp (none is written so) goes as NULL, with a warning, rather than stop the mirror.
fn column_values<'a>(
    ty: Ty,
    values: impl Iterator<Item = &'a Value>,
    table: &str,
    column: &str,
) -> Box<dyn ToSql + Sync> {
    match ty {
        Ty::Int => Box::new(values.map(integer).collect::<Vec<_>>()),
        Ty::Bool => Box::new(
            values
                .map(|value| integer(value).map(|number| number != 0))
                .collect::<Vec<_>>(),
        ),
        Ty::Bytes => Box::new(
            values
                .map(|value| match value {
                    Value::Blob(bytes) => Some(bytes.clone()),
                    Value::Text(text) => Some(text.clone().into_bytes()),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        Ty::Text => Box::new(values.map(text).collect::<Vec<_>>()),
        Ty::Time => Box::new(
            values
                .map(|value| {
                    let text = text(value)?;
                    if chrono::DateTime::parse_from_rfc3339(&text).is_ok() {
                        Some(text)
                    } else {
                        tracing::warn!(
                            "{table}.{column} holds `{}`, not a timestamp: mirrored as NULL",
                            crate::mask::mask_cpr(&text.chars().take(40).collect::<String>())
                        );
                        None
                    }
                })
                .collect::<Vec<_>>(),
        ),
    }
}
