//! `reprocess`: refused messages, and messages of no known kind, through the current
//! configuration again.

use anyhow::Result;

use crate::config::Config;
use crate::exit;
use crate::replica::Store;

pub fn run(config: &Config) -> Result<u8> {
    let mut store = Store::open_required(&config.database, None)?;
    let decoder = config.decoder();
    let progress = crate::progress::Progress::start("reprocess", "rows");
    let done = store.reprocess(
        &|raw: &[u8]| decoder.decode(raw),
        config.max_message_bytes,
        &progress.counter(),
    )?;
    drop(progress);
    crate::sayln!(
        "reprocessed: {} refused messages taken in, {} already stored, {} still refused; {} messages derived anew, {} not derivable (rows kept)",
        done.taken_in,
        done.already_stored,
        done.still_rejected,
        done.rederived,
        done.not_derivable
    );
    Ok(if done.still_rejected > 0 || done.not_derivable > 0 {
        exit::REJECTED
    } else {
        exit::OK
    })
}
