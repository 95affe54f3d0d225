//! `sync`: one run over all feeds. The only place that knows the order of the steps:
//! fetch a delivery, decode it, commit its outcome, and only then acknowledge it.
//!
//! Each feed runs as its own task with its own database connection and a lock file, so two
//! runs never process the same feed at once. Deliveries are gathered into batches; a batch is
//! committed when it is full, when nothing more is ready and the broker will not send more before
//! an acknowledgement, or at the latest `flush_interval_ms` after its first delivery. A run ends
//! when the queue is empty (`basic.get` says so), at the configured limits, or on a signal.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;

use crate::amqp::{self, AmqpError, Session};
use crate::config::{Config, FeedConfig, PullConfig, SyncConfig};
use crate::credentials::Credentials;
use crate::exit;
use crate::mask::mask_cpr_in;
use crate::message::Decoder;
use crate::store::{Counts, Incoming, Outcome, Raw, RunStatus, Store};
use crate::sts::TokenClient;
use crate::time;

/// Everything a run needs, shared by the feed tasks.
pub struct Puller {
    pub database: PathBuf,
    pub pull: PullConfig,
    pub tuning: SyncConfig,
    pub decoder: Decoder,
    pub credentials: Arc<Credentials>,
    pub sts: TokenClient,
}

impl Puller {
    /// Loads credentials and sets up the STS client; fails on an unusable certificate.
    pub fn new(config: &Config) -> Result<Arc<Puller>> {
        let pull = config.pull()?;
        let credentials = Credentials::load(&pull.sts)?;
        credentials.check_validity(chrono::Utc::now())?;
        let sts = TokenClient::new(&pull.sts, &credentials)?;
        Ok(Arc::new(Puller {
            database: config.database.clone(),
            pull,
            tuning: config.sync.clone(),
            decoder: config.decoder(),
            credentials,
            sts,
        }))
    }
}

/// How one feed's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEnd {
    /// The queue is empty.
    Drained,
    /// `max_messages` or `max_seconds` was reached.
    Limit,
    /// A signal asked the run to stop.
    Interrupted,
    /// Another run holds the feed's lock.
    Locked(String),
    /// The feed could not be pulled; nothing unsaved was acknowledged.
    Failed(String),
}

/// What one feed's run did.
#[derive(Debug, Clone)]
pub struct FeedReport {
    pub name: String,
    pub counts: Counts,
    pub end: FeedEnd,
    pub reconnects: u32,
    pub elapsed: Duration,
}

/// What a run did, feed by feed.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub feeds: Vec<FeedReport>,
    pub elapsed: Duration,
}

impl RunReport {
    /// The process exit code: the worst thing that happened.
    pub fn exit_code(&self) -> u8 {
        let any = |test: fn(&FeedReport) -> bool| self.feeds.iter().any(test);
        if any(|f| matches!(f.end, FeedEnd::Failed(_))) {
            exit::FEED_FAILED
        } else if any(|f| matches!(f.end, FeedEnd::Locked(_))) {
            exit::LOCKED
        } else if any(|f| f.end == FeedEnd::Interrupted) {
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
        lines
    }
}

/// Runs every feed once, concurrently, until each is drained or stops.
pub async fn run_once(puller: Arc<Puller>, shutdown: watch::Receiver<bool>) -> RunReport {
    let started = Instant::now();
    let tasks: Vec<_> = puller
        .pull
        .feeds
        .iter()
        .cloned()
        .map(|feed| {
            let puller = puller.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move { run_feed(&puller, feed, shutdown).await })
        })
        .collect();
    let mut feeds = Vec::with_capacity(tasks.len());
    for (task, feed) in tasks.into_iter().zip(&puller.pull.feeds) {
        feeds.push(task.await.unwrap_or_else(|error| FeedReport {
            name: feed.name.clone(),
            counts: Counts::default(),
            end: FeedEnd::Failed(format!("internal error: {error}")),
            reconnects: 0,
            elapsed: started.elapsed(),
        }));
    }
    RunReport {
        feeds,
        elapsed: started.elapsed(),
    }
}

