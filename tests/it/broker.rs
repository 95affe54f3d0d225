//! Real parts for the pull tests: a throwaway RabbitMQ with TLS, client certificates and SASL
//! EXTERNAL (vhost `BF`), test certificates made with openssl, the TLS server the fakes are
//! built on (`tls`, with those certificates), helpers to fill and measure queues, and scratch
//! directories that outlive no test process.
//!
//! The broker and its private epmd are children of a keeper thread that lives as long as the
//! test process, with a parent-death signal: when the tests end, the broker shuts down.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

/// The fakes' TLS server, on the certificates made here: a child of this file so that whatever
/// includes the broker (the benchmarks too) has it.
#[path = "tls.rs"]
pub mod tls;

const RABBITMQ_BIN: &str = "/usr/lib/rabbitmq/bin";
pub const ADMIN: &str = "beskedhent-admin";
pub const ADMIN_PASSWORD: &str = "test-only-password";
/// The broker user the client certificate logs in as (its CN).
pub const CLIENT_CN: &str = "beskedhent-test";

/// Certificates for the tests, all in one directory.
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The shared test certificates, made once per test process.
pub fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(|| {
        let dir = scratch_dir("certs");
        make_certs(&dir);
        Certs { dir }
    })
}

/// A running broker.
pub struct Broker {
    pub amqp_port: u16,
    pub tls_port: u16,
    pub dir: PathBuf,
    env: Vec<(String, String)>,
    stop: Mutex<Option<mpsc::Sender<()>>>,
    done: Mutex<Option<mpsc::Receiver<()>>>,
}

/// The broker shared by the tests that do not restart it.
pub fn shared() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(Broker::start)
}

