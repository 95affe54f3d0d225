//! `daemon`: sync passes on the `[schedule]` cron expression until stopped.

use std::sync::Arc;

use anyhow::Result;

use crate::config::Config;
use crate::pull::feed::{Puller, shutdown_on_signals};

pub fn run(config: Config) -> Result<u8> {
    config.schedule()?;
    let puller = Puller::new(&config, "daemon")?;
    super::runtime()?.block_on(async {
        let shutdown = shutdown_on_signals();
        crate::ops::schedule::run(Arc::new(config), puller, shutdown).await
    })
}
