//! `import PATH...`: envelopes from files into the replica.
//!
//! Each regular file is one envelope; anything else (a FIFO, a device, a socket) is reported
//! and skipped without being opened for reading. Directories are walked recursively in sorted
//! order; hidden entries (names starting with `.`) are skipped.
//!
//! Three stages run at once: a walker lists files in order and deals them out in chunks,
//! round-robin, to one reader per core, which read and decode them; the calling thread takes the
//! readers' results round-robin too (so the sorted order is kept) and writes them in batches.
//! Memory is bounded by bytes, not only by counts: readers read only small files (the writer
//! reads a larger one itself, one at a time, and streams one over the size limit into its row),
//! every channel is short, a batch is written once it holds [`BATCH_BYTES`], and the walker
//! holds at most [`LISTING_WINDOW`] names per directory it is in, and fewer bytes of names the
//! deeper it is ([`LISTING_BYTES`]; a larger directory is read in several sorted passes).

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::decode::envelope;
use crate::decode::message::{self, Decoder, Rejection};
use crate::progress::Counter;
use crate::pull::walk::{CHUNK, Found, OwnFiles, Walk, report_own, report_unreadable};
use crate::replica::{Counts, Incoming, Outcome, Raw, RunEnd, RunStatus, Store};
use crate::time;

/// How much of an oversized file is searched for its besked id.
const SNIFF_BYTES: usize = 64 * 1024;

/// Most messages per transaction.
pub const BATCH_SIZE: usize = 2000;

/// A batch is written once the messages it holds in memory reach this many bytes.
pub const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Readers read files up to this size (real envelopes are 3-7 KB); the writer reads larger
/// ones itself, one at a time.
const READER_MAX: u64 = 16 * 1024;

/// Most reader threads.
const MAX_READERS: usize = 4;

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub files: u64,
    pub counts: Counts,
    /// Files that could not be read (permissions, vanished): logged, not stored.
    pub unreadable: u64,
    /// Paths that are not regular files (FIFOs, devices, sockets): logged, never read.
    pub skipped: u64,
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
            "imported {} {}: {} new, {} duplicates, {} rejected",
            self.files,
            if self.files == 1 { "file" } else { "files" },
            self.counts.new,
            self.counts.duplicates,
            self.counts.rejected
        );
        if self.unreadable > 0 {
            line.push_str(&format!(", {} unreadable", self.unreadable));
        }
        if self.skipped > 0 {
            line.push_str(&format!(", {} skipped (not regular files)", self.skipped));
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
    progress: &Counter,
) -> Result<ImportSummary> {
    let started = Instant::now();
    store.tune_for_import(decoder.max_message_bytes)?;
    let run_id = store.begin_run(source, "import", &time::now_utc())?;
    let result = run(store, decoder, paths, source, progress);
    let (status, error, counts) = match &result {
        // Paths it could not read or had to skip: the run did not do all it was asked.
        Ok(summary) if summary.unreadable + summary.skipped > 0 => (
            RunStatus::Failed,
            Some(format!(
                "{} unreadable and {} skipped paths (see the log)",
                summary.unreadable, summary.skipped
            )),
            summary.counts,
        ),
        Ok(summary) => (RunStatus::Ok, None, summary.counts),
        Err(error) => (
            RunStatus::Failed,
            Some(format!("{error:#}")),
            Counts::default(),
        ),
    };
    let ended_at = time::now_utc();
    store.end_run(
        run_id,
        source,
        RunEnd {
            ended_at: &ended_at,
            status,
            error: error.as_deref(),
            counts,
        },
    )?;
    let mut summary = result?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// What a reader hands the writer for one path.
#[allow(clippy::large_enum_variant)] // Nearly every item is `Ready`: boxing would only add work.
enum Item {
    /// Read and decoded.
    Ready(Incoming),
    /// Too large for a reader: the writer opens and reads it.
    Large(Found),
    /// Not a regular file, or unreadable: already reported.
    Skipped,
    Unreadable,
    /// One of the replica's own files under another name (a link): left out, reported.
    Own,
}

fn run(
    store: &mut Store,
    decoder: &Decoder,
    paths: &[PathBuf],
    source: &str,
    progress: &Counter,
) -> Result<ImportSummary> {
    let own_ids = OwnFiles::identities(store.path());
    if progress.is_shown() {
        // How many there are, counted on a thread of its own while the import runs.
        let (paths, progress) = (paths.to_vec(), progress.clone());
        std::thread::spawn(move || progress.set_total(count_files(&paths)));
    }
    let readers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, MAX_READERS));
    std::thread::scope(|scope| {
        let mut inputs = Vec::with_capacity(readers);
        let mut outputs: Vec<Receiver<Vec<Item>>> = Vec::with_capacity(readers);
        for _ in 0..readers {
            let (to_reader, chunks) = sync_channel::<Vec<Found>>(2);
            let (results, from_reader) = sync_channel::<Vec<Item>>(2);
            inputs.push(to_reader);
            outputs.push(from_reader);
            let own_ids = &own_ids;
            scope.spawn(move || read_chunks(decoder, own_ids, chunks, results));
        }
        let own = OwnFiles::of(store.path());
        let walker = scope.spawn(move || {
            let mut walk = Walk::new(own, inputs);
            for path in paths {
                if !walk.visit(path) {
                    break;
                }
            }
            walk.finish()
        });

        let mut writer = Writer {
            store,
            progress,
            decoder,
            source,
            batch: Vec::with_capacity(BATCH_SIZE + CHUNK),
            batch_bytes: 0,
            batch_files: 0,
            summary: ImportSummary::default(),
        };
        let mut failure = None;
        // Chunks come back in the order they were dealt: reader 0, 1, ..., 0, 1, ...
        'chunks: for from_reader in outputs.iter().cycle() {
            let Ok(chunk) = from_reader.recv() else {
                break;
            };
            for item in chunk {
                if let Err(error) = writer.take(item) {
                    failure = Some(error);
                    break 'chunks;
                }
            }
        }
        if failure.is_none()
            && let Err(error) = writer.write()
        {
            failure = Some(error);
        }
        // Dropping the receivers stops the readers and the walker at their next send.
        drop(outputs);
        let mut summary = writer.summary;
        let (unreadable, skipped) = walker.join().expect("the walker does not panic");
        summary.unreadable += unreadable;
        summary.skipped += skipped;
        match failure {
            Some(error) => Err(error),
            None => Ok(summary),
        }
    })
}

