//! `sync`: every feed pulled once until its queue is empty, then the step after the run.

use std::sync::Arc;

use anyhow::Result;

use crate::config::Config;
use crate::pull::feed::{Puller, shutdown_on_signals};

pub fn run(config: Config) -> Result<u8> {
    let puller = Puller::new(&config, "sync")?;
    super::runtime()?.block_on(async {
        let shutdown = shutdown_on_signals();
        let report = crate::ops::after_run::pull_pass(Arc::new(config), puller, shutdown).await;
        for line in report.lines() {
            crate::sayln!("{line}");
        }
        Ok(report.exit_code())
    })
}
