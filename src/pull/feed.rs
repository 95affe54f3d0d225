//! `sync`: one run over all feeds. The only place that knows the order of the steps:
//! fetch a delivery, decode it, commit its outcome, and only then acknowledge it.
//!
//! Each feed runs as its own task with its own database connection and a lock file, so two
//! runs never process the same feed at once. Deliveries are gathered into batches; a batch is
//! committed when it is full (by count or by bytes), when nothing more is ready and the broker
//! will not send more before an acknowledgement, or at the latest `flush_interval_ms` after its
//! first delivery. A batch is acknowledged once its commit has reached the disk: the WAL is
//! synced on another thread while the next batch is written. A run ends when the queue is
//! empty (`basic.get` says so), at the configured limits, or on a signal. Memory is bounded by
//! bytes: the broker may hold back no more unacknowledged deliveries than [`HELD_BYTES`] of
//! `max_message_bytes`-sized messages allow.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;

use crate::config::{Config, EventRules, FeedConfig, Fetch, PullConfig, SyncConfig};
use crate::decode::message::Decoder;
use crate::pull::amqp::{self, AmqpError, Session};
use crate::pull::committer::{Committed, Committer, Slot, Synced};
use crate::pull::credentials::Credentials;
use crate::pull::lock::{FeedLock, LockError};
use crate::pull::report::{FeedEnd, FeedError, FeedReport, RunReport};
use crate::pull::sts::TokenClient;
use crate::replica::{Counts, Incoming, Raw, RunEnd, RunStatus, Store};
use crate::time;

/// Most bytes of deliveries held unacknowledged (received, not yet committed) per feed, for
/// messages of the largest allowed size; the effective prefetch follows from it: 2,000 (the
/// default) at the default `max_message_bytes` of 64 KiB. With real envelopes (3-8 KB) the
/// window holds a tenth of it.
pub const HELD_BYTES: usize = 128 * 1024 * 1024;

/// A batch is committed once the deliveries it holds reach this many bytes. What a message's
/// decoding keeps besides its bytes is at most as large again, so the two batches decoded at a
/// time (one being committed, one filling) add at most 4 × this to the window's bytes.
pub const BATCH_BYTES: usize = 6 * 1024 * 1024;

/// Everything a run needs, shared by the feed tasks.
pub struct Puller {
    pub database: PathBuf,
    pub pull: PullConfig,
    pub tuning: SyncConfig,
    pub decoder: Decoder,
    pub credentials: Arc<Credentials>,
    pub sts: TokenClient,
    /// The prefetch asked of the broker: `sync.prefetch`, lowered so that unacknowledged
    /// deliveries of the largest allowed size stay within [`HELD_BYTES`].
    pub prefetch: u16,
    /// `max_message_bytes`: sizes the page cache of each feed's writer.
    pub max_message_bytes: usize,
    /// The events recorded with the batches and the runs' ends (`[notify]`'s rules).
    pub events: Option<EventRules>,
    /// The command runs are recorded under in `run.command`: `sync` or `daemon`.
    pub command: &'static str,
}

impl Puller {
    /// Checks the database, loads credentials and sets up the STS client; fails on a database
    /// that cannot be opened or an unusable certificate.
    pub fn new(config: &Config, command: &'static str) -> Result<Arc<Puller>> {
        let pull = config.pull()?;
        drop(Store::open(&config.database, None)?);
        let credentials = Credentials::load(&pull.sts)?;
        credentials.check_validity(chrono::Utc::now())?;
        let sts = TokenClient::new(&pull.sts, &credentials)?;
        let prefetch = effective_prefetch(config.sync.prefetch, config.max_message_bytes);
        if prefetch < config.sync.prefetch {
            tracing::debug!(
                prefetch,
                "sync.prefetch lowered so that unacknowledged messages of max_message_bytes stay within {} MiB",
                HELD_BYTES >> 20
            );
        }
        Ok(Arc::new(Puller {
            database: config.database.clone(),
            pull,
            tuning: config.sync.clone(),
            decoder: config.decoder(),
            credentials,
            sts,
            prefetch,
            max_message_bytes: config.max_message_bytes,
            events: config.event_rules(),
            command,
        }))
    }
}

