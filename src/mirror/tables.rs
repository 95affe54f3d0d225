//! The mirror's tables in PostgreSQL: the replica's public tables with the same names, columns
//! and meanings, PostgreSQL types, a leading `installation` column naming the beskedhent
//! installation a row comes from, and the indexes of the cookbook's questions.

use crate::replica::changes::{Kind, columns};
use crate::replica::mirror::POSTAL_EVENT_COLUMNS;

/// Version of these tables, kept in `mirror_state.schema_version`.
pub const SCHEMA_VERSION: i32 = 1;

/// A column's type in PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Int,
    Text,
    Time,
    Bool,
    Bytes,
}

impl Ty {
    pub fn sql(self) -> &'static str {
        match self {
            Ty::Int => "bigint",
            Ty::Text => "text",
            Ty::Time => "timestamptz",
            Ty::Bool => "boolean",
            Ty::Bytes => "bytea",
        }
    }
}

/// The type of a replica column in PostgreSQL.
pub fn type_of(column: &str) -> Ty {
    match column {
        "id" | "seq" | "letter_id" | "statuses" => Ty::Int,
        "final" | "registered" => Ty::Bool,
        "envelope" => Ty::Bytes,
        "received_at" | "created_at" | "occurred_at" | "first_seen_at" | "final_at"
        | "changed_at" | "envelope_pruned_at" => Ty::Time,
        _ => Ty::Text,
    }
}

/// A mirrored table: its name, its key column, and its columns after the key, in the order
/// the replica's rows are read in ([`crate::replica::mirror`]).
pub struct Table {
    pub name: &'static str,
    pub key: &'static str,
    pub columns: Vec<&'static str>,
}

impl Table {
    pub fn of(kind: Kind) -> Table {
        let (name, key) = match kind {
            Kind::Letter => ("letter", "id"),
            Kind::Status => ("print_status", "seq"),
            Kind::Registration => ("registration", "seq"),
            Kind::Message => ("message", "seq"),
        };
        let mut columns = columns(kind).to_vec();
        if kind == Kind::Message {
            columns.push("envelope");
        }
        Table { name, key, columns }
    }

    pub fn postal_event() -> Table {
        Table {
            name: "print_status_postal_event",
            key: "seq",
            columns: POSTAL_EVENT_COLUMNS.to_vec(),
        }
    }

    /// The key and the columns, each with its type.
    pub fn typed(&self) -> Vec<(&'static str, Ty)> {
        std::iter::once(self.key)
            .chain(self.columns.iter().copied())
            .map(|column| (column, type_of(column)))
            .collect()
    }
}

/// Columns that are never empty in the replica.
fn not_null(table: &str, column: &str) -> bool {
    matches!(
        (table, column),
        ("message", "besked_id" | "kind" | "source" | "received_at")
            | ("print_status", "besked_id" | "final")
            | ("print_status_postal_event", "besked_id")
            | ("letter", "message_uuid" | "seq" | "final" | "statuses")
            | (
                "registration",
                "besked_id" | "party" | "party_type" | "channel" | "registered" | "changed_at"
            )
    )
}

fn create_table(schema: &str, table: &Table, primary_key: bool) -> String {
    let mut lines = vec!["    installation text NOT NULL".to_owned()];
    for (column, ty) in table.typed() {
        let required = column == table.key || not_null(table.name, column);
        lines.push(format!(
            "    {column} {}{}",
            ty.sql(),
            if required { " NOT NULL" } else { "" }
        ));
    }
    if primary_key {
        lines.push(format!("    PRIMARY KEY (installation, {})", table.key));
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {schema}.{} (\n{}\n);\n",
        table.name,
        lines.join(",\n")
    )
}

/// The statements that create the tables, indexes and views in `schema` where missing.
pub fn create_all(schema: &str) -> String {
    let mut sql = format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.mirror_state (
    installation   text PRIMARY KEY,
    change_seq     bigint NOT NULL,
    message_seq    bigint NOT NULL,
    mirrored_at    timestamptz NOT NULL,
    schema_version integer NOT NULL,
    pruned_seen    bigint NOT NULL DEFAULT 0
);
"
    );
    for kind in [
        Kind::Message,
        Kind::Status,
        Kind::Letter,
        Kind::Registration,
    ] {
        sql += &create_table(schema, &Table::of(kind), true);
    }
    sql += &create_table(schema, &Table::postal_event(), false);
    sql += &format!(
        "CREATE INDEX IF NOT EXISTS message_by_besked_id ON {schema}.message (installation, besked_id);
CREATE INDEX IF NOT EXISTS print_status_by_letter_id ON {schema}.print_status (installation, letter_id);
CREATE INDEX IF NOT EXISTS print_status_by_time ON {schema}.print_status (installation, occurred_at);
CREATE INDEX IF NOT EXISTS print_status_postal_event_by_seq
    ON {schema}.print_status_postal_event (installation, seq);
CREATE INDEX IF NOT EXISTS letter_by_message_uuid ON {schema}.letter (installation, message_uuid);
CREATE INDEX IF NOT EXISTS letter_by_time ON {schema}.letter (installation, occurred_at, outcome);
CREATE INDEX IF NOT EXISTS letter_pending_by_time ON {schema}.letter (installation, occurred_at)
    WHERE NOT final;
CREATE INDEX IF NOT EXISTS letter_pending_by_first_seen
    ON {schema}.letter (installation, first_seen_at) WHERE NOT final;
CREATE INDEX IF NOT EXISTS registration_by_party
    ON {schema}.registration (installation, party, channel, changed_at, seq);
CREATE INDEX IF NOT EXISTS registration_by_time ON {schema}.registration (installation, changed_at);
CREATE OR REPLACE VIEW {schema}.registration_current AS
SELECT DISTINCT ON (installation, party, channel) *
FROM {schema}.registration
ORDER BY installation, party, channel, changed_at DESC, seq DESC;
CREATE OR REPLACE VIEW {schema}.print_status_latest AS
SELECT l.installation, l.seq, p.besked_id, l.message_uuid, l.transmission_id, p.message_id,
    l.kanal, p.status, l.event, p.event_uuid, l.final, l.outcome, l.occurred_at, l.fejl_kode,
    l.fejl_tekst, l.afsendelse_id, p.forsendelse_id, p.forsendelse_type_id, p.bruger_navn,
    p.enhed_tekst, p.afsender_system_id, p.correlation_id, p.producer, p.producer_uuid,
    l.id AS letter_id
FROM {schema}.letter AS l
JOIN {schema}.print_status AS p ON p.installation = l.installation AND p.seq = l.seq;
"
    );
    sql
}

/// The tables that hold an installation's rows, for a full copy afresh.
pub const ALL_TABLES: &[&str] = &[
    "print_status_postal_event",
    "print_status",
    "letter",
    "registration",
    "message",
];
