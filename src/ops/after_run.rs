//! The one step that follows every run that takes messages in (`import`, `sync`, each daemon
//! pass): send the notifications that are due, apply `[retention]`, write the metrics file.
//! Each part is independent of the others; each says one line of what it did, or that it
//! failed and why (also logged as an error). After a signal nothing new is started: what is
//! pending goes out on the next run.

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::ops::notify::{self, Stop};
use crate::replica::Store;

/// Which parts apply after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// `[notify]`: send what is due.
    pub notify: bool,
    /// `[retention]`: prune. `sync` and the daemon prune; `import` does not (an archive
    /// imported to be looked at is not deleted on arrival).
    pub prune: bool,
    /// `[metrics]`: write the text file.
    pub metrics: bool,
    /// `[mirror]`: copy what changed into PostgreSQL.
    pub mirror: bool,
}

impl Parts {
    /// After `sync` and each daemon pass.
    pub const PULL: Parts = Parts {
        notify: true,
        prune: true,
        metrics: true,
        mirror: true,
    };
    /// After `import`.
    pub const IMPORT: Parts = Parts {
        notify: true,
        prune: false,
        metrics: true,
        mirror: true,
    };
}

/// What the step did: one line per part that ran, and whether a signal cut it short.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AfterRun {
    pub lines: Vec<String>,
    pub interrupted: bool,
}

/// Runs the parts `parts` names that `config` configures. `certificate_expiry` goes into the
/// metrics file when known.
pub fn after_run(
    config: &Config,
    parts: Parts,
    certificate_expiry: Option<DateTime<Utc>>,
    stop: Stop<'_>,
) -> AfterRun {
    let stopping = stop();
    let notify = config.notify.as_ref().filter(|_| parts.notify && !stopping);
    let prune = parts.prune && config.retention.is_set() && !stopping;
    let metrics = config.metrics.as_ref().filter(|_| parts.metrics);
    let mirror = config.mirror.as_ref().filter(|_| parts.mirror && !stopping);
    let mut done = AfterRun::default();
    if notify.is_none() && !prune && metrics.is_none() && mirror.is_none() {
        done.interrupted = stopping;
        return done;
    }
    let mut say = |what: &str, result: anyhow::Result<String>| match result {
        Ok(line) => done.lines.push(line),
        Err(error) => {
            tracing::error!("{what}: {error:#}");
            done.lines.push(format!("{what}: FAILED: {error:#}"));
        }
    };
    // One connection for all of them.
    let mut store = match Store::open(&config.database, config.event_rules()) {
        Ok(store) => store,
        Err(error) => {
            say("after the run", Err(error));
            done.interrupted = stop();
            return done;
        }
    };
    if let Some(settings) = notify {
        say(
            "notifications",
            notify::deliver(&mut store, settings, stop).map(|sent| sent.line(&store)),
        );
    }
    if prune {
        say(
            "retention",
            store
                .prune(&config.retention, &crate::progress::Counter::none())
                .map(|pruned| pruned.line()),
        );
    }
    // After pruning, so that what it deleted goes too; a PostgreSQL that is away only
    // delays the mirror: the next run catches up.
    if let Some(settings) = mirror {
        say(
            "mirror",
            crate::mirror::run(&mut store, &config.database, settings, stop)
                .map(|done| done.line(settings)),
        );
    }
    if let Some(metrics) = metrics {
        say(
            "metrics",
            crate::ops::metrics::write_metrics(&store, &metrics.textfile, certificate_expiry)
                .map(|()| format!("metrics written to {}", metrics.textfile.display())),
        );
    }
    done.interrupted = stop();
    done
}

/// One pass of `sync` or the daemon: every feed pulled once, then the step after the run (on a
/// blocking thread: sending may block, pruning takes a while). Its lines end the report.
pub async fn pull_pass(
    config: std::sync::Arc<Config>,
    puller: std::sync::Arc<crate::pull::feed::Puller>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> crate::pull::report::RunReport {
    let mut report = crate::pull::feed::run_once(puller.clone(), shutdown.clone()).await;
    let expiry = puller.credentials.info().ok().map(|info| info.not_after);
    let watching = shutdown.clone();
    let after = tokio::task::spawn_blocking(move || {
        after_run(&config, Parts::PULL, expiry, &|| *watching.borrow())
    })
    .await
    .unwrap_or_else(|error| AfterRun {
        lines: vec![format!("after the run: internal error: {error}")],
        interrupted: false,
    });
    report.after = after.lines;
    report.signalled |= after.interrupted || *shutdown.borrow();
    report
}
