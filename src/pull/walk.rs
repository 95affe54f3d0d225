//! The walk of `import`: the paths named, and the directories among them recursively, in
//! sorted order, hidden entries (names starting with `.`) skipped, dealt out in chunks to the
//! readers.
//!
//! What is found in a directory is opened relative to that directory's descriptor, never by
//! its path, so that nobody can swap a directory on the way for a link while the import runs;
//! a file is opened without following a link (`O_NOFOLLOW`), and a link that may be followed
//! (made by this user or root, or by the owner of what it points at) is opened only if it still
//! reaches the file the walk looked at. So another user who can write the tree cannot make the
//! import read, and keep in `rejected`, a file they may not read.

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr};
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::SyncSender;

/// Files per chunk handed to a reader.
pub(super) const CHUNK: usize = 32;

/// A file the walk found, and how to open it so that it is the file the walk saw.
pub(super) struct Found {
    /// As the operator would name it, for messages and `origin`.
    pub path: PathBuf,
    how: Opening,
}

enum Opening {
    /// Named on the command line: opened by its path, as given.
    Named,
    /// Found in a directory: opened relative to it, never through a link.
    InDirectory { dir: Arc<OwnedFd>, name: CString },
    /// A link found in a directory that may be followed: opened through it only if it still
    /// reaches the file the walk looked at (its device and inode).
    Link {
        dir: Arc<OwnedFd>,
        name: CString,
        target: (u64, u64),
    },
}

impl Found {
    /// Opens it for reading without blocking, with what the open file says of itself; `None`
    /// (reported here) when it is not a regular file, or is no longer the file the walk saw.
    pub(super) fn open(&self) -> std::io::Result<Option<(fs::File, fs::Metadata)>> {
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
        let file = match &self.how {
            Opening::Named => fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(&self.path)?,
            Opening::InDirectory { dir, name } => {
                match open_at(dir, name, flags | libc::O_NOFOLLOW) {
                    Err(error) if error.raw_os_error() == Some(libc::ELOOP) => {
                        tracing::warn!(file = %self.path.display(), "skipped: it became a symbolic link after the walk listed it; not followed");
                        return Ok(None);
                    }
                    opened => fs::File::from(opened?),
                }
            }
            Opening::Link { dir, name, target } => {
                let file = fs::File::from(open_at(dir, name, flags)?);
                let metadata = file.metadata()?;
                if (metadata.dev(), metadata.ino()) != *target {
                    tracing::warn!(file = %self.path.display(), "skipped: the symbolic link points elsewhere than when the walk looked at it; not followed");
                    return Ok(None);
                }
                file
            }
        };
        // Looked at again once open: only a regular file is read.
        let metadata = file.metadata()?;
        if !is_regular(&self.path, &metadata.file_type()) {
            return Ok(None);
        }
        Ok(Some((file, metadata)))
    }

    /// Opens `name` beside it, without blocking or following a link, if it is a regular file.
    pub(super) fn open_beside(&self, name: &OsStr) -> Option<fs::File> {
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
        let file = match &self.how {
            Opening::Named => fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW)
                .open(self.path.with_file_name(name))
                .ok()?,
            Opening::InDirectory { dir, .. } | Opening::Link { dir, .. } => {
                let name = CString::new(name.as_bytes()).ok()?;
                fs::File::from(open_at(dir, &name, flags | libc::O_NOFOLLOW).ok()?)
            }
        };
        file.metadata().ok()?.is_file().then_some(file)
    }
}

/// `openat(2)` relative to `dir`.
fn open_at(dir: &OwnedFd, name: &CStr, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    // SAFETY: openat(2) with a descriptor we hold and a NUL-terminated name; a descriptor it
    // returns is ours.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a directory named on the command line (following links in its path: the operator's).
fn open_directory(path: &Path) -> std::io::Result<OwnedFd> {
    Ok(OwnedFd::from(
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)?,
    ))
}

/// What `fstatat(2)` says of `name` in `dir`: device, inode, owner and mode.
#[derive(Clone, Copy)]
struct Stat {
    dev: u64,
    ino: u64,
    uid: u32,
    mode: u32,
}

impl Stat {
    fn of(dir: &OwnedFd, name: &CStr, follow: bool) -> std::io::Result<Stat> {
        // SAFETY: an all-zero `stat` is a valid value for fstatat to fill.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
        // SAFETY: fstatat(2) with a descriptor we hold, a NUL-terminated name and a buffer of
        // the right type.
        if unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut stat, flags) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Stat {
            dev: stat.st_dev,
            ino: stat.st_ino,
            uid: stat.st_uid,
            mode: stat.st_mode,
        })
    }

    fn kind(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
}

