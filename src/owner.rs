//! Who may steer beskedhent through the file system: the rules for the files it reads as
//! instructions (the configuration, the program `[notify]` runs), the files it writes (the
//! replica and everything beside it) and the private keys it holds.
//!
//! The rule everywhere: only the user beskedhent runs as (the invoking user) and root may have
//! written what it obeys, and beskedhent never writes into another user's replica. A group
//! counts as "others" unless it is the owner's own private group (a user-private group, as
//! Debian and Ubuntu give every user), so a checkout under umask 002 is still the owner's.

use std::ffi::CStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The user this process acts as (its effective user id).
pub fn euid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// A user's name, or `uid N` when the user database does not know the id.
pub fn user_name(uid: u32) -> String {
    passwd(uid).map_or_else(|| format!("uid {uid}"), |(name, _)| name)
}

/// The name and primary group of a user id.
fn passwd(uid: u32) -> Option<(String, u32)> {
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value to be filled in by getpwuid_r.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r fills `entry` with pointers into `buffer`, which outlives their use
    // below; `found` is set to `&entry` or null.
    let status = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if status != 0 || found.is_null() || entry.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points at a NUL-terminated string inside `buffer`.
    let name = unsafe { CStr::from_ptr(entry.pw_name) }
        .to_string_lossy()
        .into_owned();
    Some((name, entry.pw_gid))
}

