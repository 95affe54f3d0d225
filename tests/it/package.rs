//! The Debian package: `scripts/package` run on the test binary (once per test process), then
//! the package taken apart and checked (fields, paths, modes, conffile, stripped binary, units
//! verified by `systemd-analyze`), and the maintainer scripts run against a temporary root with
//! stand-ins for every command that would touch the system.

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::support::{BIN, mode, outcome};

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

/// The package's version as Debian spells it (a pre-release `-` becomes `~`).
fn deb_version() -> String {
    env!("CARGO_PKG_VERSION").replacen('-', "~", 1)
}

/// The package, built once for every test that takes it apart (a test process's scratch
/// directory holds it): with the quickest compression, the test binary being large and
/// unoptimised; its control area and its files unpacked; and the host's targets and slices
/// beside its units, which their default dependencies name.
struct Built {
    work: PathBuf,
    deb: PathBuf,
    /// What `scripts/package` printed.
    printed: String,
    /// `dpkg --print-architecture`.
    arch: String,
    /// The control area, unpacked.
    control: PathBuf,
    /// The files, unpacked.
    root: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(build)
}

fn build() -> Built {
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
    let work = crate::broker::scratch_dir("package");
    let out = work.join("out");
    let printed = run_ok(
        Command::new(repo().join("scripts/package"))
            .args(["--bin", BIN, "--out"])
            .arg(&out)
            .args(["--compress-level", "0"])
            .current_dir(&work),
    );
    let arch = run_ok(Command::new("dpkg").arg("--print-architecture"))
        .trim()
        .to_owned();
    let deb = out.join(format!("beskedhent_{}_{arch}.deb", deb_version()));
    let control = work.join("control");
    run_ok(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let root = work.join("root");
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
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
    Built {
        work,
        deb,
        printed,
        arch,
        control,
        root,
    }
}

impl Built {
    /// The packaged configuration template's text.
    fn template(&self) -> String {
        std::fs::read_to_string(self.root.join("usr/share/beskedhent/config.toml"))
            .expect("template")
    }
}

#[test]
fn the_package_script_prints_the_path_of_the_package_it_built() {
    let built = built();
    assert!(
        built.deb.is_file(),
        "no {}; printed:\n{}",
        built.deb.display(),
        built.printed
    );
    assert_eq!(
        built.printed.trim(),
        built.deb.to_str().expect("utf-8"),
        "the script prints the path"
    );
}

#[test]
fn the_control_fields_name_the_package_its_version_and_what_it_depends_on() {
    let built = built();
    let field = |name: &str| run_ok(Command::new("dpkg-deb").arg("-f").arg(&built.deb).arg(name));
    assert_eq!(field("Package").trim(), "beskedhent");
    assert_eq!(field("Version").trim(), deb_version());
    assert_eq!(field("Architecture").trim(), built.arch);
    assert_eq!(field("Section").trim(), "admin");
    let depends = field("Depends");
    assert!(depends.contains("libc6 (>= 2."), "{depends}");
    assert!(depends.contains("adduser"), "{depends}");
    let installed_size: u64 = field("Installed-Size")
        .trim()
        .parse()
        .expect("Installed-Size");
    assert!(installed_size > 0);
}

#[test]
fn every_entry_is_roots_with_its_mode_and_an_installation_has_every_path_it_needs() {
    let built = built();
    let listing = run_ok(Command::new("dpkg-deb").arg("-c").arg(&built.deb));
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
        "./usr/share/beskedhent/config.toml".to_string(),
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
}

#[test]
fn the_control_area_holds_no_conffile_and_the_maintainer_scripts_as_written() {
    let built = built();
    // The configuration is made by postinst and then the operator's: no upgrade asks about it.
    assert!(!built.control.join("conffiles").exists());
    assert!(!built.root.join("etc/beskedhent/config.toml").exists());
    // Executable, identical to packaging/debian/, and valid shell.
    for script in ["postinst", "prerm", "postrm"] {
        let path = built.control.join(script);
        assert_eq!(mode(&path), 0o755, "{script}");
        assert_eq!(
            std::fs::read(&path).expect("script"),
            std::fs::read(repo().join("packaging/debian").join(script)).expect("source"),
            "{script} differs from packaging/debian/{script}"
        );
        run_ok(Command::new("sh").arg("-n").arg(&path));
    }
}

#[test]
fn the_packaged_files_match_their_checksums() {
    let built = built();
    run_ok(
        Command::new("md5sum")
            .args(["--check", "--quiet"])
            .arg(built.control.join("md5sums"))
            .current_dir(&built.root),
    );
}

#[test]
fn the_packaged_binary_is_stripped_and_runs() {
    let binary = built().root.join("usr/bin/beskedhent");
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
}

#[test]
fn the_packaged_manual_page_is_a_manual_page() {
    let manual = run_ok(
        Command::new("gzip")
            .arg("-dc")
            .arg(built().root.join("usr/share/man/man1/beskedhent.1.gz")),
    );
    assert!(manual.contains(".TH beskedhent 1"), "{manual}");
}

#[test]
fn the_template_points_at_var_lib_beskedhent_parses_and_switches_on_no_example_identifiers() {
    let built = built();
    let text = built.template();
    assert!(
        text.starts_with("# The configuration of beskedhent"),
        "{text}"
    );
    // The example envelopes' registration identifiers are there commented out, never on.
    assert!(
        !text.lines().any(|line| line.starts_with("[types.")),
        "{text}"
    );
    assert!(
        text.contains("# [types.digitalpost_registration]"),
        "{text}"
    );
    assert!(text.contains("Beskedfordeler administration"), "{text}");
    let database_lines: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("database"))
        .collect();
    assert_eq!(
        database_lines,
        ["database = \"/var/lib/beskedhent/replica.db\""]
    );
    // `status` gets as far as the missing database.
    let status = Command::new(built.root.join("usr/bin/beskedhent"))
        .arg("--config")
        .arg(built.root.join("usr/share/beskedhent/config.toml"))
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
}

