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
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::decode::envelope;
use crate::decode::message::{self, Decoder, Rejection};
use crate::replica::{Counts, Incoming, Outcome, Raw, RunEnd, RunStatus, Store};
use crate::time;

/// How much of an oversized file is searched for its besked id.
const SNIFF_BYTES: usize = 64 * 1024;

/// Most messages per transaction.
pub const BATCH_SIZE: usize = 2000;

/// A batch is written once the messages it holds in memory reach this many bytes.
pub const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Files per chunk handed to a reader.
const CHUNK: usize = 32;

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
            "imported {} files: {} new, {} duplicates, {} rejected",
            self.files, self.counts.new, self.counts.duplicates, self.counts.rejected
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
) -> Result<ImportSummary> {
    let started = Instant::now();
    store.tune_for_import(decoder.max_message_bytes)?;
    let run_id = store.begin_run(source, "import", &time::now_utc())?;
    let result = run(store, decoder, paths, source);
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
    Large(PathBuf),
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
) -> Result<ImportSummary> {
    let own_ids = OwnFiles::identities(store.path());
    let readers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, MAX_READERS));
    std::thread::scope(|scope| {
        let mut inputs = Vec::with_capacity(readers);
        let mut outputs: Vec<Receiver<Vec<Item>>> = Vec::with_capacity(readers);
        for _ in 0..readers {
            let (to_reader, chunks) = sync_channel::<Vec<PathBuf>>(2);
            let (results, from_reader) = sync_channel::<Vec<Item>>(2);
            inputs.push(to_reader);
            outputs.push(from_reader);
            let own_ids = &own_ids;
            scope.spawn(move || read_chunks(decoder, own_ids, chunks, results));
        }
        let own = OwnFiles::of(store.path());
        let walker = scope.spawn(move || {
            let mut walk = Walk {
                own,
                readers: inputs,
                next: 0,
                chunk: Vec::with_capacity(CHUNK),
                unreadable: 0,
                skipped: 0,
                depth: 0,
            };
            for path in paths {
                if !walk.visit(path) {
                    break;
                }
            }
            walk.flush();
            (walk.unreadable, walk.skipped)
        });

        let mut writer = Writer {
            store,
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
            Item::Large(path) => match read_large(self.decoder, &path) {
                Ok(Some(incoming)) => incoming,
                Ok(None) => {
                    self.summary.skipped += 1;
                    return Ok(());
                }
                Err(error) => {
                    report_unreadable(&path, &error);
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

fn report_unreadable(path: &Path, error: &std::io::Error) {
    tracing::error!(file = %path.display(), "cannot read: {error}; fix it and import it again");
}

/// A reader: reads and decodes each chunk of files, answering every chunk (even with nothing)
/// so the writer's round-robin stays in step.
fn read_chunks(
    decoder: &Decoder,
    own_ids: &HashSet<(u64, u64)>,
    chunks: Receiver<Vec<PathBuf>>,
    results: SyncSender<Vec<Item>>,
) {
    for chunk in chunks {
        let decoded = chunk
            .into_iter()
            .map(|path| match read_small(decoder, own_ids, &path) {
                Ok(Some(item)) => item,
                Ok(None) => Item::Skipped,
                Err(error) => {
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

/// Opens a path for reading without blocking, and only if it is a regular file (a FIFO would
/// block, a device could be endless), with what the open file says of itself. `None` for
/// anything else, which is reported here.
fn open_regular(path: &Path) -> std::io::Result<Option<(fs::File, fs::Metadata)>> {
    // The walker only hands out regular files (opening some devices has effects); what was
    // opened is looked at again, in case the path was replaced in between.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let metadata = file.metadata()?;
    if !is_regular(path, &metadata.file_type()) {
        return Ok(None);
    }
    Ok(Some((file, metadata)))
}

/// True for a regular file; anything else is reported as skipped.
fn is_regular(path: &Path, file_type: &fs::FileType) -> bool {
    if !file_type.is_file() {
        report_skipped(path, file_type);
        return false;
    }
    true
}

/// Says in the log that `path` is skipped, and what it is.
fn report_skipped(path: &Path, file_type: &fs::FileType) {
    let what = crate::files::kind(file_type);
    tracing::warn!(file = %path.display(), "skipped: {what}, not a regular file; only regular files are imported");
}

/// A reader's part: reads and decodes a small file; hands a larger one to the writer.
fn read_small(
    decoder: &Decoder,
    own_ids: &HashSet<(u64, u64)>,
    path: &Path,
) -> std::io::Result<Option<Item>> {
    let Some((file, metadata)) = open_regular(path)? else {
        return Ok(None);
    };
    if own_ids.contains(&(metadata.dev(), metadata.ino())) {
        report_own(path);
        return Ok(Some(Item::Own));
    }
    let len = metadata.len();
    let mut magic = [0u8; 16];
    let start = file.read_at(&mut magic, 0)?;
    if is_database_file(&magic[..start]) || is_database_companion(path) {
        tracing::warn!(file = %path.display(), "left out: an SQLite database or journal (a backup of a replica, say), never an envelope");
        return Ok(Some(Item::Own));
    }
    if len > READER_MAX {
        return Ok(Some(Item::Large(path.to_path_buf())));
    }
    let mut bytes = Vec::with_capacity(len as usize + 1);
    (&file).take(READER_MAX + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > READER_MAX {
        // It grew since it was measured.
        return Ok(Some(Item::Large(path.to_path_buf())));
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

/// Whether `path` is the `-journal`, `-wal` or `-shm` file of an SQLite database beside it:
/// their headers may be zeroed (a journal in `PERSIST` mode), so only the name and the
/// database tell.
fn is_database_companion(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
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
    open_regular(&path.with_file_name(database))
        .ok()
        .flatten()
        .and_then(|(file, _)| file.read_at(&mut magic, 0).ok())
        .is_some_and(|read| is_database_file(&magic[..read]))
}

/// The writer's part: reads and decodes a file up to the size limit; a file over it is not
/// read whole: only its start is searched for the besked id, and the store streams it into its
/// `rejected` row.
fn read_large(decoder: &Decoder, path: &Path) -> std::io::Result<Option<Incoming>> {
    let Some((file, metadata)) = open_regular(path)? else {
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

/// The replica's own files (the database, its WAL, shared memory and journal, its pre-upgrade
/// backups): never imported, even when the directory being imported holds them.
struct OwnFiles {
    /// The database's directory, as device and inode.
    dir: Option<(u64, u64)>,
    name: Vec<u8>,
}

impl OwnFiles {
    fn of(database: &Path) -> OwnFiles {
        OwnFiles {
            dir: fs::metadata(directory_of(database))
                .ok()
                .map(|metadata| (metadata.dev(), metadata.ino())),
            name: database
                .file_name()
                .map(|name| name.as_bytes().to_vec())
                .unwrap_or_default(),
        }
    }

    /// Whether `name` in the directory with `dir_metadata` is one of them.
    fn holds(&self, dir_metadata: &fs::Metadata, name: &[u8]) -> bool {
        if self.dir != Some((dir_metadata.dev(), dir_metadata.ino())) || self.name.is_empty() {
            return false;
        }
        crate::replica::is_own_file_name(&self.name, name)
    }

    /// The device and inode of each of them that exists now, found through the database's real
    /// path: so a link to one of them, or a link to the database, is recognised too.
    fn identities(database: &Path) -> HashSet<(u64, u64)> {
        let Ok(real) = fs::canonicalize(database) else {
            return HashSet::new();
        };
        let own = OwnFiles::of(&real);
        let dir = directory_of(&real);
        let Ok(dir_metadata) = fs::metadata(dir) else {
            return HashSet::new();
        };
        fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| own.holds(&dir_metadata, entry.file_name().as_bytes()))
            .filter_map(|entry| entry.metadata().ok())
            .map(|metadata| (metadata.dev(), metadata.ino()))
            .collect()
    }

    /// Whether `path` names one of them.
    fn is(&self, path: &Path) -> bool {
        match (fs::metadata(directory_of(path)), path.file_name()) {
            (Ok(metadata), Some(name)) => self.holds(&metadata, name.as_bytes()),
            _ => false,
        }
    }
}

/// The directory a path names its file in (`.` for a bare name).
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Says in the log that `path` is left out as one of the replica's own files.
fn report_own(path: &Path) {
    tracing::warn!(file = %path.display(), "left out: the replica's own file");
}

/// The walker: lists files in sorted order and deals them out in chunks.
struct Walk {
    own: OwnFiles,
    readers: Vec<SyncSender<Vec<PathBuf>>>,
    next: usize,
    chunk: Vec<PathBuf>,
    unreadable: u64,
    /// Paths that are not regular files, reported and never opened.
    skipped: u64,
    /// How many directories' listings are held above the one being read.
    depth: u32,
}

/// What a directory entry is, as far as the walk cares.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum EntryKind {
    Dir,
    Symlink,
    File,
    /// A FIFO, a device, a socket.
    Special,
}

/// Most entries of one directory held at once. A larger directory is read in several passes,
/// each taking the next names in sorted order, so memory does not grow with the number of files.
const LISTING_WINDOW: usize = 65_536;

/// Most bytes of names the top directory's listing holds at once; each level below gets half
/// of the level above it (never under [`MIN_LISTING_BYTES`]), since a directory's listing is
/// kept while its subdirectories are walked. Together they stay under twice this however deep
/// the tree, plus [`MIN_LISTING_BYTES`] per level past the twelfth.
const LISTING_BYTES: usize = 4 * 1024 * 1024;
const MIN_LISTING_BYTES: usize = 2 * 1024;

/// What one held name costs, roughly: its bytes and its allocation.
fn entry_bytes(name: &[u8]) -> usize {
    name.len() + 48
}

/// The next names of one directory, in sorted order: at most [`LISTING_WINDOW`] of them and
/// the bytes its level allows.
struct Listing {
    entries: Vec<(Vec<u8>, EntryKind)>,
    /// True when the directory holds more names after the last of these.
    more: bool,
}

impl Listing {
    /// Reads the smallest names after `after` (all names when `None`), skipping hidden ones: at
    /// most `window` of them and `max_bytes` of [`entry_bytes`] (at least one name).
    fn read(
        dir: &Path,
        after: Option<&[u8]>,
        window: usize,
        max_bytes: usize,
    ) -> std::io::Result<Listing> {
        // A max-heap of the smallest names seen: past the window, the largest is dropped.
        let mut heap = std::collections::BinaryHeap::new();
        let mut bytes = 0;
        let mut more = false;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.as_bytes();
            if name.starts_with(b".") || after.is_some_and(|after| name <= after) {
                continue;
            }
            if heap.len() == window
                && heap
                    .peek()
                    .is_some_and(|(largest, _): &(Vec<u8>, EntryKind)| name >= largest.as_slice())
            {
                more = true;
                continue;
            }
            let file_type = entry.file_type()?;
            let kind = if file_type.is_dir() {
                EntryKind::Dir
            } else if file_type.is_symlink() {
                EntryKind::Symlink
            } else if file_type.is_file() {
                EntryKind::File
            } else {
                EntryKind::Special
            };
            bytes += entry_bytes(name);
            heap.push((name.to_vec(), kind));
            while heap.len() > window || (bytes > max_bytes && heap.len() > 1) {
                let (dropped, _) = heap.pop().expect("not empty");
                bytes -= entry_bytes(&dropped);
                more = true;
            }
        }
        Ok(Listing {
            entries: heap.into_sorted_vec(),
            more,
        })
    }
}

/// Whether a symbolic link found in a directory may be followed to `target`: when this user or
/// root made it, or when whoever made it owns the file it points at.
fn link_may_be_followed(link: &Path, target: &fs::Metadata) -> bool {
    fs::symlink_metadata(link).is_ok_and(|metadata| {
        metadata.uid() == crate::owner::euid()
            || metadata.uid() == 0
            || metadata.uid() == target.uid()
    })
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
        } else if self.own.is(path) {
            report_own(path);
            true
        } else if is_regular(path, &metadata.file_type()) {
            self.push(path.to_path_buf())
        } else {
            self.skipped += 1;
            true
        }
    }

    fn visit_dir(&mut self, dir: &Path) -> bool {
        let max_bytes = (LISTING_BYTES >> self.depth.min(31)).max(MIN_LISTING_BYTES);
        let dir_metadata = fs::metadata(dir).ok();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let listing = match Listing::read(dir, after.as_deref(), LISTING_WINDOW, max_bytes) {
                Ok(listing) => listing,
                Err(error) => return self.unreadable(dir, &error),
            };
            self.depth += 1;
            let went_on = listing.entries.iter().all(|(name, kind)| {
                let path = dir.join(OsStr::from_bytes(name));
                if dir_metadata
                    .as_ref()
                    .is_some_and(|metadata| self.own.holds(metadata, name))
                {
                    report_own(&path);
                    return true;
                }
                self.visit_entry(&path, *kind)
            });
            self.depth -= 1;
            if !went_on {
                return false;
            }
            if !listing.more {
                return true;
            }
            after = listing.entries.last().map(|(name, _)| name.clone());
        }
    }

    /// Visits one directory entry; false when the writer has gone away.
    fn visit_entry(&mut self, path: &Path, kind: EntryKind) -> bool {
        match kind {
            EntryKind::Dir => self.visit_dir(path),
            // A link to a file is followed; a link to a directory is not (no loops). Nor is a
            // link another user made to a file that is not theirs: it would have this run read
            // (and keep in `rejected`) what that user may not read.
            EntryKind::Symlink => match fs::metadata(path) {
                Ok(target) if !link_may_be_followed(path, &target) => {
                    tracing::warn!(file = %path.display(), "skipped: a symbolic link that another user made to a file that is not theirs, not followed");
                    self.skipped += 1;
                    true
                }
                Ok(target) if target.is_dir() => {
                    tracing::warn!(file = %path.display(), "skipped: a link to a directory, not followed (name the directory itself to import it)");
                    self.skipped += 1;
                    true
                }
                Ok(target) if !is_regular(path, &target.file_type()) => {
                    self.skipped += 1;
                    true
                }
                // A dangling link is reported by the reader that fails to open it.
                _ => self.push(path.to_path_buf()),
            },
            EntryKind::File => self.push(path.to_path_buf()),
            EntryKind::Special => {
                if let Ok(metadata) = fs::symlink_metadata(path) {
                    report_skipped(path, &metadata.file_type());
                }
                self.skipped += 1;
                true
            }
        }
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
        report_unreadable(path, error);
        self.unreadable += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_directory_is_listed_in_sorted_windows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut names: Vec<String> = (0..50)
            .map(|n| format!("{:02}.xml", (n * 37) % 50))
            .collect();
        for name in &names {
            std::fs::write(dir.path().join(name), "").expect("write");
        }
        std::fs::write(dir.path().join(".hidden"), "").expect("write");
        names.sort();
        // Each name here costs entry_bytes = 6 + 48 bytes: a byte limit works as a count.
        let by_bytes = |count: usize| (count * entry_bytes(b"00.xml"), usize::MAX);
        let by_count = |count: usize| (usize::MAX, count);
        for (window, (max_bytes, max_count)) in [1, 3, 7, 50, 100]
            .into_iter()
            .flat_map(|n| [(n, by_count(n)), (n, by_bytes(n))])
        {
            let mut seen = Vec::new();
            let mut after: Option<Vec<u8>> = None;
            let mut passes = 0;
            loop {
                let listing = Listing::read(dir.path(), after.as_deref(), max_count, max_bytes)
                    .expect("read");
                assert!(listing.entries.len() <= window);
                passes += 1;
                seen.extend(
                    listing
                        .entries
                        .iter()
                        .map(|(name, _)| String::from_utf8(name.clone()).expect("utf-8")),
                );
                if !listing.more {
                    break;
                }
                after = listing.entries.last().map(|(name, _)| name.clone());
            }
            assert_eq!(seen, names, "window {window}");
            assert_eq!(passes, 50usize.div_ceil(window).max(1), "window {window}");
        }
    }
}
