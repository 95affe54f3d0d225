//! `init`: creates the replica, or migrates it to the current schema. Safe to run again.

use anyhow::Result;

use crate::config::Config;
use crate::exit;
use crate::replica::Store;

pub fn run(config: &Config) -> Result<u8> {
    let existed = config.database.exists();
    let before = Store::open_existing(&config.database)
        .and_then(|store| store.schema_version())
        .ok();
    let store = Store::open(&config.database, None)?;
    let now = store.schema_version()?;
    match before {
        Some(before) if before < now => crate::sayln!(
            "migrated: database {} from schema {before} to {now}",
            config.database.display()
        ),
        _ => crate::sayln!(
            "{} database {} (schema {now})",
            if existed { "up to date:" } else { "created" },
            config.database.display()
        ),
    }
    Ok(exit::OK)
}
