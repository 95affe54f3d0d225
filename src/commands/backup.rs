//! `backup PATH`: a verified copy of the replica, taken while a sync writes.

use std::path::Path;

use anyhow::Result;

use crate::config::Config;
use crate::exit;
use crate::replica::Store;

pub fn run(config: &Config, path: &Path) -> Result<u8> {
    // Read-only: a backup of the replica as it is, never migrated first.
    let store = Store::open_existing(&config.database)?;
    let progress = crate::progress::Progress::start("backup", "bytes");
    let done = store.backup_to(path, &progress.counter())?;
    drop(progress);
    crate::sayln!(
        "backup written: {} ({} bytes, schema {}, integrity ok) in {:.1} s",
        done.path.display(),
        done.bytes,
        store.schema_version()?,
        done.elapsed.as_secs_f64()
    );
    Ok(exit::OK)
}
