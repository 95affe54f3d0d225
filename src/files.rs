//! Reading the small files a configuration names (itself, certificates, keys, CA bundles):
//! only regular files, never blocking (a FIFO or a device given by mistake is refused at once,
//! not waited on), and never more than a set size (`/dev/zero` or a log file given by mistake
//! is refused, not read into memory).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The most a settings file may hold: far more than any certificate chain or configuration.
pub const MAX_SETTINGS_FILE: u64 = 16 * 1024 * 1024;

/// Reads a settings file whole. The error says what is wrong with the path in words an
/// operator can act on; the caller adds which setting named it.
pub fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    read_small_file(path).map(|(bytes, _)| bytes)
}

/// [`read_small`], with the metadata of the file that was read (not of whatever the path names
/// a moment later): for the rules on who may own and change it (`owner`).
pub fn read_small_file(path: &Path) -> std::io::Result<(Vec<u8>, std::fs::Metadata)> {
    // Looked at before it is opened too: opening a socket fails with a less helpful error,
    // and opening some devices has effects.
    let file_type = std::fs::metadata(path)?.file_type();
    if !file_type.is_file() {
        return Err(not_regular(&file_type));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let metadata = file.metadata()?;
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        return Err(not_regular(&file_type));
    }
    if metadata.len() > MAX_SETTINGS_FILE {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    // It may grow while it is read: never past the bound.
    file.take(MAX_SETTINGS_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SETTINGS_FILE {
        return Err(too_large(bytes.len() as u64));
    }
    Ok((bytes, metadata))
}

/// [`read_small`], as text.
pub fn read_small_text(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_small(path)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

/// Random bytes from the kernel, as hex: for names nobody else can guess.
pub fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut buffer = vec![0u8; bytes];
    let mut filled = 0;
    while filled < bytes {
        // SAFETY: getrandom(2) writes at most `bytes - filled` bytes into the rest of `buffer`.
        let got =
            unsafe { libc::getrandom(buffer[filled..].as_mut_ptr().cast(), bytes - filled, 0) };
        if got < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(error);
            }
            continue;
        }
        filled += got as usize;
    }
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Creates a new file beside `path`, to be renamed onto it once written: under a name nobody
/// can predict (`.<name>.tmp-<random>`), created exclusively and never through a symbolic link
/// (`O_EXCL | O_NOFOLLOW`), with `mode` from the start. Another user who can write the
/// directory can neither make it write through a link they planted nor read it early.
pub fn create_beside(
    path: &Path,
    mode: u32,
) -> std::io::Result<(std::fs::File, std::path::PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        Some(dir) => dir.to_path_buf(),
        None => std::path::PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "it does not name a file")
    })?;
    loop {
        let temporary = dir.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            random_hex(8)?
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temporary)
        {
            Ok(file) => {
                // The umask may have taken bits away; the file is ours, so this is safe.
                file.set_permissions(std::fs::Permissions::from_mode(mode))?;
                return Ok((file, temporary));
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
}

/// `path` with every symbolic link and `..` resolved; for a file not yet created, its
/// directory's real path and its name; as given when neither can be resolved.
pub fn real_path(path: &Path) -> std::path::PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    match (
        parent.map_or_else(|| std::fs::canonicalize("."), std::fs::canonicalize),
        path.file_name(),
    ) {
        (Ok(directory), Some(name)) => directory.join(name),
        _ => path.to_path_buf(),
    }
}

/// Whether `name` is, beside a database file named `database`, one of the replica's own files:
/// the database itself, the journal, WAL and shared memory SQLite gives it, the copies kept
/// before a schema upgrade (`.schemaN.bak`), and the lock files of its feeds and import
/// sources (`-NAME.lock`).
pub fn is_own_file_name(database: &[u8], name: &[u8]) -> bool {
    is_claimed_file_name(database, name)
        || name.strip_prefix(database).is_some_and(|rest| {
            !database.is_empty()
                && (rest.is_empty() || (rest.starts_with(b".schema") && rest.ends_with(b".bak")))
        })
}

/// Whether `name`, beside a database file named `database`, is a name that SQLite or a run
/// of beskedhent writes to by itself: the journal, WAL and shared memory, and the lock files
/// of feeds and import sources. A file put there would be taken for one of them.
pub fn is_claimed_file_name(database: &[u8], name: &[u8]) -> bool {
    if database.is_empty() {
        return false;
    }
    let Some(rest) = name.strip_prefix(database) else {
        return false;
    };
    matches!(rest, b"-wal" | b"-shm" | b"-journal")
        || (rest.len() > b"-.lock".len() && rest.starts_with(b"-") && rest.ends_with(b".lock"))
}

/// The runs at work on `database`, from its lock files (`<database>-<source>.lock` beside its
/// real file): each source whose lock another process holds, with the pid it wrote.
pub fn runs_holding(database: &Path) -> Vec<(String, Option<u32>)> {
    use std::os::fd::AsRawFd;
    let real = real_path(database);
    let (Some(dir), Some(name)) = (real.parent(), real.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}-", name.to_string_lossy());
    let mut runs = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(source) = file_name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".lock"))
        else {
            continue;
        };
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(entry.path())
        else {
            continue;
        };
        // SAFETY: flock(2) on a descriptor we hold; a shared lock that is refused means another
        // process holds the exclusive one, and one that is granted is let go at once.
        let held = unsafe {
            if libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) == 0 {
                libc::flock(file.as_raw_fd(), libc::LOCK_UN);
                false
            } else {
                true
            }
        };
        let pid: Option<u32> = std::io::read_to_string(&file)
            .ok()
            .and_then(|text| text.trim().parse().ok());
        // This process's own lock is not another run.
        if held && pid != Some(std::process::id()) {
            runs.push((source.to_owned(), pid));
        }
    }
    runs.sort();
    runs
}

fn not_regular(file_type: &std::fs::FileType) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("it is {}, not a regular file", kind(file_type)),
    )
}

fn too_large(bytes: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!(
            "it holds {bytes} bytes, more than the {MAX_SETTINGS_FILE} a settings file may hold; is it the right file?"
        ),
    )
}

/// What a file that is not a regular file is, in words.
pub fn kind(file_type: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "pem").expect("write");
        assert_eq!(read_small(&file).expect("read"), b"pem");

        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: mkfifo(3) with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let error = read_small(&fifo).expect_err("a FIFO");
        assert!(error.to_string().contains("a FIFO"), "{error}");

        let error = read_small(Path::new("/dev/zero")).expect_err("a device");
        assert!(error.to_string().contains("character device"), "{error}");
        let error = read_small(dir.path()).expect_err("a directory");
        assert!(error.to_string().contains("a directory"), "{error}");
        let socket = dir.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        let error = read_small(&socket).expect_err("a socket");
        assert!(error.to_string().contains("a socket"), "{error}");

        let large = dir.path().join("large");
        std::fs::File::create(&large)
            .expect("create")
            .set_len(MAX_SETTINGS_FILE + 1)
            .expect("grow");
        let error = read_small(&large).expect_err("too large");
        assert!(error.to_string().contains("more than"), "{error}");

        std::fs::write(&file, [0xff, 0xfe]).expect("write");
        assert!(read_small_text(&file).is_err());
    }
}
