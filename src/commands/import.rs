//! `import PATH...`: envelopes from files and directories into the replica, under one source's
//! lock, then the step after a run.

use std::path::PathBuf;

use anyhow::Result;

use crate::config::Config;
use crate::exit;
use crate::ops::after_run::{Parts, after_run};
use crate::pull::lock::{FeedLock, LockError};
use crate::replica::Store;

pub fn run(config: &Config, paths: &[PathBuf], source: &str) -> Result<u8> {
    // The summary's time is the command's, waiting for another writer included.
    let started = std::time::Instant::now();
    let mut store = Store::open(&config.database, config.event_rules())?;
    // One run of a source at a time, as `sync` does for a feed: two would record each other's
    // counts and take each other for killed.
    let _lock = match FeedLock::acquire(&config.database, source) {
        Ok(lock) => lock,
        Err(LockError::Held { holder, path, .. }) => {
            crate::logging::print_error(&format!(
                "source `{source}` is being written by another beskedhent run ({holder}, lock file `{path}`); wait for it to finish, or import under another --source"
            ));
            return Ok(exit::LOCKED);
        }
        Err(error) => return Err(error.into()),
    };
    let progress = crate::progress::Progress::start("import", "files");
    let mut summary = crate::pull::import::import(
        &mut store,
        &config.decoder(),
        paths,
        source,
        &progress.counter(),
    )?;
    drop(progress);
    drop(store);
    summary.elapsed = started.elapsed();
    crate::sayln!("{}", summary.line());
    let stop = crate::ops::notify::stop_on_signals();
    let after = after_run(config, Parts::IMPORT, certificate_expiry(config), &stop);
    for line in &after.lines {
        crate::sayln!("{line}");
    }
    Ok(if summary.unreadable > 0 || summary.skipped > 0 {
        exit::ERROR
    } else if after.interrupted {
        exit::INTERRUPTED
    } else if summary.counts.rejected > 0 {
        exit::REJECTED
    } else {
        exit::OK
    })
}

/// When the `[sts]` certificate expires, for the metrics file, if it can be read.
fn certificate_expiry(config: &Config) -> Option<chrono::DateTime<chrono::Utc>> {
    config.metrics.as_ref()?;
    let credentials = crate::pull::credentials::Credentials::load(config.sts()?).ok()?;
    credentials.info().ok().map(|info| info.not_after)
}