/// A group's name and its listed members.
fn group(gid: u32) -> Option<(String, Vec<String>)> {
    let mut buffer = vec![0 as libc::c_char; 64 * 1024];
    // SAFETY: an all-zero group is a valid value to be filled in by getgrgid_r.
    let mut entry: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `passwd`: the strings live in `buffer`, used only while it lives.
    let status = unsafe {
        libc::getgrgid_r(
            gid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if status != 0 || found.is_null() || entry.gr_name.is_null() {
        return None;
    }
    // SAFETY: gr_name is NUL-terminated inside `buffer`.
    let name = unsafe { CStr::from_ptr(entry.gr_name) }
        .to_string_lossy()
        .into_owned();
    let mut members = Vec::new();
    let mut member = entry.gr_mem;
    // SAFETY: gr_mem is a NULL-terminated array of NUL-terminated strings inside `buffer`.
    unsafe {
        while !member.is_null() && !(*member).is_null() {
            members.push(CStr::from_ptr(*member).to_string_lossy().into_owned());
            member = member.add(1);
        }
    }
    Some((name, members))
}

/// Whether group `gid` is the private group of user `uid`: the user's primary group, named
/// like the user, with no other member listed.
fn is_private_group(gid: u32, uid: u32) -> bool {
    let (Some((user, primary)), Some((name, members))) = (passwd(uid), group(gid)) else {
        return false;
    };
    primary == gid
        && name == user
        && members.iter().all(|member| *member == user)
        && !others_have_primary_group(gid, uid)
}

/// Whether a user other than `uid` has `gid` as their primary group (and so is in it without
/// being listed as a member).
fn others_have_primary_group(gid: u32, uid: u32) -> bool {
    // getpwent walks one process-wide cursor: one walk at a time.
    static WALK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _walk = WALK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut found = false;
    // SAFETY: setpwent/getpwent/endpwent under the lock above; each entry is read before the
    // next call replaces it.
    unsafe {
        libc::setpwent();
        loop {
            let entry = libc::getpwent();
            if entry.is_null() {
                break;
            }
            if (*entry).pw_gid == gid && (*entry).pw_uid != uid {
                found = true;
                break;
            }
        }
        libc::endpwent();
    }
    found
}

/// Who else an access control list (POSIX ACL) on `path` lets do `what` (4 read, 2 write):
/// `Some("user eve (ACL)")`, or `None` when it has no such entry (or no ACL at all).
pub fn acl_grants(path: &Path, what: u16) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let attribute = c"system.posix_acl_access";
    let mut buffer = [0u8; 4096];
    // SAFETY: getxattr(2) writes at most `buffer.len()` bytes into `buffer`.
    let read = unsafe {
        libc::getxattr(
            name.as_ptr(),
            attribute.as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    let acl = buffer.get(4..usize::try_from(read).ok()?)?;
    // Entries of 8 bytes: tag, permissions (u16 each) and an id (u32), little-endian.
    const USER: u16 = 0x02;
    const GROUP: u16 = 0x08;
    const MASK: u16 = 0x10;
    let entries: Vec<(u16, u16, u32)> = acl
        .chunks_exact(8)
        .map(|entry| {
            (
                u16::from_le_bytes([entry[0], entry[1]]),
                u16::from_le_bytes([entry[2], entry[3]]),
                u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]),
            )
        })
        .collect();
    let mask = entries
        .iter()
        .find(|(tag, _, _)| *tag == MASK)
        .map_or(0o7, |(_, permissions, _)| *permissions);
    entries.iter().find_map(|&(tag, permissions, id)| {
        (permissions & mask & what != 0).then_some(match tag {
            USER => Some(format!("user {} (ACL)", user_name(id))),
            GROUP => Some(format!(
                "group {} (ACL)",
                group(id).map_or_else(|| id.to_string(), |(name, _)| name)
            )),
            _ => None,
        })?
    })
}

/// Who besides the owner may write the file or directory `metadata` describes, in words
/// (`every user`, `group staff`), or `None`. Root may write anything and is not counted.
pub fn other_writers(metadata: &std::fs::Metadata) -> Option<String> {
    let mode = metadata.permissions().mode();
    if mode & 0o002 != 0 {
        return Some("every user".into());
    }
    if mode & 0o020 != 0 && !is_private_group(metadata.gid(), metadata.uid()) {
        return Some(format!(
            "group {}",
            group(metadata.gid()).map_or_else(|| metadata.gid().to_string(), |(name, _)| name)
        ));
    }
    None
}

/// [`other_writers`], and the users an ACL on `path` lets write it.
pub fn other_writers_of(path: &Path, metadata: &std::fs::Metadata) -> Option<String> {
    other_writers(metadata).or_else(|| acl_grants(path, 2))
}

/// The octal mode of a file, for messages.
pub fn mode(metadata: &std::fs::Metadata) -> String {
    format!("{:04o}", metadata.permissions().mode() & 0o7777)
}

/// A file beskedhent takes instructions from (the configuration): owned by the invoking user
/// or root, and writable by nobody else. Otherwise another local user could make it run a
/// program or overwrite a file, as this user, from a file planted where it looked.
pub fn check_instructions(path: &Path, metadata: &std::fs::Metadata, what: &str) -> Result<()> {
    let me = euid();
    let shown = crate::files::real_path(path);
    if metadata.uid() != me && metadata.uid() != 0 {
        let allowed = if me == 0 {
            "root".to_owned()
        } else {
            format!("{} who runs beskedhent, nor to root", user_name(me))
        };
        bail!(
            "{what} `{}` belongs to user {}, not to {allowed}, so it is not read: another user's file must not steer this one; pass --config with a file of your own (e.g. /etc/beskedhent/config.toml)",
            shown.display(),
            user_name(metadata.uid()),
        );
    }
    if let Some(writers) = other_writers_of(&shown, metadata) {
        bail!(
            "{what} `{}` can be changed by {writers} (mode {}), so it is not read: whoever can write it could make beskedhent run a program; `chmod go-w` it (and remove any ACL entry that lets others write)",
            shown.display(),
            mode(metadata)
        );
    }
    Ok(())
}

/// A program beskedhent runs (`[notify] command`): an absolute path to a regular, executable
/// file that neither it nor any directory above it lets another user change. A directory with
/// the sticky bit (`/tmp`) may be writable by all: nobody else can replace what is in it.
pub fn check_program(path: &Path, key: &str) -> Result<PathBuf> {
    if !path.is_absolute() {
        bail!(
            "`{key}` `{}` must be an absolute path (e.g. /usr/local/bin/alert): a relative one would be looked up from wherever beskedhent runs",
            path.display()
        );
    }
    let metadata = std::fs::metadata(path)
        .map_err(|error| anyhow::anyhow!("`{key}` `{}` cannot be run: {error}", path.display()))?;
    if !metadata.is_file() || metadata.permissions().mode() & 0o111 == 0 {
        bail!("`{key}` `{}` is not an executable file", path.display());
    }
    // The path as written, step by step (a link on the way may be another user's), then the
    // file and every directory on the way to it with its links resolved.
    check_steps(path, path, key)?;
    let real = std::fs::canonicalize(path)
        .map_err(|error| anyhow::anyhow!("`{key}` `{}` cannot be run: {error}", path.display()))?;
    check_steps(path, &real, key)?;
    Ok(real)
}

/// Checks every step of `steps` (each directory from the root down, and the last component),
/// as `lstat` sees it: each must belong to the invoking user or root, and none but a sticky
/// directory may be writable by another user. `program` is what the configuration named.
fn check_steps(program: &Path, steps: &Path, key: &str) -> Result<()> {
    let me = euid();
    let mut step = PathBuf::new();
    let components: Vec<_> = steps.components().collect();
    for (at, component) in components.iter().enumerate() {
        step.push(component);
        let metadata = std::fs::symlink_metadata(&step).map_err(|error| {
            anyhow::anyhow!("`{key}`: cannot look at `{}`: {error}", step.display())
        })?;
        if metadata.uid() != me && metadata.uid() != 0 {
            bail!(
                "`{key}` `{}` is not run: `{}` belongs to user {}, who could change what runs; use a program that only root or {} can change",
                program.display(),
                step.display(),
                user_name(metadata.uid()),
                user_name(me)
            );
        }
        if metadata.file_type().is_symlink() {
            continue;
        }
        let last = at + 1 == components.len();
        let sticky_directory = !last && metadata.permissions().mode() & 0o1000 != 0;
        if let Some(writers) = other_writers_of(&step, &metadata)
            && !sticky_directory
        {
            bail!(
                "`{key}` `{}` is not run: `{}` can be changed by {writers} (mode {}); `chmod go-w` it, or use a program in a directory only root can change",
                program.display(),
                step.display(),
                mode(&metadata)
            );
        }
    }
    Ok(())
}

/// A private key file (`sts.private_key`, `sts.pkcs12`): readable by its owner only, or, when
/// root owns it, also by its group (root:beskedhent, mode 0640), as PostgreSQL and ssh demand.
pub fn check_private_key(path: &Path, metadata: &std::fs::Metadata, key: &str) -> Result<()> {
    let me = euid();
    let owner = metadata.uid();
    if owner != me && owner != 0 {
        bail!(
            "the private key `{}` (`{key}`) belongs to user {}, not to {} or root; a key must be private to who uses it: `chown` it",
            path.display(),
            user_name(owner),
            user_name(me)
        );
    }
    // Root's key may be readable by the group beskedhent runs as (root:beskedhent, 0640).
    // SAFETY: getegid(2) cannot fail.
    let own_group = metadata.gid() == unsafe { libc::getegid() };
    let allowed = if owner == 0 && own_group {
        0o640
    } else {
        0o600
    };
    let mode = metadata.permissions().mode();
    let others = if mode & 0o777 & !allowed != 0 {
        Some(format!(
            "other users (mode {}, owner {}, group {})",
            self::mode(metadata),
            user_name(owner),
            group(metadata.gid()).map_or_else(|| metadata.gid().to_string(), |(name, _)| name)
        ))
    } else {
        acl_grants(path, 4).or_else(|| acl_grants(path, 2))
    };
    if let Some(others) = others {
        bail!(
            "the private key `{}` (`{key}`) can be read or changed by {others}; a key must be private: `chmod 600` it (or `chown root:beskedhent` and `chmod 640`, where beskedhent runs as that group), and remove any ACL entry",
            path.display()
        );
    }
    Ok(())
}

/// Whom to tell the operator to run as, for a replica that belongs to `owner`.
pub fn run_as_hint(owner: u32) -> String {
    let name = user_name(owner);
    format!(
        "run beskedhent as that user, e.g. `runuser -u {name} -- beskedhent …` or `sudo -u {name} beskedhent …`"
    )
}

/// The replica, or the directory it will be created in, must belong to the invoking user:
/// a run as another user (root, typically) would leave files the replica's owner cannot use
/// (a root-owned WAL, lock or backup) and read what only it may read. The directory must not
/// let another user plant a file beside the replica (its WAL, its locks).
pub fn check_replica(database: &Path) -> Result<()> {
    let me = euid();
    let (exists, path, metadata) = match std::fs::metadata(database) {
        Ok(metadata) => (true, crate::files::real_path(database), metadata),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let directory = match database.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            };
            match std::fs::metadata(&directory) {
                Ok(metadata) => (false, crate::files::real_path(&directory), metadata),
                // Said by the caller, which knows the command.
                Err(_) => return Ok(()),
            }
        }
        Err(_) => return Ok(()),
    };
    if metadata.uid() != me && exists {
        bail!(
            "the replica `{}` belongs to user {}, and this is {}: beskedhent does not touch another user's replica (the files it would leave could not be used by the replica's owner); {}",
            path.display(),
            user_name(metadata.uid()),
            user_name(me),
            run_as_hint(metadata.uid())
        );
    }
    if metadata.uid() != me {
        bail!(
            "the replica `{}` does not exist, and its directory `{}` belongs to user {}, not to {}: beskedhent creates a replica only in a directory of the user it runs as (its files must be usable by their owner); check `database`, or {}",
            database.display(),
            path.display(),
            user_name(metadata.uid()),
            user_name(me),
            run_as_hint(metadata.uid())
        );
    }
    let directory = match crate::files::real_path(database).parent() {
        Some(dir) => dir.to_path_buf(),
        None => return Ok(()),
    };
    if let Ok(dir_metadata) = std::fs::metadata(&directory)
        && let Some(writers) = other_writers_of(&directory, &dir_metadata)
    {
        bail!(
            "the replica's directory `{}` can be written by {writers} (mode {}), who could put files beside the replica that beskedhent would write into (its WAL, its locks); keep the replica in a directory only {} can write (`chmod go-w`, or another directory)",
            directory.display(),
            mode(&dir_metadata),
            user_name(me)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata_with_mode(dir: &Path, name: &str, mode: u32) -> (PathBuf, std::fs::Metadata) {
        let path = dir.join(name);
        std::fs::write(&path, "x").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let metadata = std::fs::metadata(&path).expect("metadata");
        (path, metadata)
    }

    #[test]
    fn instructions_writable_by_everyone_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, metadata) = metadata_with_mode(dir.path(), "config.toml", 0o644);
        check_instructions(&path, &metadata, "configuration").expect("own file");
        let (path, metadata) = metadata_with_mode(dir.path(), "open.toml", 0o666);
        let error = check_instructions(&path, &metadata, "configuration").expect_err("o+w");
        assert!(error.to_string().contains("every user"), "{error}");
    }

    #[test]
    fn private_keys_must_be_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (mode, ok) in [(0o600, true), (0o400, true), (0o644, false), (0o604, false)] {
            let (path, metadata) = metadata_with_mode(dir.path(), &format!("k{mode:o}"), mode);
            let owner_is_root = metadata.uid() == 0;
            let result = check_private_key(&path, &metadata, "sts.private_key");
            assert_eq!(result.is_ok(), ok, "mode {mode:o}: {result:?}");
            // Root's key may be read by its group (root:beskedhent 0640); anyone else's may not.
            let (path, metadata) = metadata_with_mode(dir.path(), &format!("g{mode:o}"), 0o640);
            assert_eq!(
                check_private_key(&path, &metadata, "sts.private_key").is_ok(),
                owner_is_root
            );
        }
    }

    #[test]
    fn a_program_must_be_absolute_and_unchangeable_by_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (program, _) = metadata_with_mode(dir.path(), "alert.sh", 0o755);
        check_program(&program, "notify.command").expect("own program in a private directory");
        let error = check_program(Path::new("alert.sh"), "notify.command").expect_err("relative");
        assert!(error.to_string().contains("absolute path"), "{error}");
        let (open, _) = metadata_with_mode(dir.path(), "open.sh", 0o757);
        let error = check_program(&open, "notify.command").expect_err("o+w");
        assert!(error.to_string().contains("every user"), "{error}");
        let (plain, _) = metadata_with_mode(dir.path(), "plain.txt", 0o644);
        let error = check_program(&plain, "notify.command").expect_err("not executable");
        assert!(error.to_string().contains("not an executable"), "{error}");
        // A directory on the way that anyone may write (without the sticky bit).
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).expect("mkdir");
        let (inside, _) = metadata_with_mode(&shared, "alert.sh", 0o755);
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let error = check_program(&inside, "notify.command").expect_err("o+w directory");
        assert!(error.to_string().contains("shared"), "{error}");
        // With the sticky bit, nobody else can replace the program.
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        check_program(&inside, "notify.command").expect("sticky directory");
    }
}
