//! Another local user cannot steer beskedhent: not by a configuration, program, link, lock or
//! metrics file they planted or can change, nor by reading what it keeps private (its secrets,
//! a number given to `forget`, a backup's copy). Each case is made with throwaway users
//! (`support::LocalUser`), so these tests need root, as CI has.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    BIN, Install, LocalUser, failed_letter, mode, outcome, shared_scratch, signal, value,
};

/// Runs beskedhent with `args` in `cwd`, as `user` (root when `None`), without any
/// configuration named: it finds one the way an operator's shell would.
fn run_in(user: Option<&LocalUser>, cwd: &Path, args: &[&str]) -> Output {
    let mut command = match user {
        Some(user) => user.command(BIN),
        None => Command::new(BIN),
    };
    command
        .args(args)
        .current_dir(cwd)
        .env_remove("BESKEDHENT_CONFIG")
        .env("BESKEDHENT_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run beskedhent")
}

/// The service user's home in `scratch` (mode 0700), with its private configuration:
/// `database = "replica.db"` and `extra`.
fn service_home(service: &LocalUser, scratch: &Path, extra: &str) -> PathBuf {
    let home = service.dir(scratch, "service", 0o700);
    service.write(
        &home.join("config.toml"),
        &format!("database = \"replica.db\"\n{extra}"),
        0o600,
    );
    home
}

/// The attacker's directory `theirs` in `scratch`: a configuration that runs their program
/// (which makes `pwned` in `scratch`) and overwrites `root-only`, a file only root may write,
/// with a letter that would set it off. The configuration's text.
fn planted(attacker: &LocalUser, scratch: &Path) -> String {
    let theirs = attacker.dir(scratch, "theirs", 0o755);
    let target = scratch.join("root-only");
    std::fs::write(&target, "root's own").expect("write");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    attacker.write(
        &theirs.join("pwn.sh"),
        &format!("#!/bin/sh\ntouch {}\n", scratch.join("pwned").display()),
        0o755,
    );
    let planted = format!(
        "database = \"replica.db\"\n[notify]\ncommand = [\"{}\"]\noverdue_days = 0\n[metrics]\ntextfile = \"{}\"\n",
        theirs.join("pwn.sh").display(),
        target.display()
    );
    attacker.write(&theirs.join("config.toml"), &planted, 0o644);
    failed_letter(&theirs.join("in"), 0xe1, 1);
    planted
}

#[test]
fn a_configuration_another_user_planted_is_not_read_not_even_by_root() {
    let scratch = shared_scratch();
    let attacker = LocalUser::create();
    planted(&attacker, scratch.path());
    let theirs = scratch.path().join("theirs");
    for args in [&["notify"][..], &["import", "in"][..], &["init"][..]] {
        let (code, stdout, stderr) = outcome(&run_in(None, &theirs, args));
        assert_eq!(code, 1, "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!("belongs to user {}", attacker.name)),
            "{args:?}: {stderr}"
        );
    }
    assert!(
        !scratch.path().join("pwned").exists(),
        "the planted program ran"
    );
    assert_eq!(
        std::fs::read_to_string(scratch.path().join("root-only")).expect("read"),
        "root's own"
    );
    assert!(!theirs.join("replica.db").exists());
}

