//! `prune`: deletes what `[retention]` says is too old.

use anyhow::Result;

use crate::config::Config;
use crate::exit;
use crate::replica::Store;

pub fn run(config: &Config) -> Result<u8> {
    if !config.retention.is_set() {
        anyhow::bail!(
            "`{}` sets no retention period ([retention] with a key above 0); nothing is deleted unless configured (see docs/operations.md)",
            config.path.display()
        );
    }
    let mut store = Store::open_required(&config.database, None)?;
    let progress = crate::progress::Progress::start("prune", "rows");
    let pruned = store.prune(&config.retention, &progress.counter())?;
    drop(progress);
    crate::sayln!("{}", pruned.line());
    Ok(exit::OK)
}
