//! Throwaway local users (so the tests that use them need root, as CI has) and a scratch
//! directory every user may enter.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::outcome;

/// A throwaway system user (and its group), removed when dropped.
pub struct LocalUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl LocalUser {
    pub fn create() -> LocalUser {
        // SAFETY: geteuid(2) cannot fail.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "these tests create throwaway users: run them as root (CI does)"
        );
        remove_stale_users();
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("bht{}u{n}", std::process::id());
        let _ = Command::new("userdel").arg(&name).output();
        let made = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"])
            .arg(&name)
            .output()
            .expect("run useradd");
        assert!(made.status.success(), "useradd: {}", outcome(&made).2);
        let id = |flag: &str| -> u32 {
            let output = Command::new("id")
                .arg(flag)
                .arg(&name)
                .output()
                .expect("id");
            String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse()
                .expect("an id")
        };
        LocalUser {
            uid: id("-u"),
            gid: id("-g"),
            name,
        }
    }

    /// `program` to be run as this user (no supplementary groups).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.uid(self.uid).gid(self.gid);
        command
    }

    /// A new directory in `parent`, owned by this user, with `mode`.
    pub fn dir(&self, parent: &Path, name: &str, mode: u32) -> PathBuf {
        let dir = parent.join(name);
        std::fs::create_dir(&dir).expect("mkdir");
        self.own(&dir);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
        dir
    }

    /// Writes `path` as this user's file with `mode`.
    pub fn write(&self, path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).expect("write");
        self.own(path);
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    pub fn own(&self, path: &Path) {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid)).expect("chown");
    }
}

impl Drop for LocalUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

/// Removes the users of earlier test runs that were killed before they could.
fn remove_stale_users() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        for name in passwd.lines().filter_map(|line| line.split(':').next()) {
            let Some(pid) = name
                .strip_prefix("bht")
                .and_then(|rest| rest.split('u').next())
                .and_then(|pid| pid.parse::<i32>().ok())
            else {
                continue;
            };
            // SAFETY: kill(2) with signal 0 only asks whether the process exists.
            if unsafe { libc::kill(pid, 0) } != 0 {
                let _ = Command::new("userdel").arg(name).output();
            }
        }
    });
}

/// A scratch directory that every user may enter (mode 0755, root's).
pub fn shared_scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}
