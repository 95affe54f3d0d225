//! What a run of the feeds did: per feed, what it stored and how it ended; the report's lines
//! and the exit code they make.

use std::time::Duration;

use crate::exit;
use crate::pull::amqp::AmqpError;
use crate::pull::lock::LockError;
use crate::pull::sts::StsError;
use crate::replica::Counts;

/// How one feed's run ended.
#[derive(Debug)]
pub enum FeedEnd {
    /// The queue is empty.
    Drained,
    /// `max_messages` or `max_seconds` was reached.
    Limit,
    /// A signal asked the run to stop.
    Interrupted,
    /// Another run holds the feed's lock.
    Locked(LockError),
    /// The feed could not be pulled; nothing unsaved was acknowledged.
    Failed(FeedError),
}

/// What one feed's run did.
#[derive(Debug)]
pub struct FeedReport {
    pub name: String,
    pub counts: Counts,
    pub end: FeedEnd,
    pub reconnects: u32,
    pub elapsed: Duration,
}

/// What a run did, feed by feed.
#[derive(Debug)]
pub struct RunReport {
    pub feeds: Vec<FeedReport>,
    pub elapsed: Duration,
    /// What followed the feeds: notifications, retention, metrics (a line each, when
    /// configured).
    pub after: Vec<String>,
    /// SIGINT or SIGTERM came during the run (its feeds, or what followed them).
    pub signalled: bool,
}

impl FeedError {
    /// A batch that could not be committed: [`FeedError::Busy`] when another writer held the
    /// replica all the while.
    pub fn commit(cause: anyhow::Error) -> FeedError {
        if crate::replica::is_busy(&cause) {
            FeedError::Busy {
                cause: cause.into(),
            }
        } else {
            FeedError::Commit {
                cause: cause.into(),
            }
        }
    }

    /// The replica could not be opened or the run recorded: [`FeedError::Busy`] when another
    /// writer held it all the while.
    pub fn replica(cause: anyhow::Error) -> FeedError {
        if crate::replica::is_busy(&cause) {
            FeedError::Busy {
                cause: cause.into(),
            }
        } else {
            FeedError::Replica {
                cause: cause.into(),
            }
        }
    }
}

impl RunReport {
    /// The process exit code: the worst thing that happened. A feed left because another
    /// writer held the replica counts as one another run holds (5), not as a failure.
    pub fn exit_code(&self) -> u8 {
        let any = |test: fn(&FeedReport) -> bool| self.feeds.iter().any(test);
        fn waited(end: &FeedEnd) -> bool {
            matches!(end, FeedEnd::Failed(FeedError::Busy { .. }))
        }
        if any(|f| matches!(f.end, FeedEnd::Failed(_)) && !waited(&f.end)) {
            exit::FEED_FAILED
        } else if any(|f| matches!(f.end, FeedEnd::Locked(_)) || waited(&f.end)) {
            exit::LOCKED
        } else if self.signalled || any(|f| matches!(f.end, FeedEnd::Interrupted)) {
            exit::INTERRUPTED
        } else if any(|f| f.counts.rejected > 0) {
            exit::REJECTED
        } else {
            exit::OK
        }
    }

    /// One line per feed and a total line.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut total = Counts::default();
        for feed in &self.feeds {
            total.add(feed.counts);
            let end = match &feed.end {
                FeedEnd::Drained => "drained".to_string(),
                FeedEnd::Limit => "stopped at the configured limit".to_string(),
                FeedEnd::Interrupted => "interrupted".to_string(),
                FeedEnd::Locked(why) => format!("skipped: {why}"),
                FeedEnd::Failed(why @ FeedError::Busy { .. }) => format!("gave up: {why}"),
                FeedEnd::Failed(why) => format!("FAILED: {why}"),
            };
            let reconnects = match feed.reconnects {
                0 => String::new(),
                1 => ", 1 reconnect".to_string(),
                n => format!(", {n} reconnects"),
            };
            lines.push(format!(
                "feed {}: {} new, {} duplicates, {} rejected in {:.2} s{reconnects}; {end}",
                feed.name,
                feed.counts.new,
                feed.counts.duplicates,
                feed.counts.rejected,
                feed.elapsed.as_secs_f64()
            ));
        }
        let seconds = self.elapsed.as_secs_f64();
        let rate = if seconds > 0.0 {
            total.total() as f64 / seconds
        } else {
            0.0
        };
        lines.push(format!(
            "total: {} new, {} duplicates, {} rejected in {seconds:.2} s ({rate:.0} messages/s)",
            total.new, total.duplicates, total.rejected
        ));
        lines.extend(self.after.iter().cloned());
        lines
    }
}

