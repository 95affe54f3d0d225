//! Who holds a feed's database connection while a batch commits: the feed between commits,
//! a blocking thread while a batch commits; and the sync of committed batches to disk, on
//! another blocking thread, before their deliveries are acknowledged. The one place that knows
//! this rule.

use std::path::PathBuf;

use anyhow::Result;

use crate::config::EventRules;
use crate::replica::{Counts, Incoming, Outcome, Store, WalFlusher};
use crate::time;

/// Who holds the feed's database connection: the feed between commits, a blocking thread
/// while a batch commits. The one place that knows this rule.
///
/// A commit does not wait for the disk; a committed batch is synced to disk on another
/// blocking thread while the next batch is written, and acknowledged only once that is done.
/// At most one commit and one sync are in flight; syncs finish in the order of their commits.
pub(super) struct Committer {
    pub(super) database: PathBuf,
    /// Sizes the page cache of a reopened connection.
    pub(super) max_message_bytes: usize,
    pub(super) events: Option<EventRules>,
    pub(super) slot: Slot,
    pub(super) flusher: WalFlusher,
    /// The last committed batch while it is synced to disk: acknowledged through `last_tag`
    /// once it is.
    pub(super) syncing: Option<Syncing>,
}

pub(super) struct Syncing {
    pub(super) handle: tokio::task::JoinHandle<Result<()>>,
    pub(super) last_tag: u64,
}

/// A finished sync to disk: everything committed through `last_tag` is durable if it
/// succeeded.
pub(super) struct Synced {
    pub(super) result: Result<()>,
    pub(super) last_tag: u64,
}

pub(super) enum Slot {
    Idle(Store),
    /// A batch is being committed; its deliveries are acknowledged through `last_tag` once it
    /// has.
    Busy {
        handle: tokio::task::JoinHandle<CommitResult>,
        last_tag: u64,
    },
    /// The commit thread failed and took the connection with it.
    Lost,
}

/// What a commit thread hands back: the store, the outcome, and the committed items.
pub(super) type CommitResult = (Store, Result<(Vec<Outcome>, Counts)>, Vec<Incoming>);

/// A finished commit.
pub(super) struct Committed {
    pub(super) result: Result<(Vec<Outcome>, Counts, Vec<Incoming>)>,
    pub(super) last_tag: u64,
}

impl Committer {
    pub(super) fn is_busy(&self) -> bool {
        matches!(self.slot, Slot::Busy { .. })
    }

    pub(super) fn is_syncing(&self) -> bool {
        self.syncing.is_some()
    }

    /// Starts syncing to disk what has been committed, for deliveries through `last_tag`.
    /// Only when no sync is in flight.
    pub(super) fn start_sync(&mut self, last_tag: u64) {
        debug_assert!(self.syncing.is_none(), "one sync at a time");
        let flusher = self.flusher.clone();
        let handle = tokio::task::spawn_blocking(move || flusher.flush());
        self.syncing = Some(Syncing { handle, last_tag });
    }

    /// Resolves when the sync in flight has finished (never, if none is). Cancel-safe: if
    /// dropped before it resolves, the sync stays in flight.
    pub(super) async fn synced(&mut self) -> Synced {
        Self::sync_finished(&mut self.syncing).await
    }

    pub(super) async fn sync_finished(syncing: &mut Option<Syncing>) -> Synced {
        let Some(in_flight) = syncing else {
            return std::future::pending().await;
        };
        let joined = (&mut in_flight.handle).await;
        let last_tag = in_flight.last_tag;
        *syncing = None;
        let result = joined.unwrap_or_else(|error| {
            Err(anyhow::anyhow!(
                "the sync thread failed: {}",
                panic_message(error)
            ))
        });
        Synced { result, last_tag }
    }

    /// The connection, when no commit is in flight; reopened if a failed commit lost it.
    pub(super) fn store(&mut self) -> Result<&mut Store> {
        if matches!(self.slot, Slot::Lost) {
            let store = Store::open(&self.database, self.events)?;
            store.tune_for_pull(self.max_message_bytes)?;
            self.slot = Slot::Idle(store);
        }
        match &mut self.slot {
            Slot::Idle(store) => Ok(store),
            _ => anyhow::bail!("internal error: the database is in use by a commit"),
        }
    }

    /// Starts committing `items` on a blocking thread. Only when idle.
    pub(super) fn start(&mut self, source: String, items: Vec<Incoming>, last_tag: u64) {
        let Slot::Idle(mut store) = std::mem::replace(&mut self.slot, Slot::Lost) else {
            unreachable!("start is only called when no commit is in flight");
        };
        let handle = tokio::task::spawn_blocking(move || {
            let outcome = store.write_batch(&source, &time::now_utc(), &items);
            (store, outcome, items)
        });
        self.slot = Slot::Busy { handle, last_tag };
    }

    /// Resolves when the commit in flight has finished (never, if none is). Cancel-safe: if
    /// dropped before it resolves, the commit stays in flight.
    pub(super) async fn finished(&mut self) -> Committed {
        Self::commit_finished(&mut self.slot).await
    }

    /// [`Committer::finished`] on the slot alone, so that it can be awaited beside
    /// [`Committer::sync_finished`].
    pub(super) async fn commit_finished(slot: &mut Slot) -> Committed {
        let Slot::Busy { handle, .. } = slot else {
            return std::future::pending().await;
        };
        let joined = handle.await;
        let Slot::Busy { last_tag, .. } = std::mem::replace(slot, Slot::Lost) else {
            unreachable!("the slot was busy");
        };
        let result = match joined {
            Ok((store, outcome, items)) => {
                *slot = Slot::Idle(store);
                outcome.map(|(outcomes, counts)| (outcomes, counts, items))
            }
            Err(error) => Err(anyhow::anyhow!(
                "the commit thread failed: {}",
                panic_message(error)
            )),
        };
        Committed { result, last_tag }
    }
}

/// The message of a panicked task, or what else ended it.
pub(super) fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panicked".into()),
        Err(error) => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_commit_reports_its_cause_and_the_store_comes_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let database = dir.path().join("replica.db");
        let store = Store::open(&database, None).expect("open");
        let mut committer = Committer {
            database: database.clone(),
            max_message_bytes: 64 * 1024,
            events: None,
            flusher: store.wal_flusher(),
            slot: Slot::Idle(store),
            syncing: None,
        };
        assert!(committer.store().is_ok());
        // A commit thread that dies: its store is gone with it.
        committer.slot = Slot::Busy {
            handle: tokio::task::spawn_blocking(|| -> CommitResult {
                panic!("disk on fire");
            }),
            last_tag: 7,
        };
        let committed = committer.finished().await;
        assert_eq!(committed.last_tag, 7);
        let error = committed.result.expect_err("failed");
        assert!(
            error
                .to_string()
                .contains("the commit thread failed: disk on fire"),
            "{error}"
        );
        // The run can still record its end: the connection is opened again.
        let store = committer.store().expect("reopened");
        store
            .begin_run("feed", "sync", "2026-01-01T00:00:00.000Z")
            .expect("write");
        assert!(!committer.is_busy());
    }
}
