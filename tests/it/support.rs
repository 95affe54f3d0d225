//! Shared helpers: a temporary installation with its config, running the binary, reading the
//! replica, and generating realistic envelopes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::Connection;

pub const BIN: &str = env!("CARGO_BIN_EXE_beskedhent");

/// The fixtures directory of this repository.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A temporary directory holding a config file and a replica.
pub struct Install {
    pub dir: tempfile::TempDir,
}

/// The registration types of the test envelopes (test UUIDs).
pub const TYPES: &str = r#"
[types.digitalpost_registration]
beskedtype = "5b1e4a32-7d0c-4a58-9b0e-1c2f3a4b5c6d"
registered = ["0f0e7a1c-1111-4a2b-9c3d-4e5f6a7b8c9d"]
deregistered = ["0f0e7a1c-2222-4a2b-9c3d-4e5f6a7b8c9d"]

[types.nemsms_registration]
beskedtype = "6c2f5b43-8e1d-4b69-8c1f-2d3e4f5a6b7c"
registered = ["0f0e7a1c-1111-4a2b-9c3d-4e5f6a7b8c9d"]
deregistered = ["0f0e7a1c-2222-4a2b-9c3d-4e5f6a7b8c9d"]
"#;

impl Install {
    /// An installation whose config is `database = "replica.db"` followed by `extra`.
    pub fn new(extra: &str) -> Install {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("config.toml"),
            format!("database = \"replica.db\"\n{extra}"),
        )
        .expect("write config");
        Install { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config(&self) -> PathBuf {
        self.path("config.toml")
    }

    pub fn db_path(&self) -> PathBuf {
        self.path("replica.db")
    }

    /// Runs `beskedhent --config <this config> args...` from another working directory, so
    /// relative paths in the config must resolve against the config file.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--config")
            .arg(self.config())
            .args(args)
            .current_dir(std::env::temp_dir())
            .env("BESKEDHENT_LOG", "warn")
            .output()
            .expect("run beskedhent")
    }

    pub fn db(&self) -> Connection {
        Connection::open(self.db_path()).expect("open replica")
    }
}