/// An error from the replica, with its causes.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a feed's run failed, or why a session of it must reconnect: typed, with the cause
/// underneath (`source()`), said in one line with what to do.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The STS gave no token.
    #[error("{source}; {hint}")]
    Token { source: Box<StsError>, hint: String },
    /// The broker refused, has no such queue, or went away; `hint` says what to do, when
    /// there is something to say.
    #[error("{source}{}", hint.as_deref().map(|hint| format!("; {hint}")).unwrap_or_default())]
    Broker {
        source: Box<AmqpError>,
        hint: Option<String>,
    },
    /// The broker refused the login again, with a fresh token.
    #[error("{source} (with a fresh token); {}", source.hint())]
    RefusedFreshToken { source: Box<AmqpError> },
    /// Acknowledging failed: the broker went away; what was not acknowledged comes again.
    #[error("before acknowledging: {source}")]
    Acknowledge { source: Box<AmqpError> },
    /// A batch could not be committed or synced to disk: none of it was acknowledged.
    #[error("cannot commit: {}", crate::pull::sts::error_chain(.cause.as_ref()))]
    Commit {
        #[source]
        cause: Cause,
    },
    /// The replica could not be opened, or the run recorded.
    #[error("{}", crate::pull::sts::error_chain(.cause.as_ref()))]
    Replica {
        #[source]
        cause: Cause,
    },
    /// Another writer kept the replica locked for longer than a run waits (a commit, opening
    /// or recording the run): nothing unsaved was acknowledged.
    #[error(
        "{}; another writer kept the replica locked for longer than `wait_for_replica_seconds`, so this run leaves the feed to the next one",
        crate::pull::sts::error_chain(.cause.as_ref())
    )]
    Busy {
        #[source]
        cause: Cause,
    },
    /// The feed's lock file could not be used.
    #[error(transparent)]
    Lock(#[from] Box<LockError>),
    /// Reconnecting did not help.
    #[error("{last} (gave up after {retries} reconnects)")]
    GaveUp {
        #[source]
        last: Box<FeedError>,
        retries: u32,
    },
    /// A task of the run ended without saying how.
    #[error("internal error: {0}")]
    Internal(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy() -> anyhow::Error {
        anyhow::Error::new(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("database is locked".into()),
        ))
        .context("committing a batch")
    }

    fn report(ends: Vec<FeedEnd>) -> RunReport {
        RunReport {
            feeds: ends
                .into_iter()
                .enumerate()
                .map(|(n, end)| FeedReport {
                    name: format!("feed{n}"),
                    counts: Counts::default(),
                    end,
                    reconnects: 0,
                    elapsed: Duration::ZERO,
                })
                .collect(),
            elapsed: Duration::ZERO,
            after: Vec::new(),
            signalled: false,
        }
    }

    #[test]
    fn a_feed_kept_waiting_by_another_writer_is_exit_5_and_a_real_failure_still_4() {
        let waited = FeedError::commit(busy());
        assert!(matches!(waited, FeedError::Busy { .. }), "{waited:?}");
        assert!(
            matches!(
                FeedError::replica(anyhow::anyhow!("disk I/O error")),
                FeedError::Replica { .. }
            ),
            "not busy"
        );
        let only_waited = report(vec![FeedEnd::Drained, FeedEnd::Failed(waited)]);
        assert_eq!(only_waited.exit_code(), exit::LOCKED);
        let line = &only_waited.lines()[1];
        assert!(
            line.contains("; gave up: committing a batch: database is locked")
                && line.ends_with("; another writer kept the replica locked for longer than `wait_for_replica_seconds`, so this run leaves the feed to the next one"),
            "{line}"
        );
        let also_failed = report(vec![
            FeedEnd::Failed(FeedError::replica(busy())),
            FeedEnd::Failed(FeedError::commit(anyhow::anyhow!("disk full"))),
        ]);
        assert_eq!(also_failed.exit_code(), exit::FEED_FAILED);
    }
}
