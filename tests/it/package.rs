//! The Debian package: `scripts/package` run on the test binary, then the package taken apart
//! and checked (fields, paths, modes, conffile, stripped binary, units verified by
//! `systemd-analyze`), and the maintainer scripts run against a temporary root with stand-ins
//! for every command that would touch the system.

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{BIN, outcome};

const UNITS: [&str; 3] = [
    "beskedhent-sync.service",
    "beskedhent-sync.timer",
    "beskedhent.service",
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Fails the test, saying which Debian package to install, if `tool` is not on the PATH.
fn require(tool: &str, package: &str) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| dir.join(tool).is_file());
    assert!(
        found,
        "`{tool}` not found on the PATH: the package tests need it; install the Debian package `{package}`"
    );
}

/// Runs `command`, expects exit 0, returns standard output.
fn run_ok(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{command:?}: {error}"));
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 0, "{command:?}\n{stdout}{stderr}");
    stdout
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The package's version as Debian spells it (a pre-release `-` becomes `~`).
fn deb_version() -> String {
    env!("CARGO_PKG_VERSION").replacen('-', "~", 1)
}

#[test]
fn package_holds_what_an_installation_needs() {
    for (tool, package) in [
        ("dpkg", "dpkg"),
        ("dpkg-deb", "dpkg"),
        ("strip", "binutils"),
        ("readelf", "binutils"),
        ("objdump", "binutils"),
        ("gzip", "gzip"),
        ("md5sum", "coreutils"),
        ("systemd-analyze", "systemd"),
    ] {
        require(tool, package);
    }
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("out");

    // Built with the quickest compression: the test binary is large and unoptimised.
    let printed = run_ok(
        Command::new(repo().join("scripts/package"))
            .args(["--bin", BIN, "--out"])
            .arg(&out)
            .args(["--compress-level", "0"])
            .current_dir(work.path()),
    );
    let arch = run_ok(Command::new("dpkg").arg("--print-architecture"));
    let deb = out.join(format!("beskedhent_{}_{}.deb", deb_version(), arch.trim()));
    assert!(deb.is_file(), "no {}; printed:\n{printed}", deb.display());
    assert_eq!(
        printed.trim(),
        deb.to_str().expect("utf-8"),
        "the script prints the path"
    );

    // Control fields.
    let field = |name: &str| run_ok(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name));
    assert_eq!(field("Package").trim(), "beskedhent");
    assert_eq!(field("Version").trim(), deb_version());
    assert_eq!(field("Architecture").trim(), arch.trim());
    assert_eq!(field("Section").trim(), "admin");
    let depends = field("Depends");
    assert!(depends.contains("libc6 (>= 2."), "{depends}");
    assert!(depends.contains("adduser"), "{depends}");
    let installed_size: u64 = field("Installed-Size")
        .trim()
        .parse()
        .expect("Installed-Size");
    assert!(installed_size > 0);

    // Contents: owner and mode of every entry, and the paths an installation needs.
    let listing = run_ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let mut entries = BTreeMap::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 6, "unexpected entry (a link?): {line}");
        assert_eq!(fields[1], "root/root", "{line}");
        entries.insert(fields[5].to_string(), fields[0].to_string());
    }
    for (path, perms) in &entries {
        let expected = if path.ends_with('/') {
            "drwxr-xr-x"
        } else if path == "./usr/bin/beskedhent" {
            "-rwxr-xr-x"
        } else {
            "-rw-r--r--"
        };
        assert_eq!(perms, expected, "{path}");
    }
    let mut expected = vec![
        "./usr/bin/beskedhent".to_string(),
        "./etc/beskedhent/config.toml".to_string(),
        "./usr/share/man/man1/beskedhent.1.gz".to_string(),
        "./usr/share/man/man1/beskedhent-sync.1.gz".to_string(),
        "./usr/share/bash-completion/completions/beskedhent".to_string(),
        "./usr/share/zsh/vendor-completions/_beskedhent".to_string(),
        "./usr/share/fish/vendor_completions.d/beskedhent.fish".to_string(),
        "./usr/share/doc/beskedhent/copyright".to_string(),
        "./usr/share/doc/beskedhent/README.md.gz".to_string(),
        "./usr/share/doc/beskedhent/changelog.gz".to_string(),
        "./usr/share/doc/beskedhent/docs/configuration.md.gz".to_string(),
        "./usr/share/doc/beskedhent/docs/operations.md.gz".to_string(),
        "./usr/share/doc/beskedhent/docs/replica.md.gz".to_string(),
    ];
    expected.extend(
        UNITS
            .iter()
            .map(|unit| format!("./lib/systemd/system/{unit}")),
    );
    for path in &expected {
        assert!(
            entries.contains_key(path),
            "{path} missing from:\n{listing}"
        );
    }

    // Control area: the conffile, executable maintainer scripts identical to packaging/debian/.
    let control = work.path().join("control");
    run_ok(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).expect("conffiles");
    assert_eq!(conffiles, "/etc/beskedhent/config.toml\n");
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.join(script);
        assert_eq!(mode(&path), 0o755, "{script}");
        assert_eq!(
            std::fs::read(&path).expect("script"),
            std::fs::read(repo().join("packaging/debian").join(script)).expect("source"),
            "{script} differs from packaging/debian/{script}"
        );
        run_ok(Command::new("sh").arg("-n").arg(&path));
    }

    // The files themselves.
    let root = work.path().join("root");
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    run_ok(
        Command::new("md5sum")
            .args(["--check", "--quiet"])
            .arg(control.join("md5sums"))
            .current_dir(&root),
    );

    let binary = root.join("usr/bin/beskedhent");
    let sections = run_ok(Command::new("readelf").arg("-S").arg(&binary));
    assert!(!sections.contains(".symtab"), "not stripped:\n{sections}");
    assert!(
        std::fs::metadata(&binary).expect("binary").len()
            < std::fs::metadata(BIN).expect("test binary").len(),
        "the packaged binary is not smaller than the test binary"
    );
    let version = run_ok(Command::new(&binary).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("beskedhent {}", env!("CARGO_PKG_VERSION"))
    );

    let manual = run_ok(
        Command::new("gzip")
            .arg("-dc")
            .arg(root.join("usr/share/man/man1/beskedhent.1.gz")),
    );
    assert!(manual.contains(".TH beskedhent 1"), "{manual}");

    // The conffile points at /var/lib/beskedhent and parses: `status` gets as far as the
    // missing database.
    let config = root.join("etc/beskedhent/config.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(
        text.starts_with("# The packaged configuration of beskedhent"),
        "{text}"
    );
    let database_lines: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("database"))
        .collect();
    assert_eq!(
        database_lines,
        ["database = \"/var/lib/beskedhent/replica.db\""]
    );
    let status = Command::new(&binary)
        .arg("--config")
        .arg(&config)
        .arg("status")
        .env("BESKEDHENT_LOG", "warn")
        .output()
        .expect("run status");
    let (code, stdout, stderr) = outcome(&status);
    assert_eq!(code, 1, "{stdout}{stderr}");
    // Not there on a machine without the package installed; another user's where it is.
    assert!(
        stderr.contains("/var/lib/beskedhent/replica.db")
            && (stderr.contains("does not exist") || stderr.contains("belongs to user")),
        "{stderr}"
    );
    assert!(!stderr.contains("invalid configuration"), "{stderr}");

    // The shipped examples import cleanly under the shipped configuration's [types].
    let replica = work.path().join("replica.db");
    std::fs::write(
        work.path().join("config.toml"),
        text.replace(
            "database = \"/var/lib/beskedhent/replica.db\"",
            &format!("database = \"{}\"", replica.display()),
        ),
    )
    .expect("write config");
    let imported = run_ok(
        Command::new(&binary)
            .arg("--config")
            .arg(work.path().join("config.toml"))
            .arg("import")
            .arg(root.join("usr/share/doc/beskedhent/examples/envelopes"))
            .env("BESKEDHENT_LOG", "warn"),
    );
    assert!(imported.contains(" 0 rejected"), "{imported}");

    // The units, verified against the unpacked package: ExecStart= must exist there and
    // Documentation=man:beskedhent(1) must be found among its manual pages. The root gets the
    // host's targets and slices, which the units' default dependencies name.
    let host_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(PathBuf::from)
        .find(|dir| dir.join("sysinit.target").is_file())
        .expect("no sysinit.target on this machine: install the Debian package systemd");
    let system = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&system).expect("mkdir");
    for entry in std::fs::read_dir(&host_units).expect("host units") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_str().unwrap_or_default();
        if (name.ends_with(".target") || name.ends_with(".slice")) && path.is_file() {
            std::fs::copy(&path, system.join(name)).expect("copy unit");
        }
    }
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .args(UNITS)
        .env("MANPATH", root.join("usr/share/man"))
        .output()
        .expect("run systemd-analyze");
    let (code, stdout, stderr) = outcome(&verify);
    assert_eq!(code, 0, "systemd-analyze verify:\n{stdout}{stderr}");
    // Unknown keys and values are only warnings: any word about our units fails the test.
    let said = format!("{stdout}{stderr}");
    assert!(
        !said.contains("beskedhent"),
        "systemd-analyze verify:\n{said}"
    );

    // The sandbox: no core dumps, no view of other processes, no resource changes. What is
    // left exposed is the network, which pulling needs (1.7 before these settings).
    for unit in ["beskedhent-sync.service", "beskedhent.service"] {
        let path = root.join("lib/systemd/system").join(unit);
        let text = std::fs::read_to_string(&path).expect("unit");
        for setting in [
            "LimitCORE=0",
            "ProtectProc=invisible",
            "ProcSubset=pid",
            "RemoveIPC=true",
            "SystemCallErrorNumber=EPERM",
        ] {
            assert!(
                text.lines().any(|line| line == setting),
                "{unit}: {setting}"
            );
        }
        let security = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(format!("--root={}", root.display()))
            .arg(format!("/lib/systemd/system/{unit}"))
            .output()
            .expect("run systemd-analyze security");
        let said = String::from_utf8_lossy(&security.stdout).into_owned()
            + &String::from_utf8_lossy(&security.stderr);
        let exposure: f64 = said
            .lines()
            .find_map(|line| line.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|level| level.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in:\n{said}"));
        assert!(exposure <= 1.1, "{unit}: exposure {exposure}:\n{said}");
    }
}