/// Why a session ended early.
enum SessionEnd {
    /// Reconnect after a pause (counts against `retries`).
    Retry(String),
    /// Reconnect at once with a fresh token (the current one is about to expire).
    Renew,
    /// Give up on this feed for this run.
    Fatal(String),
}

/// A feed's state across reconnects within one run.
struct FeedRun<'a> {
    puller: &'a Puller,
    feed: FeedConfig,
    cvr: String,
    /// The connection; lent to the commit thread while a commit is in flight.
    store: Option<Store>,
    counts: Counts,
    received: u64,
    deadline: Option<Instant>,
    /// Set once a login was refused with a freshly requested token.
    refused_fresh_token: bool,
    /// Deliveries the broker lets us hold unacknowledged, as learned (see `pull`).
    eager_at: usize,
}

async fn run_feed(
    puller: &Puller,
    feed: FeedConfig,
    mut shutdown: watch::Receiver<bool>,
) -> FeedReport {
    let started = Instant::now();
    let name = feed.name.clone();
    let report = |counts, end, reconnects| FeedReport {
        name: name.clone(),
        counts,
        end,
        reconnects,
        elapsed: started.elapsed(),
    };
    let _lock = match FeedLock::acquire(&puller.database, &feed.name) {
        Ok(lock) => lock,
        Err(why) => {
            tracing::warn!(feed = %feed.name, "{why}");
            return report(Counts::default(), FeedEnd::Locked(why), 0);
        }
    };
    let store = match Store::open(&puller.database) {
        Ok(store) => store,
        Err(error) => return report(Counts::default(), FeedEnd::Failed(format!("{error:#}")), 0),
    };
    let tuning = &puller.tuning;
    let mut run = FeedRun {
        puller,
        cvr: feed
            .cvr
            .clone()
            .unwrap_or_else(|| puller.pull.sts.cvr.clone()),
        feed,
        store: Some(store),
        counts: Counts::default(),
        received: 0,
        deadline: (tuning.max_seconds > 0)
            .then(|| Instant::now() + Duration::from_secs(tuning.max_seconds)),
        refused_fresh_token: false,
        eager_at: tuning.batch_size.min(usize::from(tuning.prefetch)),
    };
    if let Err(error) = run.store().begin_run(&name, &time::now_utc()) {
        return report(Counts::default(), FeedEnd::Failed(format!("{error:#}")), 0);
    }
    tracing::info!(feed = %name, queue = %run.feed.dueslag, "pulling");

    let mut failures = 0u32;
    let mut reconnects = 0u32;
    let mut backoff = Duration::from_millis(tuning.retry_backoff_ms);
    let end = loop {
        match run.session(&mut shutdown).await {
            Ok(end) => break end,
            Err(SessionEnd::Fatal(why)) => break FeedEnd::Failed(why),
            Err(SessionEnd::Renew) => {
                reconnects += 1;
                tracing::info!(feed = %name, "token about to expire; reconnecting with a new one");
            }
            Err(SessionEnd::Retry(why)) => {
                failures += 1;
                if failures > tuning.retries {
                    break FeedEnd::Failed(format!(
                        "{why} (gave up after {} reconnects; raise sync.retries to try longer)",
                        tuning.retries
                    ));
                }
                reconnects += 1;
                tracing::warn!(feed = %name, "{why}; reconnecting in {} ms", backoff.as_millis());
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped(&mut shutdown) => break FeedEnd::Interrupted,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    let (status, error) = match &end {
        FeedEnd::Drained | FeedEnd::Limit => (RunStatus::Ok, None),
        FeedEnd::Interrupted => (RunStatus::Interrupted, None),
        FeedEnd::Failed(why) | FeedEnd::Locked(why) => (RunStatus::Failed, Some(why.as_str())),
    };
    if let Err(error) = run.store().end_run(&name, &time::now_utc(), status, error) {
        tracing::error!(feed = %name, "cannot record the end of the run: {error:#}");
    }
    match &end {
        FeedEnd::Failed(why) => tracing::error!(feed = %name, "{}", mask_cpr_in(why)),
        other => {
            tracing::info!(feed = %name, new = run.counts.new, duplicates = run.counts.duplicates, rejected = run.counts.rejected, "{other:?}")
        }
    }
    report(run.counts, end, reconnects)
}

/// Deliveries received but not yet committed, with the tag to acknowledge them by.
struct Held {
    items: Vec<Incoming>,
    last_tag: u64,
    since: Option<Instant>,
}

/// What a commit thread hands back: the store, the outcome, and the committed items.
type CommitResult = (Store, Result<(Vec<Outcome>, Counts)>, Vec<Incoming>);

/// A batch being committed on a blocking thread while the next one is received.
struct InFlight {
    handle: tokio::task::JoinHandle<CommitResult>,
    last_tag: u64,
}

impl FeedRun<'_> {
    fn store(&mut self) -> &mut Store {
        self.store
            .as_mut()
            .expect("the store is back whenever no commit is in flight")
    }

    /// One connection: log in, consume, and commit-then-acknowledge until the queue is empty
    /// or the run must stop.
    async fn session(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<FeedEnd, SessionEnd> {
        let puller = self.puller;
        let token = puller.sts.token(&self.cvr).await.map_err(|error| {
            if error.is_transient() {
                SessionEnd::Retry(error.to_string())
            } else {
                SessionEnd::Fatal(error.to_string())
            }
        })?;
        let session = match amqp::connect(
            &puller.pull.amqp,
            &puller.credentials,
            &token,
            &self.feed.name,
        )
        .await
        {
            Ok(session) => session,
            Err(AmqpError::LoginRefused(why)) => {
                // Perhaps the token went stale: try once more with a new one.
                puller.sts.invalidate(&self.cvr).await;
                if self.refused_fresh_token {
                    return Err(SessionEnd::Fatal(format!(
                        "the broker refused the login with a fresh token: {why}; check that the certificate's organisation has a service agreement for this dueslag"
                    )));
                }
                self.refused_fresh_token = true;
                return Err(SessionEnd::Retry(format!(
                    "the broker refused the login: {why}"
                )));
            }
            Err(error) => return Err(SessionEnd::Retry(error.to_string())),
        };
        self.refused_fresh_token = false;
        let mut in_flight = None;
        let result = self.pull(&session, &token, shutdown, &mut in_flight).await;
        // A commit still in flight (after an error) completes; it is not acknowledged, so the
        // broker delivers it again and it is counted as duplicates.
        let result = match self.finish(None, &mut in_flight).await {
            Err(fatal @ SessionEnd::Fatal(_)) => Err(fatal),
            _ => result,
        };
        session.close().await;
        result
    }

    async fn pull(
        &mut self,
        session: &Session,
        token: &crate::sts::Token,
        shutdown: &mut watch::Receiver<bool>,
        in_flight: &mut Option<InFlight>,
    ) -> Result<FeedEnd, SessionEnd> {
        let tuning = &self.puller.tuning;
        let queue = self.feed.dueslag.clone();
        let mut consumer = session
            .consume(&queue, tuning.prefetch)
            .await
            .map_err(|error| match error {
                error @ AmqpError::QueueRefused { .. } => SessionEnd::Fatal(format!(
                    "{error}; check `dueslag` of feed `{}`",
                    self.feed.name
                )),
                error => SessionEnd::Retry(error.to_string()),
            })?;
        let flush_interval = Duration::from_millis(tuning.flush_interval_ms);
        let drain_check = Duration::from_millis(tuning.drain_check_ms);
        let renew_at = token.renew_at;
        let mut held = Held {
            items: Vec::with_capacity(tuning.batch_size),
            last_tag: 0,
            since: None,
        };
        let lost = |error: lapin::Error| {
            SessionEnd::Retry(format!(
                "lost the broker: {}",
                crate::sts::error_chain(&error)
            ))
        };

        loop {
            let stop = if *shutdown.borrow() {
                Some(Ok(FeedEnd::Interrupted))
            } else if (tuning.max_messages > 0 && self.received >= tuning.max_messages)
                || self
                    .deadline
                    .is_some_and(|deadline| Instant::now() >= deadline)
            {
                Some(Ok(FeedEnd::Limit))
            } else if chrono::Utc::now() >= renew_at {
                Some(Err(SessionEnd::Renew))
            } else {
                None
            };
            if let Some(end) = stop {
                self.flush(session, &mut held, in_flight).await?;
                self.finish(Some(session), in_flight).await?;
                return end;
            }

            // Take whatever is ready without waiting, up to a full batch.
            let mut took = false;
            while held.items.len() < tuning.batch_size
                && !self.at_limit(held.items.len())
                && let Some(next) = consumer.next().now_or_never()
            {
                match next {
                    Some(Ok(delivery)) => {
                        self.hold(&mut held, delivery, &queue);
                        took = true;
                    }
                    Some(Err(error)) => return Err(lost(error)),
                    None => return Err(SessionEnd::Retry("the broker ended the consumer".into())),
                }
            }
            let full = held.items.len() >= tuning.batch_size || self.at_limit(held.items.len());
            if full || (!took && held.items.len() >= self.eager_at) {
                self.flush(session, &mut held, in_flight).await?;
                continue;
            }
            if took {
                continue;
            }

            // Nothing ready: wait for a delivery, the commit in flight, the flush deadline, or
            // the drain check.
            let wait = match held.since {
                Some(since) => flush_interval.saturating_sub(since.elapsed()),
                None => drain_check,
            };
            let may_sleep = in_flight.is_none() || !held.items.is_empty();
            tokio::select! {
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => self.hold(&mut held, delivery, &queue),
                    Some(Err(error)) => return Err(lost(error)),
                    None => return Err(SessionEnd::Retry("the broker ended the consumer".into())),
                },
                done = async {
                    match in_flight.as_mut() {
                        Some(commit) => (&mut commit.handle).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let commit = in_flight.take().expect("a commit was in flight");
                    self.complete(Some(session), done, commit.last_tag).await?;
                }
                _ = tokio::time::sleep(wait), if may_sleep => {
                    if !held.items.is_empty() {
                        // The broker sends no more until we acknowledge: remember how many it
                        // lets us hold, and commit at once at that count from now on.
                        self.eager_at = self.eager_at.min(held.items.len()).max(1);
                        self.flush(session, &mut held, in_flight).await?;
                    } else {
                        match session.get(&queue).await {
                            Ok(Some(delivery)) => self.hold(&mut held, delivery, &queue),
                            Ok(None) => {
                                self.finish(Some(session), in_flight).await?;
                                return Ok(FeedEnd::Drained);
                            }
                            Err(error @ AmqpError::QueueRefused { .. }) => return Err(SessionEnd::Fatal(error.to_string())),
                            Err(error) => return Err(SessionEnd::Retry(error.to_string())),
                        }
                    }
                }
                _ = stopped(shutdown) => {}
            }
        }
    }

    fn at_limit(&self, held: usize) -> bool {
        let max = self.puller.tuning.max_messages;
        max > 0 && self.received + held as u64 >= max
    }

    /// Decodes a delivery and keeps it until its batch is committed.
    fn hold(&self, held: &mut Held, delivery: lapin::message::Delivery, queue: &str) {
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_else(|| "-".into());
        let decoded = self.puller.decoder.decode(&delivery.data);
        held.items.push(Incoming {
            origin: format!("amqp:{queue} message-id={message_id}"),
            decoded,
            raw: Raw::Bytes(delivery.data),
        });
        held.last_tag = delivery.delivery_tag;
        held.since.get_or_insert_with(Instant::now);
    }

    /// Starts committing the held deliveries on a blocking thread, after the commit before it
    /// has finished and been acknowledged. At most one commit is in flight.
    async fn flush(
        &mut self,
        session: &Session,
        held: &mut Held,
        in_flight: &mut Option<InFlight>,
    ) -> Result<(), SessionEnd> {
        self.finish(Some(session), in_flight).await?;
        if held.items.is_empty() {
            return Ok(());
        }
        let mut store = self.store.take().expect("no commit in flight");
        let items = std::mem::replace(
            &mut held.items,
            Vec::with_capacity(self.puller.tuning.batch_size),
        );
        let source = self.feed.name.clone();
        self.received += items.len() as u64;
        let handle = tokio::task::spawn_blocking(move || {
            let outcome = store.write_batch(&source, &time::now_utc(), &items);
            (store, outcome, items)
        });
        *in_flight = Some(InFlight {
            handle,
            last_tag: held.last_tag,
        });
        held.since = None;
        Ok(())
    }

    /// Waits for the commit in flight, if any, and acknowledges it (when `session` is given).
    async fn finish(
        &mut self,
        session: Option<&Session>,
        in_flight: &mut Option<InFlight>,
    ) -> Result<(), SessionEnd> {
        let Some(commit) = in_flight.take() else {
            return Ok(());
        };
        let done = commit.handle.await;
        self.complete(session, done, commit.last_tag).await
    }

    /// Takes back the store from a finished commit; then, only if it committed, acknowledges
    /// every delivery up to `last_tag`.
    async fn complete(
        &mut self,
        session: Option<&Session>,
        done: Result<CommitResult, tokio::task::JoinError>,
        last_tag: u64,
    ) -> Result<(), SessionEnd> {
        let (store, outcome, items) =
            done.map_err(|error| SessionEnd::Fatal(format!("the commit thread failed: {error}")))?;
        self.store = Some(store);
        let (outcomes, counts) = outcome.map_err(|error| {
            SessionEnd::Fatal(format!("cannot write to the database: {error:#}"))
        })?;
        for (item, outcome) in items.iter().zip(&outcomes) {
            if let (Outcome::Rejected, Err(rejection)) = (outcome, &item.decoded) {
                tracing::warn!(
                    feed = %self.feed.name,
                    origin = %item.origin,
                    besked_id = rejection.besked_id.as_deref().unwrap_or("-"),
                    "rejected: {}",
                    mask_cpr_in(&rejection.reason)
                );
            }
        }
        // Committed: the outcome is counted whether or not the acknowledgement gets through
        // (if it does not, the broker redelivers and the copies count as duplicates).
        self.counts.add(counts);
        if let Some(session) = session {
            session.ack_through(last_tag).await.map_err(|error| {
                SessionEnd::Retry(format!("lost the broker before acknowledging: {error}"))
            })?;
        }
        Ok(())
    }
}

/// An exclusive lock on one feed, held for the feed's run: `<database>-<feed>.lock`.
pub struct FeedLock {
    _file: File,
}

impl FeedLock {
    /// Takes the lock, or says who holds it.
    pub fn acquire(database: &Path, feed: &str) -> Result<FeedLock, String> {
        let path = PathBuf::from(format!("{}-{feed}.lock", database.display()));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|error| format!("cannot open lock file `{}`: {error}", path.display()))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(format!(
                "feed `{feed}` is being synced by another beskedhent (pid {}, lock file `{}`); this run leaves it alone",
                holder.trim(),
                path.display()
            ));
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        Ok(FeedLock { _file: file })
    }
}

/// Resolves when the shutdown flag turns true; never, if nobody can set it any more.
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A watch channel that turns true on SIGINT or SIGTERM.
pub fn shutdown_on_signals() -> watch::Receiver<bool> {
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("can listen for SIGTERM");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("signal received: committing what was received, then stopping");
        let _ = sender.send(true);
    });
    receiver
}