/// True for a regular file; anything else is reported as skipped.
pub(super) fn is_regular(path: &Path, file_type: &fs::FileType) -> bool {
    if !file_type.is_file() {
        report_skipped(path, crate::files::kind(file_type));
        return false;
    }
    true
}

/// Says in the log that `path` is skipped, and what it is.
fn report_skipped(path: &Path, what: &str) {
    tracing::warn!(file = %path.display(), "skipped: {what}, not a regular file; only regular files are imported");
}

/// Says in the log that `path` could not be read, and why.
pub(super) fn report_unreadable(path: &Path, error: &std::io::Error) {
    tracing::error!(file = %path.display(), "cannot read: {error}; fix it and import it again");
}

/// Says in the log that `path` is left out as one of the replica's own files.
pub(super) fn report_own(path: &Path) {
    tracing::warn!(file = %path.display(), "left out: the replica's own file");
}

/// The replica's own files (the database, its WAL, shared memory and journal, its pre-upgrade
/// backups): never imported, even when the directory being imported holds them.
pub(super) struct OwnFiles {
    /// The database's directory, as device and inode.
    dir: Option<(u64, u64)>,
    name: Vec<u8>,
}

impl OwnFiles {
    pub(super) fn of(database: &Path) -> OwnFiles {
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
    fn holds(&self, dir: (u64, u64), name: &[u8]) -> bool {
        if self.dir != Some(dir) || self.name.is_empty() {
            return false;
        }
        crate::files::is_own_file_name(&self.name, name)
    }

    /// The device and inode of each of them that exists now, found through the database's real
    /// path: so a link to one of them, or a link to the database, is recognised too.
    pub(super) fn identities(database: &Path) -> HashSet<(u64, u64)> {
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
            .filter(|entry| {
                own.holds(
                    (dir_metadata.dev(), dir_metadata.ino()),
                    entry.file_name().as_bytes(),
                )
            })
            .filter_map(|entry| entry.metadata().ok())
            .map(|metadata| (metadata.dev(), metadata.ino()))
            .collect()
    }

    /// Whether `path` names one of them.
    fn is(&self, path: &Path) -> bool {
        match (fs::metadata(directory_of(path)), path.file_name()) {
            (Ok(metadata), Some(name)) => {
                self.holds((metadata.dev(), metadata.ino()), name.as_bytes())
            }
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

/// The walker: lists files in sorted order and deals them out in chunks.
pub(super) struct Walk {
    own: OwnFiles,
    readers: Vec<SyncSender<Vec<Found>>>,
    next: usize,
    chunk: Vec<Found>,
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
        dir: &OwnedFd,
        after: Option<&[u8]>,
        window: usize,
        max_bytes: usize,
    ) -> std::io::Result<Listing> {
        // A max-heap of the smallest names seen: past the window, the largest is dropped.
        let mut heap = std::collections::BinaryHeap::new();
        let mut bytes = 0;
        let mut more = false;
        for_each_entry(dir, &mut |name, kind| {
            if name.starts_with(b".") || after.is_some_and(|after| name <= after) {
                return;
            }
            if heap.len() == window
                && heap
                    .peek()
                    .is_some_and(|(largest, _): &(Vec<u8>, EntryKind)| name >= largest.as_slice())
            {
                more = true;
                return;
            }
            bytes += entry_bytes(name);
            heap.push((name.to_vec(), kind));
            while heap.len() > window || (bytes > max_bytes && heap.len() > 1) {
                let (dropped, _) = heap.pop().expect("not empty");
                bytes -= entry_bytes(&dropped);
                more = true;
            }
        })?;
        Ok(Listing {
            entries: heap.into_sorted_vec(),
            more,
        })
    }
}

/// Calls `each` with every name in the directory `dir` and what it is (not following links),
/// read through a descriptor of its own from the start.
fn for_each_entry(dir: &OwnedFd, each: &mut dyn FnMut(&[u8], EntryKind)) -> std::io::Result<()> {
    // SAFETY: fcntl(2) duplicates a descriptor we hold; fdopendir(3) takes the duplicate, which
    // closedir(3) closes; readdir(3) entries are read before the next call.
    unsafe {
        let fd = libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = libc::fdopendir(fd);
        if stream.is_null() {
            let error = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(error);
        }
        // The duplicate shares its position with `dir`: start from the beginning.
        libc::rewinddir(stream);
        loop {
            *libc::__errno_location() = 0;
            let entry = libc::readdir(stream);
            if entry.is_null() {
                let errno = *libc::__errno_location();
                libc::closedir(stream);
                return if errno == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::from_raw_os_error(errno))
                };
            }
            let name = CStr::from_ptr((*entry).d_name.as_ptr());
            let kind = match (*entry).d_type {
                libc::DT_DIR => EntryKind::Dir,
                libc::DT_LNK => EntryKind::Symlink,
                libc::DT_REG => EntryKind::File,
                libc::DT_UNKNOWN => match Stat::of(dir, name, false).map(|stat| stat.kind()) {
                    Ok(libc::S_IFDIR) => EntryKind::Dir,
                    Ok(libc::S_IFLNK) => EntryKind::Symlink,
                    Ok(libc::S_IFREG) => EntryKind::File,
                    _ => EntryKind::Special,
                },
                _ => EntryKind::Special,
            };
            each(name.to_bytes(), kind);
        }
    }
}

/// Whether a symbolic link found in a directory may be followed to `target`: when this user or
/// root made it, or when whoever made it owns the file it points at.
fn link_may_be_followed(link: &Stat, target: &Stat) -> bool {
    link.uid == crate::owner::euid() || link.uid == 0 || link.uid == target.uid
}

impl Walk {
    pub(super) fn new(own: OwnFiles, readers: Vec<SyncSender<Vec<Found>>>) -> Walk {
        Walk {
            own,
            readers,
            next: 0,
            chunk: Vec::with_capacity(CHUNK),
            unreadable: 0,
            skipped: 0,
            depth: 0,
        }
    }

