//! `daemon`: runs a sync pass on the `[schedule]` cron expression, never two passes at once,
//! until SIGINT or SIGTERM. Cron times are Danish local time (Europe/Copenhagen).

use std::sync::Arc;

use anyhow::{Context, Result};
use chrono_tz::Europe::Copenhagen;
use tokio::sync::{Mutex, watch};
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::sync::{self, Puller};

/// Runs passes on the schedule until a signal arrives; returns once the running pass, if any,
/// has committed and acknowledged what it received.
pub async fn run(puller: Arc<Puller>, cron: &str, shutdown: watch::Receiver<bool>) -> Result<()> {
    let busy = Arc::new(Mutex::new(()));
    let scheduler = JobScheduler::new()
        .await
        .context("cannot start the scheduler")?;
    let job = {
        let busy = busy.clone();
        let shutdown = shutdown.clone();
        Job::new_async_tz(cron, Copenhagen, move |_, _| {
            let (puller, busy, shutdown) = (puller.clone(), busy.clone(), shutdown.clone());
            Box::pin(async move {
                let Ok(_running) = busy.try_lock() else {
                    tracing::warn!("the previous pass is still running; skipping this one");
                    return;
                };
                if *shutdown.borrow() {
                    return;
                }
                tracing::info!("pass starting");
                let report = sync::run_once(puller, shutdown).await;
                for line in report.lines() {
                    tracing::info!("{line}");
                }
                tracing::info!(exit_code = report.exit_code(), "pass finished");
            })
        })
        .map_err(|error| anyhow::anyhow!("`schedule.cron`: {error}"))?
    };
    scheduler
        .add(job)
        .await
        .context("cannot schedule the job")?;
    scheduler
        .start()
        .await
        .context("cannot start the scheduler")?;
    tracing::info!(cron, "daemon started; times are Europe/Copenhagen");
    let mut waiting = shutdown.clone();
    sync::stopped(&mut waiting).await;
    let mut scheduler = scheduler;
    let _ = scheduler.shutdown().await;
    // Wait for a running pass to finish committing and acknowledging.
    let _idle = busy.lock().await;
    tracing::info!("daemon stopped");
    Ok(())
}