/// The writing end: keeps the batch, reads large files itself, writes in batches.
struct Writer<'a> {
    store: &'a mut Store,
    progress: &'a Counter,
    decoder: &'a Decoder,
    source: &'a str,
    batch: Vec<Incoming>,
    /// Bytes the batch holds in memory.
    batch_bytes: usize,
    /// Open files the batch holds (oversized files waiting to be streamed).
    batch_files: usize,
    summary: ImportSummary,
}

impl Writer<'_> {
    /// Most oversized files held open in one batch.
    const MAX_OPEN_FILES: usize = 16;

    fn take(&mut self, item: Item) -> Result<()> {
        let incoming = match item {
            Item::Ready(incoming) => incoming,
            Item::Large(found) => match read_large(self.decoder, &found) {
                Ok(Some(incoming)) => incoming,
                Ok(None) => {
                    self.summary.skipped += 1;
                    return Ok(());
                }
                Err(error) => {
                    report_unreadable(&found.path, &error);
                    self.summary.unreadable += 1;
                    return Ok(());
                }
            },
            Item::Skipped => {
                self.summary.skipped += 1;
                return Ok(());
            }
            Item::Unreadable => {
                self.summary.unreadable += 1;
                return Ok(());
            }
            Item::Own => return Ok(()),
        };
        self.batch_bytes += incoming.raw.held_bytes();
        if matches!(incoming.raw, Raw::File { .. }) {
            self.batch_files += 1;
        }
        self.batch.push(incoming);
        if self.batch.len() >= BATCH_SIZE
            || self.batch_bytes >= BATCH_BYTES
            || self.batch_files >= Self::MAX_OPEN_FILES
        {
            self.write()?;
        }
        Ok(())
    }

    fn write(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let (outcomes, counts) =
            self.store
                .write_batch(self.source, &time::now_utc(), &self.batch)?;
        report_rejections(&self.batch, &outcomes);
        self.summary.files += self.batch.len() as u64;
        self.progress.add(self.batch.len() as u64);
        self.summary.counts.add(counts);
        self.batch.clear();
        self.batch_bytes = 0;
        self.batch_files = 0;
        Ok(())
    }
}

fn report_rejections(batch: &[Incoming], outcomes: &[Outcome]) {
    for (item, outcome) in batch.iter().zip(outcomes) {
        if let Some((besked_id, reason)) = item.refusal(outcome) {
            tracing::warn!(
                file = %item.origin,
                besked_id = besked_id.as_deref().unwrap_or("-"),
                "rejected: {reason}"
            );
        }
    }
}

/// A reader: reads and decodes each chunk of files, answering every chunk (even with nothing)
/// so the writer's round-robin stays in step.
fn read_chunks(
    decoder: &Decoder,
    own_ids: &HashSet<(u64, u64)>,
    chunks: Receiver<Vec<Found>>,
    results: SyncSender<Vec<Item>>,
) {
    for chunk in chunks {
        let decoded = chunk
            .into_iter()
            .map(|found| match read_small(decoder, own_ids, found) {
                Ok(Some(item)) => item,
                Ok(None) => Item::Skipped,
                Err((path, error)) => {
                    report_unreadable(&path, &error);
                    Item::Unreadable
                }
            })
            .collect();
        if results.send(decoded).is_err() {
            break;
        }
    }
}