    /// Hands out what is left; how many paths could not be read, and how many were skipped.
    pub(super) fn finish(mut self) -> (u64, u64) {
        self.flush();
        (self.unreadable, self.skipped)
    }

    /// Visits a path named on the command line; false when the writer has gone away.
    pub(super) fn visit(&mut self, path: &Path) -> bool {
        let metadata = match fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(error) => return self.unreadable(path, &error),
        };
        if metadata.is_dir() {
            match open_directory(path) {
                Ok(dir) => self.visit_dir(path, Arc::new(dir)),
                Err(error) => self.unreadable(path, &error),
            }
        } else if self.own.is(path) {
            report_own(path);
            true
        } else if is_regular(path, &metadata.file_type()) {
            self.push(Found {
                path: path.to_path_buf(),
                how: Opening::Named,
            })
        } else {
            self.skipped += 1;
            true
        }
    }

    fn visit_dir(&mut self, path: &Path, dir: Arc<OwnedFd>) -> bool {
        let max_bytes = (LISTING_BYTES >> self.depth.min(31)).max(MIN_LISTING_BYTES);
        let identity = fs::File::from(match dir.try_clone() {
            Ok(fd) => fd,
            Err(error) => return self.unreadable(path, &error),
        })
        .metadata()
        .ok()
        .map(|metadata| (metadata.dev(), metadata.ino()));
        let mut after: Option<Vec<u8>> = None;
        loop {
            let listing = match Listing::read(&dir, after.as_deref(), LISTING_WINDOW, max_bytes) {
                Ok(listing) => listing,
                Err(error) => return self.unreadable(path, &error),
            };
            self.depth += 1;
            let went_on = listing.entries.iter().all(|(name, kind)| {
                let entry = path.join(OsStr::from_bytes(name));
                if identity.is_some_and(|identity| self.own.holds(identity, name)) {
                    report_own(&entry);
                    return true;
                }
                let Ok(name) = CString::new(name.clone()) else {
                    return true;
                };
                self.visit_entry(&dir, entry, name, *kind)
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
    fn visit_entry(
        &mut self,
        dir: &Arc<OwnedFd>,
        path: PathBuf,
        name: CString,
        kind: EntryKind,
    ) -> bool {
        match kind {
            EntryKind::Dir => {
                let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
                match open_at(dir, &name, flags) {
                    Ok(sub) => self.visit_dir(&path, Arc::new(sub)),
                    Err(error) if error.raw_os_error() == Some(libc::ELOOP) => {
                        tracing::warn!(file = %path.display(), "skipped: it became a symbolic link after the walk listed it; not followed");
                        self.skipped += 1;
                        true
                    }
                    Err(error) => self.unreadable(&path, &error),
                }
            }
            EntryKind::Symlink => self.visit_link(dir, path, name),
            EntryKind::File => self.push(Found {
                path,
                how: Opening::InDirectory {
                    dir: dir.clone(),
                    name,
                },
            }),
            EntryKind::Special => {
                let what = Stat::of(dir, &name, false).map_or("not a regular file", |stat| {
                    match stat.kind() {
                        libc::S_IFIFO => "a FIFO",
                        libc::S_IFCHR => "a character device",
                        libc::S_IFBLK => "a block device",
                        libc::S_IFSOCK => "a socket",
                        _ => "not a regular file",
                    }
                });
                report_skipped(&path, what);
                self.skipped += 1;
                true
            }
        }
    }

    /// A link to a file is followed; a link to a directory is not (no loops). Nor is a link
    /// another user made to a file that is not theirs: it would have this run read (and keep in
    /// `rejected`) what that user may not read.
    fn visit_link(&mut self, dir: &Arc<OwnedFd>, path: PathBuf, name: CString) -> bool {
        let target = match Stat::of(dir, &name, true) {
            Ok(target) => target,
            // A dangling link: said as the failure to read it.
            Err(error) => return self.unreadable(&path, &error),
        };
        let link = match Stat::of(dir, &name, false) {
            Ok(link) => link,
            Err(error) => return self.unreadable(&path, &error),
        };
        if !link_may_be_followed(&link, &target) {
            tracing::warn!(file = %path.display(), "skipped: a symbolic link that another user made to a file that is not theirs, not followed");
            self.skipped += 1;
            return true;
        }
        match target.kind() {
            libc::S_IFDIR => {
                tracing::warn!(file = %path.display(), "skipped: a link to a directory, not followed (name the directory itself to import it)");
                self.skipped += 1;
                true
            }
            libc::S_IFREG => self.push(Found {
                path,
                how: Opening::Link {
                    dir: dir.clone(),
                    name,
                    target: (target.dev, target.ino),
                },
            }),
            _ => {
                let what = match fs::metadata(&path) {
                    Ok(metadata) => crate::files::kind(&metadata.file_type()),
                    Err(_) => "not a regular file",
                };
                report_skipped(&path, what);
                self.skipped += 1;
                true
            }
        }
    }

    fn push(&mut self, found: Found) -> bool {
        self.chunk.push(found);
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
                let listing = Listing::read(
                    &open_directory(dir.path()).expect("open"),
                    after.as_deref(),
                    max_count,
                    max_bytes,
                )
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

    /// Walks `dir` and returns what the walker dealt out.
    fn found_in(dir: &Path) -> Vec<Found> {
        let (to_reader, chunks) = std::sync::mpsc::sync_channel::<Vec<Found>>(1024);
        let mut walk = Walk::new(
            OwnFiles::of(Path::new("/nonexistent/replica.db")),
            vec![to_reader],
        );
        assert!(walk.visit(dir));
        assert_eq!(walk.finish(), (0, 0));
        chunks.try_iter().flatten().collect()
    }

    fn read(found: &Found) -> Option<String> {
        let (file, _) = found.open().expect("open")?;
        Some(std::io::read_to_string(file).expect("read"))
    }

    #[test]
    fn what_the_walk_found_is_opened_even_if_the_tree_changes_meanwhile() {
        let tree = tempfile::tempdir().expect("tempdir");
        let secret = tempfile::tempdir().expect("tempdir");
        std::fs::write(secret.path().join("f.xml"), "secret").expect("write");
        std::fs::write(secret.path().join("g.xml"), "secret").expect("write");
        std::fs::create_dir(tree.path().join("sub")).expect("mkdir");
        std::fs::write(tree.path().join("sub/f.xml"), "listed").expect("write");
        std::fs::write(tree.path().join("g.xml"), "listed").expect("write");
        let found = found_in(tree.path());
        let names: Vec<String> = found
            .iter()
            .map(|found| {
                found
                    .path
                    .strip_prefix(tree.path())
                    .expect("in tree")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["g.xml", "sub/f.xml"]);
        // A file replaced by a link to a secret after the walk: not followed.
        std::fs::remove_file(tree.path().join("g.xml")).expect("rm");
        std::os::unix::fs::symlink(secret.path().join("g.xml"), tree.path().join("g.xml"))
            .expect("link");
        assert_eq!(read(&found[0]), None);
        // A directory on the way replaced by a link to the secret's directory: the file is
        // still read from the directory the walk was in.
        std::fs::rename(tree.path().join("sub"), tree.path().join("sub.old")).expect("mv");
        std::os::unix::fs::symlink(secret.path(), tree.path().join("sub")).expect("link");
        assert_eq!(read(&found[1]).as_deref(), Some("listed"));
    }

    #[test]
    fn a_followed_link_is_read_only_while_it_reaches_the_file_the_walk_saw() {
        let tree = tempfile::tempdir().expect("tempdir");
        std::fs::write(tree.path().join(".target"), "seen").expect("write");
        std::fs::write(tree.path().join(".other"), "other").expect("write");
        std::os::unix::fs::symlink(tree.path().join(".target"), tree.path().join("link.xml"))
            .expect("link");
        let found = found_in(tree.path());
        assert_eq!(
            found.len(),
            1,
            "hidden names are skipped, the link is found"
        );
        assert_eq!(read(&found[0]).as_deref(), Some("seen"));
        std::fs::remove_file(tree.path().join("link.xml")).expect("rm");
        std::os::unix::fs::symlink(tree.path().join(".other"), tree.path().join("link.xml"))
            .expect("link");
        assert_eq!(read(&found[0]), None);
    }
}
