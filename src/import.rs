//! `import PATH...`: envelopes from files into the replica.
//!
//! Each file is one envelope. Directories are walked recursively in sorted order; hidden entries
//! (names starting with `.`) are skipped.
//!
//! Three stages run at once: a walker lists files in order and deals them out in chunks,
//! round-robin, to one reader per core, which read and decode them; the calling thread takes the
//! readers' results round-robin too (so the sorted order is kept) and writes them in batches.
//! Every channel is bounded, so memory stays flat however many files there are.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::envelope;
use crate::mask::mask_cpr_in;
use crate::message::{self, Decoder};
use crate::store::{Counts, Durability, Incoming, Outcome, Raw, Rejection, RunStatus, Store};
use crate::time;

/// How much of an oversized file is searched for its besked id.
const SNIFF_BYTES: usize = 64 * 1024;

/// Messages per transaction.
pub const BATCH_SIZE: usize = 2000;

/// Files per chunk handed to a reader.
const CHUNK: usize = 50;

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
    store.set_durability(Durability::Normal)?;
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
    let readers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
    std::thread::scope(|scope| {
        let mut inputs = Vec::with_capacity(readers);
        let mut outputs: Vec<Receiver<Vec<Incoming>>> = Vec::with_capacity(readers);
        let mut handles = Vec::with_capacity(readers);
        for _ in 0..readers {
            let (to_reader, chunks) = sync_channel::<Vec<PathBuf>>(4);
            let (results, from_reader) = sync_channel::<Vec<Incoming>>(8);
            inputs.push(to_reader);
            outputs.push(from_reader);
            handles.push(scope.spawn(move || read_chunks(decoder, chunks, results)));
        }
        let walker = scope.spawn(move || {
            let mut walk = Walk {
                readers: inputs,
                next: 0,
                chunk: Vec::with_capacity(CHUNK),
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
        let mut batch: Vec<Incoming> = Vec::with_capacity(BATCH_SIZE + CHUNK);
        let mut write = |batch: &mut Vec<Incoming>, summary: &mut ImportSummary| -> Result<()> {
            if batch.is_empty() {
                return Ok(());
            }
            let (outcomes, counts) = store.write_batch(source, &time::now_utc(), batch)?;
            report_rejections(batch, &outcomes);
            summary.files += batch.len() as u64;
            summary.counts.add(counts);
            batch.clear();
            Ok(())
        };
        // Chunks come back in the order they were dealt: reader 0, 1, ..., 0, 1, ...
        for from_reader in outputs.iter().cycle() {
            let Ok(chunk) = from_reader.recv() else {
                break;
            };
            batch.extend(chunk);
            if batch.len() >= BATCH_SIZE
                && let Err(error) = write(&mut batch, &mut summary)
            {
                failure = Some(error);
                break;
            }
        }
        if failure.is_none()
            && let Err(error) = write(&mut batch, &mut summary)
        {
            failure = Some(error);
        }
        // Dropping the receivers stops the readers and the walker at their next send.
        drop(outputs);
        summary.unreadable = walker.join().expect("the walker does not panic");
        for handle in handles {
            summary.unreadable += handle.join().expect("a reader does not panic");
        }
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

/// A reader: reads and decodes each chunk of files, answering every chunk (even with nothing)
/// so the writer's round-robin stays in step. Returns how many files it could not read.
fn read_chunks(
    decoder: &Decoder,
    chunks: Receiver<Vec<PathBuf>>,
    results: SyncSender<Vec<Incoming>>,
) -> u64 {
    let mut unreadable = 0;
    for chunk in chunks {
        let mut decoded = Vec::with_capacity(chunk.len());
        for path in chunk {
            match read_file(decoder, &path) {
                Ok(item) => decoded.push(item),
                Err(error) => {
                    tracing::error!(file = %path.display(), "cannot read: {error}; fix it and import it again");
                    unreadable += 1;
                }
            }
        }
        if results.send(decoded).is_err() {
            break;
        }
    }
    unreadable
}

/// Reads and decodes one file. A file over the size limit is not read whole: only its start is
/// searched for the besked id, and the store streams it into its `rejected` row.
fn read_file(decoder: &Decoder, path: &Path) -> std::io::Result<Incoming> {
    let limit = decoder.max_message_bytes as u64;
    let origin = path.display().to_string();
    let mut file = fs::File::open(path)?;
    let mut bytes = Vec::with_capacity(8192);
    (&mut file).take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        let len = file.metadata()?.len();
        let head = &bytes[..bytes.len().min(SNIFF_BYTES)];
        return Ok(Incoming {
            raw: Raw::File {
                path: path.to_path_buf(),
                len,
            },
            origin,
            decoded: Err(Rejection {
                reason: message::too_large(len, decoder.max_message_bytes),
                besked_id: envelope::sniff_besked_id(head),
            }),
        });
    }
    let decoded = decoder.decode(&bytes);
    Ok(Incoming {
        raw: Raw::Bytes(bytes),
        origin,
        decoded,
    })
}

/// The walker: lists files in sorted order and deals them out in chunks.
struct Walk {
    readers: Vec<SyncSender<Vec<PathBuf>>>,
    next: usize,
    chunk: Vec<PathBuf>,
    unreadable: u64,
}

impl Walk {
    /// Visits a file or directory; false when the writer has gone away.
    fn visit(&mut self, path: &Path) -> bool {
        let metadata = match fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(error) => return self.unreadable(path, &error),
        };
        if metadata.is_dir() {
            self.visit_dir(path)
        } else {
            self.push(path.to_path_buf())
        }
    }

    fn visit_dir(&mut self, dir: &Path) -> bool {
        let mut entries = match fs::read_dir(dir).and_then(|entries| {
            entries
                .map(|entry| entry.and_then(|e| Ok((e.path(), e.file_type()?))))
                .collect::<std::io::Result<Vec<_>>>()
        }) {
            Ok(entries) => entries,
            Err(error) => return self.unreadable(dir, &error),
        };
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (path, file_type) in entries {
            let hidden = path
                .file_name()
                .is_some_and(|name| name.as_encoded_bytes().starts_with(b"."));
            if hidden {
                continue;
            }
            let keep_going = if file_type.is_dir() {
                self.visit_dir(&path)
            } else if file_type.is_symlink() {
                // A link to a file is followed; a link to a directory is not (no loops).
                match fs::metadata(&path) {
                    Ok(target) if target.is_dir() => true,
                    Ok(_) => self.push(path),
                    Err(error) => self.unreadable(&path, &error),
                }
            } else {
                self.push(path)
            };
            if !keep_going {
                return false;
            }
        }
        true
    }

    fn push(&mut self, path: PathBuf) -> bool {
        self.chunk.push(path);
        if self.chunk.len() >= CHUNK {
            return self.flush();
        }
        true
    }

    /// Sends the current chunk to the next reader; false when the readers have gone away.
    fn flush(&mut self) -> bool {
        if self.chunk.is_empty() {
            return true;
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        let reader = &self.readers[self.next % self.readers.len()];
        self.next += 1;
        reader.send(chunk).is_ok()
    }

    fn unreadable(&mut self, path: &Path, error: &std::io::Error) -> bool {
        tracing::error!(file = %path.display(), "cannot read: {error}; fix it and import it again");
        self.unreadable += 1;
        true
    }
}