#[test]
fn a_configuration_planted_in_a_drop_folder_is_not_read_by_the_service_user() {
    let scratch = shared_scratch();
    let attacker = LocalUser::create();
    let service = LocalUser::create();
    let planted = planted(&attacker, scratch.path());
    // A drop folder that others can write.
    let drop = scratch.path().join("drop");
    std::fs::create_dir(&drop).expect("mkdir");
    std::fs::set_permissions(&drop, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    attacker.write(&drop.join("config.toml"), &planted, 0o644);
    let (code, _, stderr) = outcome(&run_in(Some(&service), &drop, &["import", "."]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("belongs to user"), "{stderr}");
    assert!(
        !scratch.path().join("pwned").exists(),
        "the planted program ran as the service user"
    );
}

#[test]
fn a_configuration_everyone_can_change_is_refused_and_a_private_one_is_read_and_named() {
    let scratch = shared_scratch();
    let service = LocalUser::create();
    // The service user's own configuration, but writable by everyone: refused.
    let own = service.dir(scratch.path(), "own", 0o700);
    service.write(
        &own.join("config.toml"),
        "database = \"replica.db\"\n",
        0o666,
    );
    let (code, _, stderr) = outcome(&run_in(Some(&service), &own, &["init"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("can be changed by every user"), "{stderr}");
    // Made private, it is read, and the run says which file it read.
    std::fs::set_permissions(
        own.join("config.toml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let (code, stdout, stderr) = outcome(&run_in(Some(&service), &own, &["init"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "configuration `{}`",
            own.join("config.toml").display()
        )),
        "{stderr}"
    );
    assert_eq!(
        std::fs::metadata(own.join("replica.db"))
            .expect("replica")
            .uid(),
        service.uid
    );
}

#[test]
fn a_notify_program_another_user_can_change_is_not_run() {
    let scratch = shared_scratch();
    let attacker = LocalUser::create();
    let theirs = attacker.dir(scratch.path(), "bin", 0o755);
    let marker = scratch.path().join("ran");
    attacker.write(
        &theirs.join("alert.sh"),
        &format!("#!/bin/sh\ncat >/dev/null\ntouch {}\n", marker.display()),
        0o755,
    );
    let install = Install::new(&format!(
        "[notify]\ncommand = [\"{}\"]\noverdue_days = 0\n",
        theirs.join("alert.sh").display()
    ));
    let dir = install.path("in");
    failed_letter(&dir, 0xe1, 2);
    let (code, stdout, stderr) = outcome(&install.import(&dir));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("cannot send any"), "{stdout}");
    assert!(!marker.exists(), "another user's program ran");
    let error: String = value(&install.db(), "SELECT last_error FROM notification");
    assert!(
        error.contains(&format!("belongs to user {}", attacker.name)),
        "{error}"
    );
    let (code, stdout, _) = outcome(&install.run(&["check"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL  `notify.command`"), "{stdout}");
}

#[test]
fn a_metrics_file_is_never_written_through_a_planted_link() {
    let scratch = shared_scratch();
    let attacker = LocalUser::create();
    let service = LocalUser::create();
    // The collector's directory, shared: anyone may add a file.
    let textfiles = scratch.path().join("textfiles");
    std::fs::create_dir(&textfiles).expect("mkdir");
    std::fs::set_permissions(&textfiles, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let home = service_home(
        &service,
        scratch.path(),
        &format!(
            "[metrics]\ntextfile = \"{}\"\n",
            textfiles.join("beskedhent.prom").display()
        ),
    );
    let inbox = service.dir(&home, "in", 0o755);
    for n in 1..=3 {
        failed_letter(&inbox, 0xe1, n);
        service.own(&inbox.join(format!("{n}.xml")));
    }
    let replica = home.join("replica.db");
    let (code, stdout, stderr) = outcome(&run_in(Some(&service), &home, &["init"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    // Links named for the next 2,000 process ids, as the old temporary name was, each to the
    // replica: the attacker's (made here, without spending process ids on it).
    let next: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .expect("last pid")
        .trim()
        .parse()
        .expect("pid");
    for pid in next + 1..=next + 2000 {
        let link = textfiles.join(format!(".beskedhent.prom.tmp-{pid}"));
        std::os::unix::fs::symlink(&replica, &link).expect("plant link");
        attacker.own(&link);
    }
    let (code, stdout, stderr) = outcome(&run_in(Some(&service), &home, &["import", "in"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let db = rusqlite::Connection::open(&replica).expect("replica");
    assert_eq!(value::<String>(&db, "PRAGMA integrity_check"), "ok");
    assert_eq!(value::<i64>(&db, "SELECT count(*) FROM message"), 3);
    let metrics = std::fs::read_to_string(textfiles.join("beskedhent.prom")).expect("metrics");
    assert!(metrics.contains("beskedhent_"), "{metrics}");
    let metadata = std::fs::symlink_metadata(textfiles.join("beskedhent.prom")).expect("meta");
    assert!(metadata.is_file());
    assert_eq!(metadata.uid(), service.uid);
    assert_eq!(mode(&textfiles.join("beskedhent.prom")), 0o644);
}

#[test]
fn a_lock_file_is_never_written_through_a_link() {
    // Root's own replica, with its import lock made a link to a file only root may write.
    let install = Install::new("");
    let (code, _, stderr) = outcome(&install.run(&["init"]));
    assert_eq!(code, 0, "{stderr}");
    let target = install.path("root-only");
    std::fs::write(&target, "untouched").expect("write");
    std::os::unix::fs::symlink(&target, install.path("replica.db-import.lock")).expect("link");
    let dir = install.path("in");
    failed_letter(&dir, 0xe1, 3);
    let (code, _, stderr) = outcome(&install.import(&dir));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is a symbolic link"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "untouched");
}

#[test]
fn a_lock_file_in_another_users_name_is_not_taken_over() {
    // The service user's replica with a lock another user (root, in an earlier run) left.
    let scratch = shared_scratch();
    let service = LocalUser::create();
    let home = service_home(&service, scratch.path(), "");
    let (code, _, stderr) = outcome(&run_in(Some(&service), &home, &["init"]));
    assert_eq!(code, 0, "{stderr}");
    std::fs::write(home.join("replica.db-import.lock"), "").expect("root's lock");
    let inbox = service.dir(&home, "in", 0o700);
    let (code, _, stderr) = outcome(&run_in(Some(&service), &home, &["import", "in"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("owned by user root"), "{stderr}");
    assert!(inbox.exists());
}

/// The names in `dir` and their owners, in name order.
fn owned_names(dir: &Path) -> Vec<(String, u32)> {
    let mut names: Vec<(String, u32)> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|entry| {
            let entry = entry.expect("entry");
            (
                entry.file_name().to_string_lossy().into_owned(),
                entry.metadata().expect("meta").uid(),
            )
        })
        .collect();
    names.sort();
    names
}

#[test]
fn root_never_touches_another_users_replica() {
    let scratch = shared_scratch();
    let service = LocalUser::create();
    let home = service.dir(scratch.path(), "service", 0o700);
    // Root's configuration, naming the service user's replica.
    let config = scratch.path().join("config.toml");
    std::fs::write(
        &config,
        format!("database = \"{}\"\n", home.join("replica.db").display()),
    )
    .expect("config");
    let command = |user: Option<&LocalUser>, args: &[&str]| {
        let mut command = user.map_or_else(|| Command::new(BIN), |user| user.command(BIN));
        command
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("BESKEDHENT_LOG", "warn");
        outcome(&command.output().expect("run"))
    };
    let hint = format!("runuser -u {} --", service.name);
    // Not even created by root.
    let (code, _, stderr) = command(None, &["init"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&hint), "{stderr}");
    assert!(std::fs::read_dir(&home).expect("home").next().is_none());
    // Created by its user, then left alone by root, reading included (a reader would leave a
    // root-owned `-shm`).
    let (code, _, stderr) = command(Some(&service), &["init"]);
    assert_eq!(code, 0, "{stderr}");
    let inbox = scratch.path().join("in");
    failed_letter(&inbox, 0xe1, 4);
    let backup = scratch.path().join("copy.db");
    let before = owned_names(&home);
    for args in [
        &["init"][..],
        &["import", inbox.to_str().expect("utf-8")][..],
        &["status"][..],
        &["letters"][..],
        &["backup", backup.to_str().expect("utf-8")][..],
        &["prune"][..],
    ] {
        let (code, _, stderr) = command(None, args);
        assert_ne!(code, 0, "{args:?}");
        if args != ["prune"] {
            assert!(stderr.contains(&hint), "{args:?}: {stderr}");
        }
    }
    assert_eq!(
        owned_names(&home),
        before,
        "root left files in the service's directory"
    );
    assert!(!backup.exists());
}

#[test]
fn root_importing_from_a_tree_another_user_can_write_follows_no_link_they_made() {
    let scratch = shared_scratch();
    let service = LocalUser::create();
    // A link the service user made to a file only root may read.
    let tree = service.dir(scratch.path(), "tree", 0o755);
    let secret = scratch.path().join("secret");
    std::fs::write(&secret, "root's secret 2512489996").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let linked = service
        .command("ln")
        .arg("-s")
        .arg(&secret)
        .arg(tree.join("letter.xml"))
        .output()
        .expect("ln");
    assert!(linked.status.success());
    let install = Install::new("");
    let (code, _, stderr) = outcome(&install.import(&tree));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not followed"), "{stderr}");
    assert_eq!(
        value::<i64>(&install.db(), "SELECT count(*) FROM rejected"),
        0
    );
}

/// The working directories of backups left in `dir`.
fn work_directories(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with('.') && name.contains(".backup-"))
        })
        .collect()
}

/// A replica of about 100 MB: large enough that a backup takes a while.
fn large_replica() -> Install {
    let install = Install::new("");
    let (code, _, stderr) = outcome(&install.run(&["init"]));
    assert_eq!(code, 0, "{stderr}");
    install
        .db()
        .execute_batch(
            "CREATE TABLE padding (bytes BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
             INSERT INTO padding SELECT randomblob(1000000) FROM n;",
        )
        .expect("padding");
    install
}

/// A backup of `install` into `name` beside it, stopped by `signal` once its working
/// directory shows (or when it ends first). While it works, its copy is in a directory nobody
/// else may enter, which `other` cannot read. Its exit code and the working directories left.
fn interrupted_backup(
    install: &Install,
    other: &LocalUser,
    name: &str,
    sent: libc::c_int,
) -> (Option<i32>, Vec<PathBuf>) {
    let dir = install.dir.path();
    let mut child = install
        .command(["backup", dir.join(name).to_str().expect("utf-8")])
        .env("BESKEDHENT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("backup");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while seen.is_empty() && Instant::now() < deadline {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        seen = work_directories(dir);
    }
    for work in &seen {
        assert_eq!(mode(work), 0o700, "{}", work.display());
        let read = other
            .command("cat")
            .arg(work.join("copy.db"))
            .output()
            .expect("cat");
        assert!(!read.status.success(), "another user read the partial copy");
    }
    signal(&child, sent);
    let status = child.wait().expect("wait");
    (status.code(), work_directories(dir))
}

#[test]
fn a_backup_stopped_by_sigterm_removes_its_partial_copy_on_the_way_out() {
    let install = large_replica();
    let other = LocalUser::create();
    let (code, left) = interrupted_backup(&install, &other, "backup-term.db", libc::SIGTERM);
    assert!(left.is_empty(), "{left:?}");
    assert!(matches!(code, Some(130) | Some(0)), "{code:?}");
    if code == Some(130) {
        assert!(!install.path("backup-term.db").exists());
    }
}

#[test]
fn a_killed_backup_leaves_no_copy_anyone_else_can_read() {
    let install = large_replica();
    let other = LocalUser::create();
    // SIGKILL: whatever is left is private, is named by `forget` and is removed by the next
    // backup.
    let (_, left) = interrupted_backup(&install, &other, "backup-kill.db", libc::SIGKILL);
    for work in &left {
        assert_eq!(mode(work), 0o700);
    }
    let (code, stdout, stderr) = outcome(&install.run_with_input(&["forget"], b"2512489996\n"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    for work in &left {
        assert!(
            stdout.contains(&work.display().to_string()),
            "{}: {stdout}",
            work.display()
        );
    }
    let next = install.path("backup-next.db");
    let (code, stdout, stderr) = outcome(&install.run(&["backup", next.to_str().expect("utf-8")]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(work_directories(install.dir.path()).is_empty());
    // The copies beside the replica are named by `forget`: this one too.
    std::fs::write(install.path("numbers"), "# one a line\n2512489996\n").expect("numbers");
    let (code, stdout, stderr) = outcome(&install.run(&[
        "forget",
        "--from",
        install.path("numbers").to_str().expect("utf-8"),
    ]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(&next.display().to_string()), "{stdout}");
}

#[test]
fn forget_takes_numbers_where_other_users_cannot_see_them() {
    let install = Install::new("");
    let (code, _, stderr) = outcome(&install.run(&["init"]));
    assert_eq!(code, 0, "{stderr}");
    let other = LocalUser::create();
    let mut child = install
        .command(["forget"])
        .env("BESKEDHENT_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("forget");
    // While it waits for the number, another user looks at its command line.
    std::thread::sleep(Duration::from_millis(300));
    let seen = other
        .command("cat")
        .arg(format!("/proc/{}/cmdline", child.id()))
        .output()
        .expect("cat");
    let seen = String::from_utf8_lossy(&seen.stdout).replace('\0', " ");
    assert!(seen.contains("forget"), "{seen}");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"251248-9996\n").expect("write");
    }
    let (code, stdout, stderr) = outcome(&child.wait_with_output().expect("wait"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("names 251248****"), "{stdout}");
    assert!(!seen.contains("9996"), "{seen}");
    // On the command line it still works, with a warning that says why not to.
    let (code, stdout, stderr) = outcome(&install.run(&["forget", "2512489996"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("can be seen by every user"), "{stderr}");
    // Nothing on its input: nothing is erased, and it says so.
    let (code, _, stderr) = outcome(&install.run_with_input(&["forget"], b""));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no CPR or CVR number was given"),
        "{stderr}"
    );
}

#[test]
fn the_notify_command_cannot_read_beskedhents_secrets() {
    let scratch = shared_scratch();
    let service = LocalUser::create();
    let home = service.dir(scratch.path(), "service", 0o700);
    // The command tries the parent's environment, as any process of the same user could.
    service.write(
        &home.join("alert.sh"),
        "#!/bin/sh\ncat >/dev/null\ncat /proc/$PPID/environ > \"$(dirname \"$0\")/leak\" 2>&1\nexit 0\n",
        0o755,
    );
    service.write(
        &home.join("config.toml"),
        &format!(
            "database = \"replica.db\"\n[notify]\ncommand = [\"{}\"]\noverdue_days = 0\n",
            home.join("alert.sh").display()
        ),
        0o600,
    );
    let inbox = service.dir(&home, "in", 0o700);
    failed_letter(&inbox, 0xe1, 5);
    service.own(&inbox.join("5.xml"));
    let output = service
        .command(BIN)
        .arg("import")
        .arg("in")
        .current_dir(&home)
        .env("BESKEDHENT_PKCS12_PASSWORD", "p12-secret-value")
        .env("BESKEDHENT_LOG", "warn")
        .output()
        .expect("import");
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("1 sent"), "{stdout}");
    let leak = std::fs::read(home.join("leak")).expect("the command ran");
    assert!(
        !String::from_utf8_lossy(&leak).contains("p12-secret-value"),
        "the command read the secret from its parent"
    );
}

/// Gives `user` the permissions `perm` (4 read, 2 write) on `path` through a POSIX ACL, as
/// `setfacl -m u:USER:PERM` would.
fn grant_acl(path: &Path, user: &LocalUser, perm: u16) {
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, u32::MAX),
        (0x02, perm, user.uid),
        (0x04, 4, u32::MAX),
        (0x10, 7, u32::MAX),
        (0x20, 4, u32::MAX),
    ] {
        acl.extend(tag.to_le_bytes());
        acl.extend(perm.to_le_bytes());
        acl.extend(id.to_le_bytes());
    }
    let name = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: setxattr(2) with NUL-terminated strings and a buffer of the given length.
    let set = unsafe {
        libc::setxattr(
            name.as_ptr(),
            c"system.posix_acl_access".as_ptr(),
            acl.as_ptr().cast(),
            acl.len(),
            0,
        )
    };
    assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
}

#[test]
fn a_notify_program_reached_through_another_users_link_is_not_run() {
    let scratch = shared_scratch();
    let attacker = LocalUser::create();
    // A directory everyone may write, without the sticky bit: the program named there is the
    // attacker's link to a shell.
    let open = scratch.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let link = open.join("alert.sh");
    std::os::unix::fs::symlink("/bin/sh", &link).expect("link");
    attacker.own(&link);
    let install = Install::new(&format!(
        "[notify]\ncommand = [\"{}\"]\noverdue_days = 0\n",
        link.display()
    ));
    let (code, stdout, _) = outcome(&install.run(&["check"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL  `notify.command`"), "{stdout}");
    assert!(stdout.contains("can be changed by every user"), "{stdout}");
    // In a sticky directory the directory is fine, but the link is another user's.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let (code, stdout, _) = outcome(&install.run(&["check"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!("belongs to user {}", attacker.name)),
        "{stdout}"
    );
    // Root's own link there is followed.
    std::os::unix::fs::lchown(&link, Some(0), Some(0)).expect("chown");
    let (_, stdout, _) = outcome(&install.run(&["check"]));
    assert!(
        stdout.contains("ok    notifications can be sent"),
        "{stdout}"
    );
}

#[test]
fn what_an_acl_or_a_shared_primary_group_lets_others_change_is_refused() {
    let scratch = shared_scratch();
    let attacker = LocalUser::create();
    let service = LocalUser::create();
    let home = service.dir(scratch.path(), "service", 0o700);
    let config = home.join("config.toml");
    service.write(&config, "database = \"replica.db\"\n", 0o600);
    grant_acl(&config, &attacker, 6);
    let (code, _, stderr) = outcome(&run_in(Some(&service), &home, &["init"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("can be changed by user {} (ACL)", attacker.name)),
        "{stderr}"
    );
    // Without the ACL, but group-writable by the service's own group, which another user has
    // as their primary group.
    std::fs::remove_file(&config).expect("rm");
    service.write(&config, "database = \"replica.db\"\n", 0o660);
    let (code, stdout, stderr) = outcome(&run_in(Some(&service), &home, &["init"]));
    assert_eq!(code, 0, "the service's private group: {stdout}{stderr}");
    let made = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "-g",
        ])
        .arg(&service.name)
        .arg(format!("{}g", service.name))
        .output()
        .expect("useradd");
    assert!(made.status.success(), "{}", outcome(&made).2);
    let (code, _, stderr) = outcome(&run_in(Some(&service), &home, &["init"]));
    let _ = Command::new("userdel")
        .arg(format!("{}g", service.name))
        .output();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("can be changed by group {}", service.name)),
        "{stderr}"
    );
}

#[test]
fn a_configuration_reached_through_a_link_reads_its_files_beside_itself() {
    let scratch = shared_scratch();
    let attacker = LocalUser::create();
    // Root's configuration, with a relative database path.
    let root_dir = scratch.path().join("root");
    std::fs::create_dir(&root_dir).expect("mkdir");
    std::fs::write(root_dir.join("config.toml"), "database = \"replica.db\"\n").expect("write");
    // The attacker's directory, with a link to it.
    let theirs = attacker.dir(scratch.path(), "theirs", 0o777);
    let link = theirs.join("config.toml");
    std::os::unix::fs::symlink(root_dir.join("config.toml"), &link).expect("link");
    attacker.own(&link);
    let (code, stdout, stderr) = outcome(&run_in(None, &theirs, &["init"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(root_dir.join("replica.db").exists());
    assert!(!theirs.join("replica.db").exists());
    // A link to nowhere says so.
    std::fs::remove_file(&link).expect("rm");
    std::os::unix::fs::symlink(scratch.path().join("missing.toml"), &link).expect("link");
    let (code, _, stderr) = outcome(&run_in(None, &theirs, &["status"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is a symbolic link to"), "{stderr}");
}

#[test]
fn a_metrics_file_named_as_the_replica_is_refused_when_the_configuration_is_read() {
    let install = Install::new("[metrics]\ntextfile = \"replica.db\"\n");
    let (code, _, stderr) = outcome(&install.run(&["init"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("is the replica or one of its own files"),
        "{stderr}"
    );
}

#[test]
fn a_file_another_user_holds_in_a_shared_directory_is_not_replaced_or_written_into() {
    let scratch = shared_scratch();
    let attacker = LocalUser::create();
    // A metrics file name another user holds in a shared directory: not replaced.
    let shared = scratch.path().join("textfiles");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    attacker.write(&shared.join("beskedhent.prom"), "theirs", 0o644);
    let install = Install::new(&format!(
        "[metrics]\ntextfile = \"{}\"\n",
        shared.join("beskedhent.prom").display()
    ));
    let dir = install.path("in");
    failed_letter(&dir, 0xe1, 6);
    let (_, stdout, _) = outcome(&install.import(&dir));
    assert!(
        stdout.contains(&format!("a file of user {}", attacker.name)),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(shared.join("beskedhent.prom")).expect("read"),
        "theirs"
    );
    // A backup into a directory others may write (no sticky bit): refused.
    let open = scratch.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let (code, _, stderr) =
        outcome(&install.run(&["backup", open.join("copy.db").to_str().expect("utf-8")]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("can be written by every user"), "{stderr}");
}

#[test]
fn the_packagers_assets_replace_a_planted_link_rather_than_write_through_it() {
    let scratch = shared_scratch();
    let target = scratch.path().join("victim");
    std::fs::write(&target, "untouched").expect("write");
    let assets = scratch.path().join("assets");
    std::fs::create_dir(&assets).expect("mkdir");
    std::os::unix::fs::symlink(&target, assets.join("beskedhent.fish")).expect("link");
    let output = Command::new(BIN)
        .arg("generate-assets")
        .arg(&assets)
        .output()
        .expect("assets");
    assert!(output.status.success(), "{}", outcome(&output).2);
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "untouched");
    assert!(
        std::fs::symlink_metadata(assets.join("beskedhent.fish"))
            .expect("fish")
            .is_file()
    );
}