impl Broker {
    /// Starts a new broker node on free loopback ports and waits until it is ready.
    pub fn start() -> Broker {
        assert!(
            Path::new(RABBITMQ_BIN).join("rabbitmq-server").exists(),
            "rabbitmq-server is not installed: run scripts/test, which installs it"
        );
        let certs = certs();
        let dir = scratch_dir("broker");
        let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
        let (amqp_port, tls_port, dist_port, epmd_port) = (ports[0], ports[1], ports[2], ports[3]);
        let node = format!(
            "beskedhent-test-{}-{amqp_port}@localhost",
            std::process::id()
        );
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.default = 127.0.0.1:{amqp_port}\n\
                 listeners.ssl.default = 127.0.0.1:{tls_port}\n\
                 ssl_options.cacertfile = {ca}\n\
                 ssl_options.certfile = {cert}\n\
                 ssl_options.keyfile = {key}\n\
                 ssl_options.verify = verify_peer\n\
                 ssl_options.fail_if_no_peer_cert = true\n\
                 auth_mechanisms.1 = EXTERNAL\n\
                 auth_mechanisms.2 = PLAIN\n\
                 ssl_cert_login_from = common_name\n\
                 loopback_users = none\n\
                 disk_free_limit.absolute = 50MB\n\
                 load_definitions = {definitions}\n",
                ca = certs.path("ca.pem").display(),
                cert = certs.path("server.pem").display(),
                key = certs.path("server.key").display(),
                definitions = dir.join("definitions.json").display(),
            ),
        )
        .expect("write rabbitmq.conf");
        std::fs::write(
            dir.join("definitions.json"),
            serde_json::json!({
                "vhosts": [{"name": "BF"}],
                "users": [
                    {"name": ADMIN, "password": ADMIN_PASSWORD, "tags": "administrator"},
                    {"name": CLIENT_CN, "password_hash": "", "tags": ""}
                ],
                "permissions": [
                    {"user": ADMIN, "vhost": "BF", "configure": ".*", "write": ".*", "read": ".*"},
                    {"user": CLIENT_CN, "vhost": "BF", "configure": "", "write": "", "read": ".*"}
                ]
            })
            .to_string(),
        )
        .expect("write definitions");
        std::fs::write(
            dir.join("enabled_plugins"),
            "[rabbitmq_auth_mechanism_ssl].\n",
        )
        .expect("write plugins");
        let env: Vec<(String, String)> = [
            ("HOME", dir.display().to_string()),
            ("RABBITMQ_NODENAME", node),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
            ("RABBITMQ_NODE_PORT", amqp_port.to_string()),
            ("RABBITMQ_DIST_PORT", dist_port.to_string()),
            ("ERL_EPMD_PORT", epmd_port.to_string()),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".into()),
            (
                "RABBITMQ_CONF_ENV_FILE",
                dir.join("rabbitmq-env.conf").display().to_string(),
            ),
            (
                "RABBITMQ_CONFIG_FILE",
                dir.join("rabbitmq.conf").display().to_string(),
            ),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                dir.join("enabled_plugins").display().to_string(),
            ),
            (
                "RABBITMQ_MNESIA_BASE",
                dir.join("mnesia").display().to_string(),
            ),
            ("RABBITMQ_LOG_BASE", dir.join("log").display().to_string()),
            // A crashing node or control script dumps here, not in the working directory.
            (
                "ERL_CRASH_DUMP",
                dir.join("erl_crash.dump").display().to_string(),
            ),
            (
                "RABBITMQ_PID_FILE",
                dir.join("rabbitmq.pid").display().to_string(),
            ),
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1} +sbwt none +sbwtdcpu none +sbwtdio none"
                    .into(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        std::fs::write(dir.join("rabbitmq-env.conf"), "").expect("write env file");
        let broker = Broker {
            amqp_port,
            tls_port,
            dir,
            env,
            stop: Mutex::new(None),
            done: Mutex::new(None),
        };
        broker.launch();
        broker
    }

    /// Starts the node's processes from a keeper thread that holds them until `stop`.
    fn launch(&self) {
        let (stop_sender, stop_receiver) = mpsc::channel::<()>();
        let (done_sender, done_receiver) = mpsc::channel::<()>();
        let (ready_sender, ready_receiver) = mpsc::channel::<()>();
        let env = self.env.clone();
        let epmd_port = self.env_var("ERL_EPMD_PORT");
        // A pid file left by an earlier node must not be taken for this one's.
        let _ = std::fs::remove_file(self.env_var("RABBITMQ_PID_FILE"));
        std::thread::spawn(move || {
            let mut epmd = spawn_child(
                Command::new("epmd").args(["-address", "127.0.0.1", "-port", &epmd_port]),
                &env,
            );
            std::thread::sleep(Duration::from_millis(200));
            let mut server = spawn_child(
                &mut Command::new(format!("{RABBITMQ_BIN}/rabbitmq-server")),
                &env,
            );
            let _ = ready_sender.send(());
            let _ = stop_receiver.recv();
            // Graceful: the script stops the node on SIGTERM.
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
            let _ = server.wait();
            let _ = epmd.kill();
            let _ = epmd.wait();
            let _ = done_sender.send(());
        });
        ready_receiver.recv().expect("broker keeper started");
        *self.stop.lock().expect("lock") = Some(stop_sender);
        *self.done.lock().expect("lock") = Some(done_receiver);
        // Generous: a loaded two-core machine (a build beside the tests) is slow.
        let timeout = Duration::from_secs(300);
        // The node creates its pid file before it writes the number into it, and `rabbitmqctl
        // wait` given the file fails on an empty one: read the number here, then wait on it.
        let pid = self.wait_for_pid(timeout);
        let status = self
            .ctl()
            .args([
                "-q",
                "wait",
                "--pid",
                &pid.to_string(),
                "--timeout",
                &timeout.as_secs().to_string(),
            ])
            .status()
            .expect("rabbitmqctl wait");
        assert!(
            status.success(),
            "the test broker did not start; see {}",
            self.dir.join("log").display()
        );
        // The TLS listener may come up a moment after the node reports ready.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.tls_port)).is_err() {
            assert!(Instant::now() < deadline, "TLS listener did not open");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The broker's operating-system pid, once its pid file holds one.
    fn wait_for_pid(&self, timeout: Duration) -> u32 {
        let file = PathBuf::from(self.env_var("RABBITMQ_PID_FILE"));
        let deadline = Instant::now() + timeout;
        loop {
            let pid = std::fs::read_to_string(&file)
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok());
            if let Some(pid) = pid {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "the test broker wrote no pid to {}; see {}",
                file.display(),
                self.dir.join("log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the node (gracefully) and waits until it is gone.
    pub fn stop(&self) {
        if let Some(stop) = self.stop.lock().expect("lock").take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.lock().expect("lock").take() {
            let _ = done.recv_timeout(Duration::from_secs(60));
        }
    }

    /// Starts the node again after `stop`, with the same data (queues survive).
    pub fn restart(&self) {
        self.stop();
        self.launch();
    }

    fn env_var(&self, name: &str) -> String {
        self.env
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .expect("known variable")
    }

    fn ctl(&self) -> Command {
        let mut command = Command::new(format!("{RABBITMQ_BIN}/rabbitmqctl"));
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command.stdout(Stdio::null());
        command
    }

    /// The `[amqp]` URL of the TLS listener, vhost BF.
    pub fn url(&self) -> String {
        format!("amqps://localhost:{}/BF", self.tls_port)
    }

    async fn admin(&self) -> Connection {
        Connection::connect(
            &format!(
                "amqp://{ADMIN}:{ADMIN_PASSWORD}@127.0.0.1:{}/BF",
                self.amqp_port
            ),
            ConnectionProperties::default(),
        )
        .await
        .expect("admin connection")
    }

    /// Declares a durable queue and publishes `bodies` into it, waiting for confirms.
    pub fn fill(&self, queue: &str, bodies: impl IntoIterator<Item = Vec<u8>>) {
        runtime().block_on(async {
            let connection = self.admin().await;
            let channel = connection.create_channel().await.expect("channel");
            channel
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("declare");
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .expect("confirms");
            let mut pending = Vec::new();
            for (n, body) in bodies.into_iter().enumerate() {
                let properties = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(format!("transaction-{n}").into());
                pending.push(
                    channel
                        .basic_publish(
                            "".into(),
                            queue.into(),
                            BasicPublishOptions::default(),
                            &body,
                            properties,
                        )
                        .await
                        .expect("publish"),
                );
                if pending.len() >= 1000 {
                    for confirm in pending.drain(..) {
                        confirm.await.expect("confirmed");
                    }
                }
            }
            for confirm in pending {
                confirm.await.expect("confirmed");
            }
            let _ = connection.close(200, "done".into()).await;
        });
    }

    /// Messages ready plus unacknowledged in `queue`.
    pub fn depth(&self, queue: &str) -> u32 {
        runtime().block_on(async {
            let connection = self.admin().await;
            let channel = connection.create_channel().await.expect("channel");
            let declared = channel
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("queue exists");
            let _ = connection.close(200, "done".into()).await;
            declared.message_count()
        })
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Spawns a child that gets SIGTERM when the spawning thread ends.
fn spawn_child(command: &mut Command, env: &[(String, String)]) -> Child {
    command
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    command.spawn().expect("spawn broker process")
}

fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        // The Erlang CLI tools bind 35672-35682.
        if !(35672..=35682).contains(&port) {
            return port;
        }
    }
}

/// Removes the scratch directories of earlier test processes that are gone.
fn remove_stale_scratch_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("beskedhent-test-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A fresh directory for this test process, removed and remade.
pub fn scratch_dir(what: &str) -> PathBuf {
    static CLEANED: OnceLock<()> = OnceLock::new();
    CLEANED.get_or_init(remove_stale_scratch_dirs);
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir =
        std::env::temp_dir().join(format!("beskedhent-test-{}-{what}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA; a server certificate for localhost/127.0.0.1; client certificates (the broker user,
/// a stranger, an expired one); a PKCS#12 of the client; and a rogue CA with its own client.
fn make_certs(dir: &Path) {
    std::fs::write(
        dir.join("ext.cnf"),
        "[server]\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n\
         [client]\nextendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext");
    for ca in ["ca", "rogue-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
                "-days",
                "30",
                "-subj",
                &format!("/CN=beskedhent {ca}"),
            ],
        );
    }
    let leaf = |name: &str, cn: &str, ca: &str, section: Option<&str>| {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={cn}/serialNumber=CVR:12345678-FID:1"),
            ],
        );
        let (csr, ca_pem, ca_key, pem) = (
            format!("{name}.csr"),
            format!("{ca}.pem"),
            format!("{ca}.key"),
            format!("{name}.pem"),
        );
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "30",
        ];
        // Without extensions, openssl makes an X.509 version 1 certificate.
        if let Some(section) = section {
            args.extend(["-extfile", "ext.cnf", "-extensions", section]);
        }
        openssl(dir, &args);
    };
    leaf("server", "localhost", "ca", Some("server"));
    leaf("client", CLIENT_CN, "ca", Some("client"));
    leaf("stranger", "stranger", "ca", Some("client"));
    leaf("rogue", CLIENT_CN, "rogue-ca", Some("client"));
    // An X.509 version 1 certificate: signed without any extensions.
    leaf("v1", CLIENT_CN, "ca", None);
    // An expired client certificate (valid in 2020 only), signed with `openssl ca`.
    std::fs::create_dir_all(dir.join("ca-db")).expect("ca db");
    std::fs::write(dir.join("ca-db/index.txt"), "").expect("index");
    std::fs::write(dir.join("ca-db/serial"), "1000\n").expect("serial");
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca=test\n[test]\ndatabase=ca-db/index.txt\nserial=ca-db/serial\nnew_certs_dir=ca-db\n\
         certificate=ca.pem\nprivate_key=ca.key\ndefault_md=sha256\npolicy=any\ncopy_extensions=none\nx509_extensions=client\n\
         [any]\ncommonName=supplied\nserialNumber=optional\n[client]\nextendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ca.cnf");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "expired.key",
            "-out",
            "expired.csr",
            "-subj",
            &format!("/CN={CLIENT_CN}"),
        ],
    );
    openssl(
        dir,
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-in",
            "expired.csr",
            "-out",
            "expired.pem",
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20210101000000Z",
            "-notext",
        ],
    );
    openssl(
        dir,
        &[
            "pkcs12",
            "-export",
            "-inkey",
            "client.key",
            "-in",
            "client.pem",
            "-certfile",
            "ca.pem",
            "-out",
            "client.p12",
            "-passout",
            "pass:p12-secret",
        ],
    );
    // Private keys are private, or beskedhent refuses them (as ssh does).
    for entry in std::fs::read_dir(dir).expect("certs") {
        let path = entry.expect("entry").path();
        if path
            .extension()
            .is_some_and(|extension| extension == "key" || extension == "p12")
        {
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod key");
        }
    }
}