#[test]
fn the_shipped_examples_import_cleanly_under_the_shipped_configuration() {
    let built = built();
    let replica = built.work.join("replica.db");
    std::fs::write(
        built.work.join("config.toml"),
        built.template().replace(
            "database = \"/var/lib/beskedhent/replica.db\"",
            &format!("database = \"{}\"", replica.display()),
        ),
    )
    .expect("write config");
    let imported = run_ok(
        Command::new(built.root.join("usr/bin/beskedhent"))
            .arg("--config")
            .arg(built.work.join("config.toml"))
            .arg("import")
            .arg(
                built
                    .root
                    .join("usr/share/doc/beskedhent/examples/envelopes"),
            )
            .env("BESKEDHENT_LOG", "warn"),
    );
    assert!(imported.contains(" 0 rejected"), "{imported}");
}

#[test]
fn the_units_pass_systemd_analyze_verify_against_the_package() {
    // ExecStart= must exist in the unpacked package and Documentation=man:beskedhent(1) must
    // be found among its manual pages.
    let built = built();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", built.root.display()))
        .args(UNITS)
        .env("MANPATH", built.root.join("usr/share/man"))
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
}

#[test]
fn the_services_are_sandboxed_leaving_only_the_network_exposed() {
    // No core dumps, no view of other processes, no resource changes. What is left exposed
    // is the network, which pulling needs (1.7 before these settings).
    let built = built();
    for unit in ["beskedhent-sync.service", "beskedhent.service"] {
        let path = built.root.join("lib/systemd/system").join(unit);
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
            .arg(format!("--root={}", built.root.display()))
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
        // What dpkg has unpacked by the time postinst runs (the configuration's template), and
        // a running systemd.
        let root = sandbox.root();
        std::fs::create_dir_all(root.join("usr/share/beskedhent")).expect("mkdir");
        std::fs::write(
            root.join("usr/share/beskedhent/config.toml"),
            "database = \"x\"\n",
        )
        .expect("write template");
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

impl Sandbox {
    /// A sandbox after a first install (`postinst configure` with no version before).
    fn installed() -> Sandbox {
        let sandbox = Sandbox::new();
        sandbox.run("postinst", &["configure", ""]);
        sandbox
    }

    fn etc(&self) -> PathBuf {
        self.root().join("etc/beskedhent")
    }

    fn state(&self) -> PathBuf {
        self.root().join("var/lib/beskedhent")
    }
}

#[test]
fn a_first_install_makes_the_user_and_the_state_directory_and_starts_nothing() {
    let sandbox = Sandbox::new();
    let root_text = sandbox.root().display().to_string();
    // User, state directory, permissions, daemon-reload; nothing enabled or started; the
    // operator is told what to do.
    let (output, log) = sandbox.run("postinst", &["configure", ""]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = [
        "getent passwd beskedhent".to_string(),
        "adduser --system --group --home /var/lib/beskedhent --no-create-home --shell /usr/sbin/nologin --quiet beskedhent".to_string(),
        format!("chown beskedhent:beskedhent {root_text}/var/lib/beskedhent"),
        format!("chown beskedhent:beskedhent {root_text}/var/lib/beskedhent-metrics"),
        format!("chown root:beskedhent {root_text}/etc/beskedhent"),
        format!("chown root:beskedhent {root_text}/etc/beskedhent/config.toml"),
        "systemctl daemon-reload".to_string(),
    ];
    assert_eq!(log.lines().collect::<Vec<_>>(), expected, "{log}");
    assert_eq!(mode(&sandbox.state()), 0o700);
    assert_eq!(mode(&sandbox.etc()), 0o750);
    assert_eq!(mode(&sandbox.etc().join("config.toml")), 0o640);
    assert_eq!(
        mode(&sandbox.root().join("var/lib/beskedhent-metrics")),
        0o755
    );
    // Made from the template.
    assert_eq!(
        std::fs::read_to_string(sandbox.etc().join("config.toml")).expect("config"),
        "database = \"x\"\n"
    );
    for step in [
        "/etc/beskedhent/config.toml",
        "sudo -u beskedhent beskedhent --config /etc/beskedhent/config.toml check",
        "systemctl enable --now beskedhent-sync.timer",
    ] {
        assert!(stdout.contains(step), "{stdout}");
    }
}

#[test]
fn an_upgrade_keeps_the_operators_mode_and_restarts_only_a_running_daemon_quietly() {
    let sandbox = Sandbox::installed();
    let root_text = sandbox.root().display().to_string();
    let config = sandbox.etc().join("config.toml");
    // The user exists, the operator's mode on the config is kept, a running daemon is
    // restarted (a stopped one stays stopped), nothing is said.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (output, log) = sandbox.run("postinst", &["configure", "0.0.9"]);
    let expected = [
        "getent passwd beskedhent".to_string(),
        format!("chown beskedhent:beskedhent {root_text}/var/lib/beskedhent"),
        format!("chown beskedhent:beskedhent {root_text}/var/lib/beskedhent-metrics"),
        "systemctl daemon-reload".to_string(),
        "systemctl try-restart beskedhent.service".to_string(),
    ];
    // The operator's configuration stays as it is, whatever the template says now.
    std::fs::write(
        sandbox.root().join("usr/share/beskedhent/config.toml"),
        "database = \"new\"\n",
    )
    .expect("new template");
    assert_eq!(log.lines().collect::<Vec<_>>(), expected, "{log}");
    assert_eq!(mode(&config), 0o600);
    assert_eq!(
        std::fs::read_to_string(&config).expect("config"),
        "database = \"x\"\n"
    );
    assert!(output.stdout.is_empty(), "{output:?}");
}

#[test]
fn without_systemd_running_no_systemctl_is_called() {
    let sandbox = Sandbox::installed();
    std::fs::remove_dir_all(sandbox.root().join("run/systemd")).expect("rm");
    let (_, log) = sandbox.run("postinst", &["configure", "0.0.9"]);
    assert!(!log.contains("systemctl"), "{log}");
}

#[test]
fn removing_stops_the_timer_and_both_services_and_an_upgrade_stops_nothing() {
    let sandbox = Sandbox::installed();
    let (_, log) = sandbox.run("prerm", &["upgrade", "0.2.0"]);
    assert_eq!(log, "");
    let (_, log) = sandbox.run("prerm", &["remove"]);
    assert_eq!(
        log,
        "systemctl stop beskedhent-sync.timer beskedhent-sync.service beskedhent.service\n"
    );
    let (_, log) = sandbox.run("postrm", &["remove"]);
    assert_eq!(log, "systemctl daemon-reload\n");
}

#[test]
fn purging_twice_removes_the_configuration_and_the_enablement_and_keeps_the_replica() {
    let sandbox = Sandbox::installed();
    let (etc, state) = (sandbox.etc(), sandbox.state());
    // /etc/beskedhent and the enablement links go, the replica and the user stay.
    std::fs::write(etc.join("config.toml.dpkg-old"), "old").expect("write");
    std::fs::write(etc.join("client.key"), "key").expect("write");
    std::fs::write(state.join("replica.db"), "data").expect("write");
    let wants = sandbox
        .root()
        .join("etc/systemd/system/timers.target.wants");
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
}

#[test]
fn arguments_dpkg_may_pass_that_need_nothing_done_do_nothing() {
    let sandbox = Sandbox::installed();
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

/// The package installed on this machine for a test, purged again (with its user and state)
/// when dropped.
struct Installed;

impl Installed {
    /// Installs `deb` as an operator would, unattended: `apt-get install` with no terminal.
    fn apt_install(deb: &Path) -> Output {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .arg(deb)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run apt-get")
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "beskedhent"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null())
            .output();
        let _ = std::fs::remove_dir_all("/var/lib/beskedhent");
        let _ = Command::new("userdel").arg("beskedhent").output();
        let _ = Command::new("groupdel").arg("beskedhent").output();
    }
}

/// The built package again, as the next version with a template that differs (a new key
/// explained), as a later release would be.
fn next_version(built: &Built) -> PathBuf {
    let tree = built.work.join("next");
    let _ = std::fs::remove_dir_all(&tree);
    run_ok(
        Command::new("dpkg-deb")
            .arg("-R")
            .arg(&built.deb)
            .arg(&tree),
    );
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).expect("control");
    let version = deb_version();
    std::fs::write(
        &control,
        text.replace(
            &format!("Version: {version}\n"),
            &format!("Version: {version}+next1\n"),
        ),
    )
    .expect("control");
    let template = tree.join("usr/share/beskedhent/config.toml");
    let mut text = std::fs::read_to_string(&template).expect("template");
    text.push_str("\n# A key of the next release, explained here.\n");
    std::fs::write(&template, text).expect("template");
    let sums = run_ok(
        Command::new("md5sum")
            .arg("usr/share/beskedhent/config.toml")
            .current_dir(&tree),
    );
    let md5sums = tree.join("DEBIAN/md5sums");
    let lines: Vec<String> = std::fs::read_to_string(&md5sums)
        .expect("md5sums")
        .lines()
        .map(|line| {
            if line.ends_with(" usr/share/beskedhent/config.toml") {
                sums.trim().to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect();
    std::fs::write(&md5sums, lines.join("\n") + "\n").expect("md5sums");
    let deb = built
        .work
        .join(format!("beskedhent_{version}+next1_{}.deb", built.arch));
    run_ok(
        Command::new("dpkg-deb")
            .args(["-Zgzip", "-z0", "--root-owner-group", "-b"])
            .arg(&tree)
            .arg(&deb),
    );
    deb
}

#[test]
fn an_unattended_upgrade_never_asks_and_keeps_the_operators_configuration() {
    // SAFETY: geteuid(2) cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "installing the package needs root (CI runs as root)"
    );
    require("apt-get", "apt");
    let built = built();
    let next = next_version(built);
    let installed = Installed;
    let output = Installed::apt_install(&built.deb);
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 0, "first install:\n{stdout}{stderr}");
    let config = Path::new("/etc/beskedhent/config.toml");
    assert_eq!(mode(config), 0o640);
    assert!(Path::new("/var/lib/beskedhent-metrics").is_dir());
    // The operator's edits, as every operator makes them.
    let mut text = std::fs::read_to_string(config).expect("config");
    text = text.replace(
        "# [metrics]\n# textfile = \"/var/lib/beskedhent-metrics/beskedhent.prom\"",
        "[metrics]\ntextfile = \"/var/lib/beskedhent-metrics/beskedhent.prom\"",
    );
    text = text.replace("# max_message_bytes = 65536", "max_message_bytes = 70000");
    assert!(text.contains("\nmax_message_bytes = 70000"), "{text}");
    std::fs::write(config, &text).expect("edit");
    assert!(
        text.contains("\n[metrics]\n"),
        "the template names the metrics file"
    );
    // The next version, unattended: no question, exit 0, the edits in force.
    let output = Installed::apt_install(&next);
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 0, "upgrade:\n{stdout}{stderr}");
    assert!(!stderr.contains("conffile"), "{stderr}");
    assert_eq!(std::fs::read_to_string(config).expect("config"), text);
    assert!(
        std::fs::read_to_string("/usr/share/beskedhent/config.toml")
            .expect("template")
            .contains("A key of the next release")
    );
    let status = Command::new("runuser")
        .args(["-u", "beskedhent", "--", "/usr/bin/beskedhent", "--config"])
        .arg(config)
        .args(["init"])
        .current_dir("/")
        .output()
        .expect("init");
    let (code, stdout, stderr) = outcome(&status);
    assert_eq!(code, 0, "{stdout}{stderr}");
    drop(installed);
    assert!(!config.exists(), "purged");
}
