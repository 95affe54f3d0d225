//! `daemon`: runs a sync pass on the `[schedule]` cron expression, never two passes at once,
//! until SIGINT or SIGTERM. Cron times are Danish local time (Europe/Copenhagen).
//!
//! Under systemd (`Type=notify`) it reports readiness and, after every pass, a status line
//! (`systemctl status beskedhent` shows it). With `exit_after_failed_passes`, it exits with
//! code 4 after that many passes in a row in which a feed failed, so that the service manager
//! sees the failure (and restarts it, or gives up and marks the unit failed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};
use chrono_tz::Europe::Copenhagen;
use tokio::sync::{Mutex, Notify, watch};
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::config::{Config, ScheduleConfig};
use crate::exit;
use crate::pull::feed::{self, Puller};

/// Runs passes on the schedule until a signal arrives (exit code 0) or too many passes in a row
/// failed (exit code 4); returns once the running pass, if any, has committed and acknowledged
/// what it received.
pub async fn run(
    config: Arc<Config>,
    puller: Arc<Puller>,
    shutdown: watch::Receiver<bool>,
) -> Result<u8> {
    let schedule = config.schedule()?.clone();
    let passes = Arc::new(Passes {
        config,
        puller,
        shutdown: shutdown.clone(),
        busy: Mutex::new(()),
        failed_in_a_row: AtomicU32::new(0),
        limit: schedule.exit_after_failed_passes,
        give_up: Notify::new(),
    });
    let scheduler = start_scheduler(&schedule, passes.clone()).await?;
    tracing::info!(cron = %schedule.cron, "daemon started; times are Europe/Copenhagen");
    notify_systemd("READY=1\nSTATUS=waiting for the first pass");
    let mut waiting = shutdown;
    let code = tokio::select! {
        _ = feed::stopped(&mut waiting) => exit::OK,
        _ = passes.give_up.notified() => exit::FEED_FAILED,
    };
    notify_systemd("STOPPING=1");
    let mut scheduler = scheduler;
    let _ = scheduler.shutdown().await;
    // Wait for a running pass to finish committing and acknowledging.
    let _idle = passes.busy.lock().await;
    tracing::info!("daemon stopped");
    Ok(code)
}

/// What the passes share: never two at once, and the count of failing passes in a row.
struct Passes {
    config: Arc<Config>,
    puller: Arc<Puller>,
    shutdown: watch::Receiver<bool>,
    busy: Mutex<()>,
    failed_in_a_row: AtomicU32,
    /// `exit_after_failed_passes` (0: never give up).
    limit: u32,
    give_up: Notify,
}

/// Schedules a pass on every time of the cron expression.
async fn start_scheduler(schedule: &ScheduleConfig, passes: Arc<Passes>) -> Result<JobScheduler> {
    let scheduler = JobScheduler::new()
        .await
        .context("cannot start the scheduler")?;
    let job = Job::new_async_tz(schedule.cron.as_str(), Copenhagen, move |_, _| {
        let passes = passes.clone();
        Box::pin(async move { passes.run_one().await })
    })
    .map_err(|error| anyhow::anyhow!("`schedule.cron`: {error}"))?;
    scheduler
        .add(job)
        .await
        .context("cannot schedule the job")?;
    scheduler
        .start()
        .await
        .context("cannot start the scheduler")?;
    Ok(scheduler)
}

impl Passes {
    /// One pass, unless the previous one is still running or a signal came.
    async fn run_one(&self) {
        let Ok(_running) = self.busy.try_lock() else {
            tracing::warn!("the previous pass is still running; skipping this one");
            return;
        };
        if *self.shutdown.borrow() {
            return;
        }
        tracing::info!("pass starting");
        notify_systemd("STATUS=pass running");
        let report = crate::ops::after_run::pull_pass(
            self.config.clone(),
            self.puller.clone(),
            self.shutdown.clone(),
        )
        .await;
        for line in report.lines() {
            tracing::info!("{line}");
        }
        self.count(&report);
    }

    /// Tells systemd how the pass went, and gives up after `limit` failing passes in a row.
    fn count(&self, report: &crate::pull::report::RunReport) {
        let code = report.exit_code();
        let failed: Vec<&str> = report
            .feeds
            .iter()
            .filter(|feed| matches!(feed.end, crate::pull::report::FeedEnd::Failed(_)))
            .map(|feed| feed.name.as_str())
            .collect();
        let now = crate::time::now_utc();
        if failed.is_empty() {
            self.failed_in_a_row.store(0, Ordering::SeqCst);
            tracing::info!(exit_code = code, "pass finished");
            notify_systemd(&format!("STATUS=last pass {now}: ok"));
            return;
        }
        let streak = self.failed_in_a_row.fetch_add(1, Ordering::SeqCst) + 1;
        tracing::error!(
            exit_code = code,
            failed_passes = streak,
            "pass finished; feeds failed: {}",
            failed.join(", ")
        );
        notify_systemd(&format!(
            "STATUS=last pass {now}: FAILED ({}); {streak} failing passes in a row",
            failed.join(", ")
        ));
        if self.limit > 0 && streak >= self.limit {
            tracing::error!(
                "{streak} passes in a row failed (schedule.exit_after_failed_passes = {}); stopping with exit code {}",
                self.limit,
                exit::FEED_FAILED
            );
            self.give_up.notify_one();
        }
    }
}

/// Sends a state to systemd through `$NOTIFY_SOCKET`, if set (nothing otherwise). Failures
/// are logged at debug level only: the daemon works the same without a service manager.
pub fn notify_systemd(state: &str) {
    let Some(socket) = crate::env::notify_socket() else {
        return;
    };
    // What systemd shows is output like any other: each line masked and escaped.
    let state: Vec<String> = state.split('\n').map(crate::logging::safe_line).collect();
    let state = state.join("\n");
    let sent = (|| -> std::io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::net::{SocketAddr, UnixDatagram};
        let bytes = socket.as_bytes();
        let address = if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        } else {
            SocketAddr::from_pathname(std::path::Path::new(&socket))?
        };
        UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &address)?;
        Ok(())
    })();
    if let Err(error) = sent {
        tracing::debug!("cannot notify the service manager: {error}");
    }
}