/// The prefetch to ask for: at most `configured`, and few enough that that many messages of
/// `max_message_bytes` fit in [`HELD_BYTES`] (at least 1).
pub fn effective_prefetch(configured: u16, max_message_bytes: usize) -> u16 {
    let by_bytes = (HELD_BYTES / max_message_bytes.max(1)).clamp(1, usize::from(u16::MAX));
    configured.min(by_bytes as u16)
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
            end: FeedEnd::Failed(FeedError::Internal(error.to_string())),
            reconnects: 0,
            elapsed: started.elapsed(),
        }));
    }
    let elapsed = started.elapsed();
    RunReport {
        feeds,
        elapsed,
        after: Vec::new(),
        signalled: *shutdown.borrow(),
    }
}

/// Why a session ended early.
enum SessionEnd {
    /// Reconnect after a pause (counts against `retries`).
    Retry(FeedError),
    /// Reconnect at once with a fresh token (the current one is about to expire).
    Renew,
    /// Give up on this feed for this run.
    Fatal(FeedError),
}

/// A feed's state across reconnects within one run.
struct FeedRun<'a> {
    puller: &'a Puller,
    feed: FeedConfig,
    cvr: String,
    committer: Committer,
    counts: Counts,
    received: u64,
    deadline: Option<Instant>,
    /// Set once a login was refused with a freshly requested token.
    refused_fresh_token: bool,
    /// Deliveries at which a batch is committed without waiting for more: half the window,
    /// or fewer if the broker turned out to allow fewer (see `step_consume`).
    eager_at: usize,
    eager_max: usize,
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
    let (_lock, mut run, run_id) = match FeedRun::start(puller, feed) {
        Ok(started) => started,
        Err(end) => return report(Counts::default(), end, 0),
    };
    tracing::info!(feed = %name, queue = %run.feed.dueslag, "pulling");
    let (end, reconnects) = run.sessions(&mut shutdown).await;
    run.record_end(run_id, &end);
    match &end {
        FeedEnd::Failed(why) => tracing::error!(feed = %name, "{why}"),
        other => {
            tracing::info!(feed = %name, new = run.counts.new, duplicates = run.counts.duplicates, rejected = run.counts.rejected, "{other:?}")
        }
    }
    report(run.counts, end, reconnects)
}

impl<'a> FeedRun<'a> {
    /// Takes the feed's lock, opens the replica and records the run's start; or says how the
    /// feed ends without running.
    fn start(puller: &'a Puller, feed: FeedConfig) -> Result<(FeedLock, Self, i64), FeedEnd> {
        let lock = match FeedLock::acquire(&puller.database, &feed.name) {
            Ok(lock) => lock,
            Err(error @ LockError::Held { .. }) => {
                tracing::warn!(feed = %feed.name, "{error}");
                return Err(FeedEnd::Locked(error));
            }
            Err(error) => return Err(FeedEnd::Failed(Box::new(error).into())),
        };
        let replica = |cause: anyhow::Error| FeedEnd::Failed(FeedError::replica(cause));
        let store = Store::open(&puller.database, puller.events).map_err(replica)?;
        store
            .tune_for_pull(puller.max_message_bytes)
            .map_err(replica)?;
        let tuning = &puller.tuning;
        // Half the window: while one half is being committed, the broker can send the other.
        let eager_max = tuning
            .batch_size
            .min((usize::from(puller.prefetch) / 2).max(1));
        let mut run = FeedRun {
            puller,
            cvr: feed
                .cvr
                .clone()
                .unwrap_or_else(|| puller.pull.sts.cvr.clone()),
            committer: Committer {
                database: puller.database.clone(),
                max_message_bytes: puller.max_message_bytes,
                events: puller.events,
                flusher: store.wal_flusher(),
                slot: Slot::Idle(store),
                syncing: None,
            },
            feed,
            counts: Counts::default(),
            received: 0,
            deadline: (tuning.max_seconds > 0)
                .then(|| Instant::now() + Duration::from_secs(tuning.max_seconds)),
            refused_fresh_token: false,
            eager_at: eager_max,
            eager_max,
        };
        let run_id = run
            .committer
            .store()
            .and_then(|store| store.begin_run(&run.feed.name, puller.command, &time::now_utc()))
            .map_err(replica)?;
        Ok((lock, run, run_id))
    }

