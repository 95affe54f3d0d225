//! `import PATH...`: envelopes from files into the replica.
//!
//! Each file is one envelope. Directories are walked recursively in sorted order; hidden entries
//! (names starting with `.`) are skipped. One thread reads and decodes while the calling thread
//! writes batches, so parsing overlaps with storing; the channel between them is bounded, so
//! memory stays flat however many files there are.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::envelope;
use crate::mask::mask_cpr_in;
use crate::message::{self, Decoder};
use crate::store::{Counts, Incoming, Outcome, Raw, Rejection, RunStatus, Store};
use crate::time;

/// How much of an oversized file is searched for its besked id.
const SNIFF_BYTES: usize = 64 * 1024;

/// Messages per transaction.
pub const BATCH_SIZE: usize = 500;

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub files: u64,
    pub counts: Counts,
    /// Files that could not be read (permissions, vanished): logged, not stored.
    pub unreadable: u64,
    pub elapsed: Duration,
}

impl ImportSummary {
    /// The one-line summary printed at the end.
    pub fn line(&self) -> String {
        let seconds = self.elapsed.as_secs_f64();
        let rate = if seconds > 0.0 {
            self.files as f64 / seconds
        } else {
            0.0
        };
        let mut line = format!(
            "imported {} files: {} new, {} duplicates, {} rejected",
            self.files, self.counts.new, self.counts.duplicates, self.counts.rejected
        );
        if self.unreadable > 0 {
            line.push_str(&format!(", {} unreadable", self.unreadable));
        }
        line.push_str(&format!(" in {seconds:.2} s ({rate:.0} files/s)"));
        line
    }
}

/// Imports every file under `paths` into `store`, recording them under `source`.
pub fn import(
    store: &mut Store,
    decoder: &Decoder,
    paths: &[PathBuf],
    source: &str,
) -> Result<ImportSummary> {
    for path in paths {
        fs::metadata(path).with_context(|| format!("cannot import `{}`", path.display()))?;
    }
    let started = Instant::now();
    store.begin_run(source, &time::now_utc())?;
    let result = run(store, decoder, paths, source);
    let (status, error) = match &result {
        Ok(_) => (RunStatus::Ok, None),
        Err(error) => (RunStatus::Failed, Some(format!("{error:#}"))),
    };
    store.end_run(source, &time::now_utc(), status, error.as_deref())?;
    let mut summary = result?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn run(
    store: &mut Store,
    decoder: &Decoder,
    paths: &[PathBuf],
    source: &str,
) -> Result<ImportSummary> {
    let (sender, receiver) = sync_channel::<Vec<Incoming>>(4);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut walk = Walk {
                decoder,
                sender,
                batch: Vec::with_capacity(BATCH_SIZE),
                unreadable: 0,
            };
            for path in paths {
                if !walk.visit(path) {
                    break;
                }
            }
            walk.flush();
            walk.unreadable
        });
        let mut summary = ImportSummary::default();
        let mut failure = None;
        for batch in receiver {
            let received_at = time::now_utc();
            match store.write_batch(source, &received_at, &batch) {
                Ok((outcomes, counts)) => {
                    report_rejections(&batch, &outcomes);
                    summary.files += batch.len() as u64;
                    summary.counts.add(counts);
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        // Dropping the receiver (end of the loop) stops the reader at its next send.
        summary.unreadable = reader.join().expect("the reader thread does not panic");
        match failure {
            Some(error) => Err(error.context(format!(
                "failed to write to database `{}`",
                store.path().display()
            ))),
            None => Ok(summary),
        }
    })
}

fn report_rejections(batch: &[Incoming], outcomes: &[Outcome]) {
    for (item, outcome) in batch.iter().zip(outcomes) {
        if let (Outcome::Rejected, Err(rejection)) = (outcome, &item.decoded) {
            tracing::warn!(
                file = %item.origin,
                besked_id = rejection.besked_id.as_deref().unwrap_or("-"),
                "rejected: {}",
                mask_cpr_in(&rejection.reason)
            );
        }
    }
}

/// The reading side: walks paths, reads and decodes files, sends batches.
struct Walk<'a> {
    decoder: &'a Decoder,
    sender: SyncSender<Vec<Incoming>>,
    batch: Vec<Incoming>,
    unreadable: u64,
}

impl Walk<'_> {
    /// Visits a file or directory; false when the writer has gone away.
    fn visit(&mut self, path: &Path) -> bool {
        let metadata = match fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(error) => return self.unreadable(path, &error),
        };
        if metadata.is_dir() {
            let mut entries = match fs::read_dir(path).and_then(|dir| {
                dir.map(|entry| entry.map(|e| e.path()))
                    .collect::<std::io::Result<Vec<PathBuf>>>()
            }) {
                Ok(entries) => entries,
                Err(error) => return self.unreadable(path, &error),
            };
            entries.sort();
            for entry in entries {
                let hidden = entry
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with('.'));
                // Directories reached through a symlink are not followed (no loops).
                let is_linked_dir = fs::symlink_metadata(&entry)
                    .is_ok_and(|m| m.file_type().is_symlink())
                    && entry.is_dir();
                if hidden || is_linked_dir {
                    continue;
                }
                if !self.visit(&entry) {
                    return false;
                }
            }
            true
        } else {
            let item = self.read(path, metadata.len());
            match item {
                Some(item) => self.push(item),
                None => true,
            }
        }
    }

    fn read(&mut self, path: &Path, len: u64) -> Option<Incoming> {
        let origin = path.display().to_string();
        if len > self.decoder.max_message_bytes as u64 {
            // Look for the besked id near the start only: the file is never read whole.
            let mut head = Vec::with_capacity(SNIFF_BYTES);
            let besked_id = fs::File::open(path)
                .and_then(|file| file.take(SNIFF_BYTES as u64).read_to_end(&mut head))
                .ok()
                .and_then(|_| envelope::sniff_besked_id(&head));
            return Some(Incoming {
                raw: Raw::File {
                    path: path.to_path_buf(),
                    len,
                },
                origin,
                decoded: Err(Rejection {
                    reason: message::too_large(len, self.decoder.max_message_bytes),
                    besked_id,
                }),
            });
        }
        match fs::read(path) {
            Ok(bytes) => {
                let decoded = self.decoder.decode(&bytes);
                Some(Incoming {
                    raw: Raw::Bytes(bytes),
                    origin,
                    decoded,
                })
            }
            Err(error) => {
                self.unreadable(path, &error);
                None
            }
        }
    }

    fn push(&mut self, item: Incoming) -> bool {
        self.batch.push(item);
        if self.batch.len() >= BATCH_SIZE {
            return self.flush();
        }
        true
    }

    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_SIZE));
        self.sender.send(batch).is_ok()
    }

    fn unreadable(&mut self, path: &Path, error: &std::io::Error) -> bool {
        tracing::error!(file = %path.display(), "cannot read: {error}; fix its permissions and import it again");
        self.unreadable += 1;
        true
    }
}