/// Exit code, stdout and stderr as text, for assertions and their messages.
pub fn outcome(output: &Output) -> (i32, String, String) {
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs one query returning a single value.
pub fn value<T: rusqlite::types::FromSql>(db: &Connection, sql: &str) -> T {
    db.query_row(sql, [], |row| row.get(0))
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
}

/// Runs a query and renders every row as `a|b|c` (NULL as `-`).
pub fn rows(db: &Connection, sql: &str) -> Vec<String> {
    let mut statement = db
        .prepare(sql)
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    let columns = statement.column_count();
    statement
        .query_map([], |row| {
            Ok((0..columns)
                .map(|i| match row.get_ref(i).expect("column") {
                    rusqlite::types::ValueRef::Null => "-".to_string(),
                    rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                    rusqlite::types::ValueRef::Real(v) => v.to_string(),
                    rusqlite::types::ValueRef::Text(v) => String::from_utf8_lossy(v).into_owned(),
                    rusqlite::types::ValueRef::Blob(v) => format!("<{} bytes>", v.len()),
                })
                .collect::<Vec<_>>()
                .join("|"))
        })
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

/// A realistic PKO_PostStatus envelope (about 3.3 KB) with the given ids.
pub fn status_envelope(besked_id: &str, letter: &str, minute: u32) -> String {
    use base64::Engine;
    let payload = format!(
        r#"<PKO_PostStatus xmlns="http://serviceplatformen.dk/xml/print/PKO_PostStatus/1/types"><TransmissionId>{letter}</TransmissionId><MessageUUID>{letter}</MessageUUID><MessageId>{besked_id}</MessageId><KanalKode>Digital Post</KanalKode><TransaktionsDatoTid>2026-03-01T10:{minute:02}:00.000Z</TransaktionsDatoTid><TransaktionsStatusKode>Afleveret Digital Post</TransaktionsStatusKode><CorrelationId>{letter}</CorrelationId><FejlDetaljer/></PKO_PostStatus>"#
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(payload);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<ns2:Haendelsesbesked xmlns="urn:oio:sagdok:3.0.0" xmlns:ns2="urn:oio:besked:kuvert:1.0" xmlns:ns3="http://www.w3.org/2000/09/xmldsig#" xmlns:ns4="urn:oio:sts:1.0.0"><ns2:BeskedId><UUIDIdentifikator>{besked_id}</UUIDIdentifikator></ns2:BeskedId><ns2:BeskedVersion>1.0</ns2:BeskedVersion><ns2:Beskedkuvert><ns2:Filtreringsdata><ns2:Beskedtype><UUIDIdentifikator>d2bed63c-4853-4008-b6e0-a74c15b15fbf</UUIDIdentifikator></ns2:Beskedtype><ns2:BeskedAnsvarligAktoer><UUIDIdentifikator>96514e13-afdd-44d6-95a8-adc2ca19b127</UUIDIdentifikator></ns2:BeskedAnsvarligAktoer><ns2:TilladtModtager><URNIdentifikator>urn:oio:cvr:55133018</URNIdentifikator></ns2:TilladtModtager><ns2:RelateretObjekt><ns2:ObjektId><UUIDIdentifikator>53213778-de6b-42ee-8fbd-8aa73b0d4d85</UUIDIdentifikator></ns2:ObjektId><ns2:ObjektType><UUIDIdentifikator>91aa31b3-c4b3-499e-8689-93b1ef89f319</UUIDIdentifikator></ns2:ObjektType></ns2:RelateretObjekt><ns2:ObjektRegistrering><ns2:ObjektRegistreringId><UUIDIdentifikator>{letter}</UUIDIdentifikator></ns2:ObjektRegistreringId><ns2:RegistreringsAktoer><UUIDIdentifikator>19dc3a1d-c629-4853-b566-7fe49cf674ce</UUIDIdentifikator></ns2:RegistreringsAktoer><ns2:Registreringstidspunkt><TidsstempelDatoTid>2026-03-01T10:{minute:02}:00.000Z</TidsstempelDatoTid></ns2:Registreringstidspunkt><ns2:ObjektAnsvarligMyndighed><URNIdentifikator>urn:oio:cvr:55133018</URNIdentifikator></ns2:ObjektAnsvarligMyndighed><ns2:ObjektId><UUIDIdentifikator>{letter}</UUIDIdentifikator></ns2:ObjektId><ns2:ObjektType><UUIDIdentifikator>9a7be69f-b736-4e0e-9d5b-78d4f43e7ad7</UUIDIdentifikator></ns2:ObjektType><ns2:ObjektHandling><UUIDIdentifikator>f7161a89-5068-4023-bc80-d7f4daad2a2e</UUIDIdentifikator></ns2:ObjektHandling></ns2:ObjektRegistrering></ns2:Filtreringsdata><ns2:Leveranceinformation><ns2:Dannelsestidspunkt><TidsstempelDatoTid>2026-03-01T10:{minute:02}:00.000Z</TidsstempelDatoTid></ns2:Dannelsestidspunkt><ns2:TransaktionsId><UUIDIdentifikator>{besked_id}</UUIDIdentifikator></ns2:TransaktionsId><ns2:Kildesystem><UUIDIdentifikator>19dc3a1d-c629-4853-b566-7fe49cf674ce</UUIDIdentifikator></ns2:Kildesystem><ns2:Sikkerhedsklassificering><UUIDIdentifikator>1d81c472-0808-44cc-963d-f5ef0170ae1d</UUIDIdentifikator></ns2:Sikkerhedsklassificering></ns2:Leveranceinformation></ns2:Beskedkuvert><ns2:Beskeddata><Base64 xmlns="urn:besked:kuvert:1.0" xmlns:ns4="urn:oio:sagdok:3.0.0" content-type="application/xml" encoding="UTF-8" file-type=".xml">{encoded}</Base64></ns2:Beskeddata></ns2:Haendelsesbesked>"#
    )
}

/// A deterministic UUID-shaped id for test message `n`.
pub fn test_uuid(prefix: u32, n: u64) -> String {
    format!("{prefix:08x}-0000-4000-8000-{n:012x}")
}