/// A temporary root for the maintainer scripts ($DPKG_ROOT) and a directory of stand-ins that
/// log their arguments, first on the PATH.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let sandbox = Sandbox { dir };
        let stubs = sandbox.path("stubs");
        std::fs::create_dir_all(&stubs).expect("mkdir");
        // getent knows the user once adduser has made it.
        let getent = "#!/bin/sh\necho \"getent $*\" >>\"$STUB_LOG\"\n\
                      if [ -e \"$STUB_LOG.user\" ]; then echo 'beskedhent:x:999:999::/var/lib/beskedhent:/usr/sbin/nologin'; exit 0; fi\n\
                      exit 2\n";
        let adduser = "#!/bin/sh\necho \"adduser $*\" >>\"$STUB_LOG\"\ntouch \"$STUB_LOG.user\"\n";
        let log_only = "#!/bin/sh\necho \"$(basename \"$0\") $*\" >>\"$STUB_LOG\"\n";
        let mut scripts = vec![("getent", getent), ("adduser", adduser)];
        for name in [
            "addgroup",
            "useradd",
            "groupadd",
            "deluser",
            "delgroup",
            "userdel",
            "groupdel",
            "chown",
            "chgrp",
            "systemctl",
            "deb-systemd-helper",
            "deb-systemd-invoke",
            "dpkg-statoverride",
        ] {
            scripts.push((name, log_only));
        }
        for (name, text) in scripts {
            let path = stubs.join(name);
            std::fs::write(&path, text).expect("write stub");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .expect("chmod stub");
        }
        // What dpkg has unpacked by the time postinst runs, and a running systemd.
        let root = sandbox.root();
        std::fs::create_dir_all(root.join("etc/beskedhent")).expect("mkdir");
        std::fs::write(
            root.join("etc/beskedhent/config.toml"),
            "database = \"x\"\n",
        )
        .expect("write config");
        std::fs::set_permissions(
            root.join("etc/beskedhent/config.toml"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        std::fs::create_dir_all(root.join("run/systemd/system")).expect("mkdir");
        std::fs::write(sandbox.log(), "").expect("write log");
        sandbox
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn root(&self) -> PathBuf {
        self.path("root")
    }

    fn log(&self) -> PathBuf {
        self.path("log")
    }

    /// Runs packaging/debian/`script` with `args`; returns its output and the stand-ins' log
    /// of this run.
    fn run(&self, script: &str, args: &[&str]) -> (Output, String) {
        std::fs::write(self.log(), "").expect("clear log");
        let path = format!(
            "{}:{}",
            self.path("stubs").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let output = Command::new(repo().join("packaging/debian").join(script))
            .args(args)
            .env("DPKG_ROOT", self.root())
            .env("STUB_LOG", self.log())
            .env("PATH", path)
            .output()
            .expect("run maintainer script");
        let (code, stdout, stderr) = outcome(&output);
        assert_eq!(code, 0, "{script} {args:?}:\n{stdout}{stderr}");
        let log = std::fs::read_to_string(self.log()).expect("read log");
        (output, log)
    }
}

#[test]
fn maintainer_scripts_set_up_and_clean_up_without_starting_anything() {
    let sandbox = Sandbox::new();
    let root = sandbox.root();
    let etc = root.join("etc/beskedhent");
    let config = etc.join("config.toml");
    let state = root.join("var/lib/beskedhent");
    let root_text = root.display().to_string();

    // First install: user, state directory, permissions, daemon-reload; nothing enabled or
    // started; the operator is told what to do.
    let (output, log) = sandbox.run("postinst", &["configure", ""]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = [
        "getent passwd beskedhent".to_string(),
        "adduser --system --group --home /var/lib/beskedhent --no-create-home --shell /usr/sbin/nologin --quiet beskedhent".to_string(),
        format!("chown beskedhent:beskedhent {root_text}/var/lib/beskedhent"),
        format!("chown root:beskedhent {root_text}/etc/beskedhent"),
        format!("chown root:beskedhent {root_text}/etc/beskedhent/config.toml"),
        "systemctl daemon-reload".to_string(),
    ];
    assert_eq!(log.lines().collect::<Vec<_>>(), expected, "{log}");
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&etc), 0o750);
    assert_eq!(mode(&config), 0o640);
    for step in [
        "/etc/beskedhent/config.toml",
        "sudo -u beskedhent beskedhent --config /etc/beskedhent/config.toml check",
        "systemctl enable --now beskedhent-sync.timer",
    ] {
        assert!(stdout.contains(step), "{stdout}");
    }

    // Upgrade: the user exists, the operator's mode on the config is kept, a running daemon
    // is restarted (a stopped one stays stopped), nothing is said.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (output, log) = sandbox.run("postinst", &["configure", "0.0.9"]);
    let expected = [
        "getent passwd beskedhent".to_string(),
        format!("chown beskedhent:beskedhent {root_text}/var/lib/beskedhent"),
        format!("chown root:beskedhent {root_text}/etc/beskedhent"),
        "systemctl daemon-reload".to_string(),
        "systemctl try-restart beskedhent.service".to_string(),
    ];
    assert_eq!(log.lines().collect::<Vec<_>>(), expected, "{log}");
    assert_eq!(mode(&config), 0o600);
    assert!(output.stdout.is_empty(), "{output:?}");

    // Without systemd running, no systemctl at all.
    std::fs::remove_dir_all(root.join("run/systemd")).expect("rm");
    let (_, log) = sandbox.run("postinst", &["configure", "0.0.9"]);
    assert!(!log.contains("systemctl"), "{log}");
    std::fs::create_dir_all(root.join("run/systemd/system")).expect("mkdir");

    // Remove: the timer and both services stopped; upgrade stops nothing.
    let (_, log) = sandbox.run("prerm", &["upgrade", "0.2.0"]);
    assert_eq!(log, "");
    let (_, log) = sandbox.run("prerm", &["remove"]);
    assert_eq!(
        log,
        "systemctl stop beskedhent-sync.timer beskedhent-sync.service beskedhent.service\n"
    );
    let (_, log) = sandbox.run("postrm", &["remove"]);
    assert_eq!(log, "systemctl daemon-reload\n");

    // Purge, twice: /etc/beskedhent and the enablement links go, the replica and the user stay.
    std::fs::write(etc.join("config.toml.dpkg-old"), "old").expect("write");
    std::fs::write(etc.join("client.key"), "key").expect("write");
    std::fs::write(state.join("replica.db"), "data").expect("write");
    let wants = root.join("etc/systemd/system/timers.target.wants");
    std::fs::create_dir_all(&wants).expect("mkdir");
    symlink(
        "/lib/systemd/system/beskedhent-sync.timer",
        wants.join("beskedhent-sync.timer"),
    )
    .expect("symlink");
    for _ in 0..2 {
        let (output, log) = sandbox.run("postrm", &["purge"]);
        assert_eq!(log, "systemctl daemon-reload\n");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("kept /var/lib/beskedhent"), "{stdout}");
        assert!(!etc.exists());
        assert!(
            std::fs::symlink_metadata(wants.join("beskedhent-sync.timer")).is_err(),
            "enablement link left"
        );
        assert_eq!(
            std::fs::read_to_string(state.join("replica.db")).expect("replica kept"),
            "data"
        );
    }

    // Arguments dpkg may pass that need nothing done.
    for (script, args) in [
        ("postinst", &["abort-upgrade", "0.2.0"][..]),
        ("prerm", &["failed-upgrade", "0.2.0"][..]),
        ("postrm", &["abort-install"][..]),
        ("postrm", &["upgrade", "0.2.0"][..]),
    ] {
        let (_, log) = sandbox.run(script, args);
        assert_eq!(log, "", "{script} {args:?}");
    }
}
