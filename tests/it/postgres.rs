//! A throwaway PostgreSQL server for the mirror's tests: its own cluster in a scratch directory
//! (initdb), on a free loopback port, TLS with the test certificates, trust for the user
//! `postgres` and a password (SCRAM) for the user `secret`. Run as root, the server runs as the
//! `postgres` user the package made. It is a child with a parent-death signal: when the tests
//! end, it shuts down.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::broker::{certs, scratch_dir};

/// The password of the user `secret`.
pub const SECRET_PASSWORD: &str = "test-only-pg-password";

/// A running server.
pub struct Postgres {
    pub port: u16,
    pub dir: PathBuf,
    bin: PathBuf,
    /// The uid and gid it runs as, when the tests run as root.
    user: Option<(u32, u32)>,
    /// The server's pid, and a channel that closes when its keeper thread saw it end.
    server: Mutex<Option<(u32, std::sync::mpsc::Receiver<()>)>>,
}

/// The server shared by the tests that do not stop it.
pub fn shared() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(Postgres::start)
}

/// The newest installed server's programs.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run scripts/test, which installs it")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let newest = versions
        .last()
        .expect("a PostgreSQL version under /usr/lib/postgresql");
    PathBuf::from(format!("/usr/lib/postgresql/{newest}/bin"))
}

/// The uid and gid of the user `postgres`.
fn postgres_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let line = passwd
        .lines()
        .find(|line| line.starts_with("postgres:"))
        .expect("a user `postgres` (made by the postgresql package)");
    let fields: Vec<&str> = line.split(':').collect();
    (
        fields[2].parse().expect("uid"),
        fields[3].parse().expect("gid"),
    )
}

impl Postgres {
    /// Makes a new cluster and starts it.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        // SAFETY: geteuid cannot fail.
        let user = (unsafe { libc::geteuid() } == 0).then(postgres_user);
        let dir = scratch_dir("postgres");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let server = Postgres {
            port: free_port(),
            dir,
            bin,
            user,
            server: Mutex::new(None),
        };
        server.init();
        server.launch();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command.env("LC_ALL", "C.UTF-8");
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent. It runs
        // after the change of user, so the signal stays set through exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        command
    }

    fn own(&self, path: &Path) {
        if let Some((uid, gid)) = self.user {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to postgres");
        }
    }

    fn init(&self) {
        let data = self.data();
        std::fs::create_dir(&data).expect("data dir");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        self.own(&data);
        let output = self
            .command("initdb")
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            output.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let certs = certs();
        for (from, to) in [("server.pem", "server.crt"), ("server.key", "server.key")] {
            std::fs::copy(certs.path(from), data.join(to)).expect("copy certificate");
            std::fs::set_permissions(data.join(to), std::fs::Permissions::from_mode(0o600))
                .expect("chmod");
            self.own(&data.join(to));
        }
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             host all secret 127.0.0.1/32 scram-sha-256\n\
             host all all 127.0.0.1/32 trust\n",
        )
        .expect("write pg_hba.conf");
        std::fs::write(
            data.join("postgresql.auto.conf"),
            format!(
                "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
                 ssl = on\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
                 max_connections = 40\nshared_buffers = 32MB\n",
                self.port,
                data.display()
            ),
        )
        .expect("write postgresql.auto.conf");
        self.own(&data.join("pg_hba.conf"));
        self.own(&data.join("postgresql.auto.conf"));
    }

    /// Starts the server on its data, from a keeper thread that lives as long as the server
    /// (the parent-death signal follows the thread that started it), and waits until it
    /// answers.
    fn launch(&self) {
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.join("server.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            );
        let (started, pid) = std::sync::mpsc::channel();
        let (ended, done) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let mut child: Child = command.spawn().expect("start postgres");
            let _ = started.send(child.id());
            let _ = child.wait();
            drop(ended);
        });
        let pid = pid.recv().expect("postgres started");
        *self.server.lock().expect("lock") = Some((pid, done));
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(mut client) =
                postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
                && client.simple_query("SELECT 1").is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the test PostgreSQL did not start; see {}",
                self.dir.join("server.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut admin = self.client("postgres");
        admin
            .batch_execute(&format!(
                "DO $$ BEGIN
                   IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'secret') THEN
                     CREATE ROLE secret LOGIN SUPERUSER PASSWORD '{SECRET_PASSWORD}';
                   END IF;
                 END $$;"
            ))
            .expect("create the password user");
    }

    /// Stops the server (fast shutdown) and waits until it is gone.
    pub fn stop(&self) {
        if let Some((pid, done)) = self.server.lock().expect("lock").take() {
            // SAFETY: a signal to our own child.
            unsafe { libc::kill(pid as i32, libc::SIGINT) };
            let _ = done.recv_timeout(Duration::from_secs(60));
        }
    }

    /// Starts it again after `stop`, with the same data.
    pub fn restart(&self) {
        self.stop();
        self.launch();
    }

    /// A connection string for `database`, without TLS.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// A client of `database`.
    pub fn client(&self, database: &str) -> postgres::Client {
        postgres::Client::connect(&self.url(database), postgres::NoTls)
            .unwrap_or_else(|error| panic!("connect to the test PostgreSQL: {error}"))
    }

    /// A new empty database for one test; its name.
    pub fn database(&self) -> String {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let name = format!(
            "mirror_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        self.client("postgres")
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        name
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}