    /// Sessions until one ends the run: a fresh token when the current one is about to expire,
    /// a pause (doubling, at most 30 s) and a reconnect after a failure worth retrying, at most
    /// `sync.retries` times. How the run ended, and how many reconnects it took.
    async fn sessions(&mut self, shutdown: &mut watch::Receiver<bool>) -> (FeedEnd, u32) {
        let tuning = &self.puller.tuning;
        let name = self.feed.name.clone();
        let mut failures = 0u32;
        let mut reconnects = 0u32;
        let mut backoff = Duration::from_millis(tuning.retry_backoff_ms);
        loop {
            match self.session(shutdown).await {
                Ok(end) => return (end, reconnects),
                Err(SessionEnd::Fatal(why)) => return (FeedEnd::Failed(why), reconnects),
                Err(SessionEnd::Renew) => {
                    reconnects += 1;
                    tracing::info!(feed = %name, "token about to expire; reconnecting with a new one");
                }
                Err(SessionEnd::Retry(why)) => {
                    failures += 1;
                    if failures > tuning.retries {
                        let last = Box::new(why);
                        let retries = tuning.retries;
                        return (
                            FeedEnd::Failed(FeedError::GaveUp { last, retries }),
                            reconnects,
                        );
                    }
                    reconnects += 1;
                    tracing::warn!(feed = %name, "{why}; reconnecting in {} ms", backoff.as_millis());
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopped(shutdown) => return (FeedEnd::Interrupted, reconnects),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Records the end of run `run_id`: how it ended and what it stored.
    fn record_end(&mut self, run_id: i64, end: &FeedEnd) {
        let (status, error) = match end {
            FeedEnd::Drained | FeedEnd::Limit => (RunStatus::Ok, None),
            FeedEnd::Interrupted => (RunStatus::Interrupted, None),
            FeedEnd::Failed(why) => (RunStatus::Failed, Some(why.to_string())),
            FeedEnd::Locked(why) => (RunStatus::Failed, Some(why.to_string())),
        };
        let ended_at = time::now_utc();
        let (name, counts) = (self.feed.name.clone(), self.counts);
        if let Err(error) = self.committer.store().and_then(|store| {
            store.end_run(
                run_id,
                &name,
                RunEnd {
                    ended_at: &ended_at,
                    status,
                    error: error.as_deref(),
                    counts,
                },
            )
        }) {
            tracing::error!(feed = %name, "cannot record the end of the run: {error:#}");
        }
    }
}

/// Deliveries received but not yet committed, with the tag to acknowledge them by.
struct Held {
    items: Vec<Incoming>,
    bytes: usize,
    last_tag: u64,
    since: Option<Instant>,
}

/// Where deliveries come from.
enum Feed {
    /// The broker pushes them (`basic.consume`).
    Consumer(lapin::Consumer),
    /// One `basic.get` each.
    Get,
}

/// What waiting for something to happen ended with.
#[allow(clippy::large_enum_variant)] // Short-lived, and mostly a delivery.
enum Woke {
    Delivery(lapin::message::Delivery),
    /// The consumer failed or ended.
    Lost(SessionEnd),
    Committed(Committed),
    Synced(Synced),
    /// The flush deadline passed, or the drain check is due.
    Timer,
    Signal,
}

impl FeedRun<'_> {
    /// One connection: log in, fetch, and commit-then-acknowledge until the queue is empty or
    /// the run must stop.
    async fn session(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<FeedEnd, SessionEnd> {
        let puller = self.puller;
        let token = puller.sts.token(&self.cvr).await.map_err(|source| {
            let transient = source.is_transient();
            let error = FeedError::Token {
                hint: source.hint(&puller.pull.sts).to_string(),
                source: Box::new(source),
            };
            if transient {
                SessionEnd::Retry(error)
            } else {
                SessionEnd::Fatal(error)
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
            Err(source @ AmqpError::LoginRefused { .. }) => {
                // Perhaps the token went stale: try once more with a new one.
                puller.sts.invalidate(&self.cvr).await;
                if self.refused_fresh_token {
                    return Err(SessionEnd::Fatal(FeedError::RefusedFreshToken {
                        source: Box::new(source),
                    }));
                }
                self.refused_fresh_token = true;
                return Err(SessionEnd::Retry(FeedError::Broker {
                    source: Box::new(source),
                    hint: None,
                }));
            }
            Err(error) => return Err(amqp_end(error)),
        };
        self.refused_fresh_token = false;
        let result = self.pull(&session, &token, shutdown).await;
        // A commit still in flight (after an error) completes; it is not acknowledged, so the
        // broker delivers it again and it is counted as duplicates.
        let result = match self.settle(None).await {
            Err(fatal @ SessionEnd::Fatal(_)) => Err(fatal),
            _ => result,
        };
        session.close().await;
        result
    }

    /// Fetches, commits and acknowledges until the queue is empty or the run must stop.
    async fn pull(
        &mut self,
        session: &Session,
        token: &crate::pull::sts::Token,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<FeedEnd, SessionEnd> {
        let queue = self.feed.dueslag.clone();
        let mut feed = match self.puller.tuning.fetch {
            Fetch::Consume => Feed::Consumer(
                session
                    .consume(&queue, self.puller.prefetch)
                    .await
                    .map_err(|error| self.queue_end(error))?,
            ),
            Fetch::Get => Feed::Get,
        };
        let mut held = Held {
            items: Vec::with_capacity(self.puller.tuning.batch_size),
            bytes: 0,
            last_tag: 0,
            since: None,
        };
        loop {
            if let Some(end) = self.should_stop(shutdown, token) {
                self.flush(session, &mut held).await?;
                self.settle(Some(session)).await?;
                return end;
            }
            let drained = match &mut feed {
                Feed::Consumer(consumer) => {
                    self.step_consume(session, consumer, &mut held, shutdown)
                        .await?
                }
                Feed::Get => self.step_get(session, &mut held).await?,
            };
            if drained {
                self.flush(session, &mut held).await?;
                self.settle(Some(session)).await?;
                return Ok(FeedEnd::Drained);
            }
        }
    }

    /// Why the run must stop now, if it must.
    fn should_stop(
        &self,
        shutdown: &watch::Receiver<bool>,
        token: &crate::pull::sts::Token,
    ) -> Option<Result<FeedEnd, SessionEnd>> {
        let tuning = &self.puller.tuning;
        if *shutdown.borrow() {
            Some(Ok(FeedEnd::Interrupted))
        } else if (tuning.max_messages > 0 && self.received >= tuning.max_messages)
            || self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
        {
            Some(Ok(FeedEnd::Limit))
        } else if chrono::Utc::now() >= token.renew_at {
            Some(Err(SessionEnd::Renew))
        } else {
            None
        }
    }

    /// One step of consuming: take what is ready, commit when due, else wait. True when the
    /// queue turned out to be empty.
    async fn step_consume(
        &mut self,
        session: &Session,
        consumer: &mut lapin::Consumer,
        held: &mut Held,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<bool, SessionEnd> {
        // Sync a finished commit and acknowledge a finished sync at once: the broker sends no
        // more than the window.
        if self.committer.is_busy()
            && let Some(committed) = self.committer.finished().now_or_never()
        {
            self.complete(Some(session), committed).await?;
        }
        if self.committer.is_syncing()
            && let Some(synced) = self.committer.synced().now_or_never()
        {
            self.acknowledge(Some(session), synced).await?;
        }
        // Take whatever is ready without waiting, up to the eager count: committing then
        // leaves the rest of the window for the broker to fill meanwhile.
        let mut took = false;
        while !self.full(held) && held.items.len() < self.eager_max {
            match consumer.next().now_or_never() {
                Some(next) => {
                    self.hold(held, delivery(next, session)?);
                    took = true;
                }
                None => break,
            }
        }
        // More were ready at once than the learned count: the window is larger than learned.
        self.eager_at = self.eager_at.max(held.items.len().min(self.eager_max));
        if self.full(held) || held.items.len() >= self.eager_at {
            self.flush(session, held).await?;
            return Ok(false);
        }
        if took {
            return Ok(false);
        }
        match self.wait(session, consumer, held, shutdown).await {
            Woke::Delivery(delivery) => self.hold(held, delivery),
            Woke::Lost(end) => return Err(end),
            Woke::Committed(committed) => self.complete(Some(session), committed).await?,
            Woke::Synced(synced) => self.acknowledge(Some(session), synced).await?,
            Woke::Timer if !held.items.is_empty() => {
                // With no commit or sync in flight, everything unacknowledged is held: perhaps
                // the broker allows no more. Commit at this count from now on, until more
                // arrive at once (see above).
                if !self.committer.is_busy() && !self.committer.is_syncing() {
                    self.eager_at = self.eager_at.min(held.items.len()).max(1);
                }
                self.flush(session, held).await?;
            }
            Woke::Timer => match session.get(&self.feed.dueslag).await {
                Ok(Some(delivery)) => self.hold(held, delivery),
                Ok(None) => return Ok(true),
                Err(error) => return Err(self.queue_end(error)),
            },
            Woke::Signal => {}
        }
        Ok(false)
    }

    /// Waits for a delivery, the commit or sync in flight, the flush deadline or the drain
    /// check, or a signal.
    async fn wait(
        &mut self,
        session: &Session,
        consumer: &mut lapin::Consumer,
        held: &Held,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Woke {
        let tuning = &self.puller.tuning;
        let timer = match held.since {
            Some(since) => {
                Duration::from_millis(tuning.flush_interval_ms).saturating_sub(since.elapsed())
            }
            None => Duration::from_millis(tuning.drain_check_ms),
        };
        // With nothing held and a commit or sync in flight, its end comes first.
        let may_sleep =
            !(self.committer.is_busy() || self.committer.is_syncing()) || !held.items.is_empty();
        let committer = &mut self.committer;
        tokio::select! {
            next = consumer.next() => match delivery(next, session) {
                Ok(delivery) => Woke::Delivery(delivery),
                Err(end) => Woke::Lost(end),
            },
            committed = Committer::commit_finished(&mut committer.slot) => Woke::Committed(committed),
            synced = Committer::sync_finished(&mut committer.syncing) => Woke::Synced(synced),
            _ = tokio::time::sleep(timer), if may_sleep => Woke::Timer,
            _ = stopped(shutdown) => Woke::Signal,
        }
    }

    /// One step of fetching with `basic.get`. True when the queue is empty.
    async fn step_get(&mut self, session: &Session, held: &mut Held) -> Result<bool, SessionEnd> {
        let overdue = held.since.is_some_and(|since| {
            since.elapsed() >= Duration::from_millis(self.puller.tuning.flush_interval_ms)
        });
        if self.full(held) || overdue {
            self.flush(session, held).await?;
            return Ok(false);
        }
        match session.get(&self.feed.dueslag).await {
            Ok(Some(delivery)) => {
                self.hold(held, delivery);
                Ok(false)
            }
            Ok(None) => Ok(true),
            Err(error) => Err(self.queue_end(error)),
        }
    }

    /// True when the held deliveries make a full batch (by count or bytes) or reach the run's
    /// message limit.
    fn full(&self, held: &Held) -> bool {
        let max = self.puller.tuning.max_messages;
        held.items.len() >= self.puller.tuning.batch_size
            || held.bytes >= BATCH_BYTES
            || (max > 0 && self.received + held.items.len() as u64 >= max)
    }

    /// How a queue operation's failure ends the session.
    fn queue_end(&self, source: AmqpError) -> SessionEnd {
        let name = &self.feed.name;
        let hint = match source {
            AmqpError::QueueMissing { .. } => format!("check `dueslag` of feed `{name}`"),
            AmqpError::QueueRefused { .. } if self.puller.tuning.fetch == Fetch::Consume => {
                format!(
                    "check `dueslag` of feed `{name}`, and if the service does not allow consuming, set `fetch = \"get\"` in [sync]"
                )
            }
            AmqpError::QueueRefused { .. } => format!(
                "check `dueslag` of feed `{name}` and that the certificate's organisation may read it"
            ),
            source => return amqp_end(source),
        };
        SessionEnd::Fatal(FeedError::Broker {
            source: Box::new(source),
            hint: Some(hint),
        })
    }

    /// Decodes a delivery and keeps it until its batch is committed.
    fn hold(&self, held: &mut Held, delivery: lapin::message::Delivery) {
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_else(|| "-".into());
        let decoded = self.puller.decoder.decode(&delivery.data);
        held.bytes += delivery.data.len();
        held.items.push(Incoming {
            origin: format!("amqp:{} message-id={message_id}", self.feed.dueslag),
            decoded,
            raw: Raw::Bytes(delivery.data),
        });
        held.last_tag = delivery.delivery_tag;
        held.since.get_or_insert_with(Instant::now);
    }

    /// Starts committing the held deliveries on a blocking thread, after the commit before it
    /// has finished (its sync to disk may still be in flight). At most one commit is in flight.
    async fn flush(&mut self, session: &Session, held: &mut Held) -> Result<(), SessionEnd> {
        self.finish_commit(Some(session)).await?;
        if held.items.is_empty() {
            return Ok(());
        }
        let items = std::mem::replace(
            &mut held.items,
            Vec::with_capacity(self.puller.tuning.batch_size),
        );
        self.received += items.len() as u64;
        self.committer
            .start(self.feed.name.clone(), items, held.last_tag);
        held.bytes = 0;
        held.since = None;
        Ok(())
    }

    /// Waits for the commit and the sync in flight, if any, and acknowledges them (when
    /// `session` is given).
    async fn settle(&mut self, session: Option<&Session>) -> Result<(), SessionEnd> {
        self.finish_commit(session).await?;
        if self.committer.is_syncing() {
            let synced = self.committer.synced().await;
            self.acknowledge(session, synced).await?;
        }
        Ok(())
    }

    /// Waits for the commit in flight, if any, and starts its sync to disk (see `complete`).
    async fn finish_commit(&mut self, session: Option<&Session>) -> Result<(), SessionEnd> {
        if !self.committer.is_busy() {
            return Ok(());
        }
        let committed = self.committer.finished().await;
        self.complete(session, committed).await
    }

    /// Acknowledges every delivery through the last tag of a finished sync, if it succeeded
    /// (and `session` is given).
    async fn acknowledge(
        &mut self,
        session: Option<&Session>,
        synced: Synced,
    ) -> Result<(), SessionEnd> {
        synced
            .result
            .map_err(|cause| SessionEnd::Fatal(FeedError::commit(cause)))?;
        if let Some(session) = session {
            session
                .ack_through(synced.last_tag)
                .await
                .map_err(|source| {
                    SessionEnd::Retry(FeedError::Acknowledge {
                        source: Box::new(source),
                    })
                })?;
        }
        Ok(())
    }

    /// Counts and reports a finished commit; then, only if it committed (and `session` is
    /// given), starts syncing it to disk, after the sync before it has finished and been
    /// acknowledged. Its deliveries are acknowledged when its sync has finished.
    async fn complete(
        &mut self,
        session: Option<&Session>,
        committed: Committed,
    ) -> Result<(), SessionEnd> {
        let (outcomes, counts, items) = committed
            .result
            .map_err(|cause| SessionEnd::Fatal(FeedError::commit(cause)))?;
        for (item, outcome) in items.iter().zip(&outcomes) {
            if let Some((besked_id, reason)) = item.refusal(outcome) {
                tracing::warn!(
                    feed = %self.feed.name,
                    origin = %item.origin,
                    besked_id = besked_id.as_deref().unwrap_or("-"),
                    "rejected: {reason}"
                );
            }
        }
        // The batch's bytes go before the acknowledgement lets the broker send more.
        drop(items);
        // Committed: the outcome is counted whether or not the acknowledgement gets through
        // (if it does not, the broker redelivers and the copies count as duplicates).
        self.counts.add(counts);
        if let Some(session) = session {
            if self.committer.is_syncing() {
                let synced = self.committer.synced().await;
                self.acknowledge(Some(session), synced).await?;
            }
            self.committer.start_sync(committed.last_tag);
        }
        Ok(())
    }
}

/// A delivery from the consumer stream, or how its failure ends the session.
fn delivery(
    next: Option<Result<lapin::message::Delivery, lapin::Error>>,
    session: &Session,
) -> Result<lapin::message::Delivery, SessionEnd> {
    match next {
        Some(Ok(delivery)) => Ok(delivery),
        Some(Err(error)) => Err(SessionEnd::Retry(FeedError::Broker {
            source: Box::new(AmqpError::lost(error, &session.endpoint)),
            hint: None,
        })),
        None => Err(SessionEnd::Retry(FeedError::Broker {
            source: Box::new(AmqpError::ConsumerEnded {
                endpoint: session.endpoint.clone(),
            }),
            hint: None,
        })),
    }
}

/// How a broker failure ends the session: permanent ones stop the feed for this run.
fn amqp_end(source: AmqpError) -> SessionEnd {
    let permanent = source.is_permanent();
    let error = FeedError::Broker {
        hint: Some(source.hint().to_owned()),
        source: Box::new(source),
    };
    if permanent {
        SessionEnd::Fatal(error)
    } else {
        SessionEnd::Retry(error)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_is_bounded_by_bytes() {
        assert_eq!(effective_prefetch(2000, 64 * 1024), 2000);
        assert_eq!(effective_prefetch(2000, 96 * 1024), 1365);
        assert_eq!(effective_prefetch(2000, 1024 * 1024), 128);
        assert_eq!(effective_prefetch(2000, 32 * 1024 * 1024), 4);
        assert_eq!(effective_prefetch(10, 4096), 10);
        assert_eq!(effective_prefetch(2000, 1), 2000);
    }
}