/// A reader's part: reads and decodes a small file; hands a larger one to the writer. An error
/// comes with the path it is about.
fn read_small(
    decoder: &Decoder,
    own_ids: &HashSet<(u64, u64)>,
    found: Found,
) -> Result<Option<Item>, (PathBuf, std::io::Error)> {
    let path = &found.path;
    let failed = |error| (path.clone(), error);
    let Some((file, metadata)) = found.open().map_err(failed)? else {
        return Ok(None);
    };
    if own_ids.contains(&(metadata.dev(), metadata.ino())) {
        report_own(path);
        return Ok(Some(Item::Own));
    }
    let len = metadata.len();
    let mut magic = [0u8; 16];
    let start = file.read_at(&mut magic, 0).map_err(failed)?;
    if is_database_file(&magic[..start]) || is_database_companion(&found) {
        tracing::warn!(file = %path.display(), "left out: an SQLite database or journal (a backup of a replica, say), never an envelope");
        return Ok(Some(Item::Own));
    }
    if len > READER_MAX {
        return Ok(Some(Item::Large(found)));
    }
    let mut bytes = Vec::with_capacity(len as usize + 1);
    (&file)
        .take(READER_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() as u64 > READER_MAX {
        // It grew since it was measured.
        return Ok(Some(Item::Large(found)));
    }
    let decoded = decoder.decode(&bytes);
    Ok(Some(Item::Ready(Incoming {
        raw: Raw::Bytes(bytes),
        origin: path.display().to_string(),
        decoded,
    })))
}

/// Whether a file starting with `head` is an SQLite database, WAL or rollback journal: such a
/// file beside the replica (a backup, another program's database) is never an envelope, and
/// may hold a copy of all its personal data.
fn is_database_file(head: &[u8]) -> bool {
    head.starts_with(b"SQLite format 3\0")
        || head.starts_with(&[0x37, 0x7f, 0x06, 0x82])
        || head.starts_with(&[0x37, 0x7f, 0x06, 0x83])
        || head.starts_with(&[0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7])
}

/// Whether the file found is the `-journal`, `-wal` or `-shm` file of an SQLite database
/// beside it: their headers may be zeroed (a journal in `PERSIST` mode), so only the name and
/// the database tell.
fn is_database_companion(found: &Found) -> bool {
    let Some(name) = found.path.file_name().and_then(|name| name.to_str()) else {
        return false;
    };
    let Some(database) = ["-journal", "-wal", "-shm"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
    else {
        return false;
    };
    let mut magic = [0u8; 16];
    // Opened as an input is (never blocking on a FIFO), and only a regular file counts.
    found
        .open_beside(std::ffi::OsStr::new(database))
        .and_then(|file| file.read_at(&mut magic, 0).ok())
        .is_some_and(|read| is_database_file(&magic[..read]))
}

/// The writer's part: reads and decodes a file up to the size limit; a file over it is not
/// read whole: only its start is searched for the besked id, and the store streams it into its
/// `rejected` row.
fn read_large(decoder: &Decoder, found: &Found) -> std::io::Result<Option<Incoming>> {
    let path = &found.path;
    let Some((file, metadata)) = found.open()? else {
        return Ok(None);
    };
    let len = metadata.len();
    let limit = decoder.max_message_bytes as u64;
    let origin = path.display().to_string();
    if len <= limit {
        let mut bytes = Vec::with_capacity(len as usize + 1);
        (&file).take(limit + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 <= limit {
            let decoded = decoder.decode(&bytes);
            return Ok(Some(Incoming {
                raw: Raw::Bytes(bytes),
                origin,
                decoded,
            }));
        }
    }
    let len = file.metadata()?.len().max(limit + 1);
    let mut head = vec![0u8; SNIFF_BYTES];
    let mut filled = 0;
    while filled < head.len() {
        match file.read_at(&mut head[filled..], filled as u64)? {
            0 => break,
            read => filled += read,
        }
    }
    head.truncate(filled);
    Ok(Some(Incoming {
        decoded: Err(Rejection::new(
            &message::too_large(len, decoder.max_message_bytes),
            envelope::sniff_besked_id(&head),
        )),
        raw: Raw::File {
            file,
            path: path.to_path_buf(),
            len,
        },
        origin,
    }))
}

/// How many files (names not starting with a dot) are under `paths`, for progress: directories
/// walked by their entries' types alone, without following links.
fn count_files(paths: &[PathBuf]) -> u64 {
    let mut count = 0;
    let mut dirs: Vec<PathBuf> = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(metadata) if metadata.is_dir() => dirs.push(path.clone()),
            Ok(_) => count += 1,
            Err(_) => {}
        }
    }
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_name().as_encoded_bytes().starts_with(b".") {
                continue;
            }
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => dirs.push(entry.path()),
                Ok(_) => count += 1,
                Err(_) => {}
            }
        }
    }
    count
}
