//! Connecting to the mirror's PostgreSQL, and its errors in words an operator can act on.

use std::time::Duration;

use anyhow::Result;

use crate::config::postgres::Target;

/// Connects to `target` with `password`, waiting at most `timeout` for the connection and for
/// a stalled peer.
pub fn connect(
    target: &Target,
    timeout: Duration,
    password: Option<String>,
) -> Result<postgres::Client> {
    let mut config = target.settings().clone();
    if let Some(password) = password {
        config.password(password);
    }
    config.connect_timeout(timeout);
    config.tcp_user_timeout(timeout);
    config.keepalives(true);
    // A statement that runs or waits for a lock longer than that fails, on the server's side.
    let millis = timeout.as_millis();
    let limits = format!("-c statement_timeout={millis} -c lock_timeout={millis}");
    let options = match config.get_options() {
        Some(given) if !given.trim().is_empty() => format!("{given} {limits}"),
        _ => limits,
    };
    config.options(&options);
    let connected = match target.tls() {
        Some(tls) => config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(
            (**tls).clone(),
        )),
        None => config.connect(postgres::NoTls),
    };
    connected.map_err(|error| {
        anyhow::anyhow!(
            "cannot connect to PostgreSQL at {}: {}",
            target.shown,
            describe(&error)
        )
    })
}

/// A PostgreSQL error with its causes, and what to do where that is clear.
pub fn describe(error: &postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    if let Some(db) = error.as_db_error() {
        let hint = match db.code().code() {
            "28P01" | "28000" => {
                "; check the user and the password (mirror.password_file or mirror.password_env) and pg_hba.conf"
            }
            "3D000" => "; create the database, or name another in mirror.postgresql",
            "42501" => {
                "; the user needs CREATE on the database (for the mirror's schema) or to own that schema"
            }
            _ => "",
        };
        text.push_str(hint);
    } else if text.contains("does not support TLS") {
        text.push_str(
            "; for a cluster on this machine (a Unix socket, 127.0.0.1) add sslmode=disable to mirror.postgresql, else turn on ssl in the server",
        );
    } else if text.contains("certificate") || text.contains("UnknownIssuer") {
        text.push_str(
            "; the server's certificate is not trusted for this host name: give its CA with sslrootcert=FILE in mirror.postgresql",
        );
    }
    crate::mask::mask_cpr(&text).into_owned()
}
