//! Sending the outbox (`notification`): after every `import`, `sync` and daemon pass, and by
//! `notify`. Events are written in the same transaction as the change that causes them; here
//! they are sent, and marked sent only afterwards. So every event is sent at least once: a
//! crash between sending and marking sends it again, with the same `key`, on the next run;
//! once marked, never again. A failed send is retried on later runs, with a backoff from 1
//! minute doubling up to 6 hours.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::config::NotifyConfig;
use crate::replica::{Pending, Store};

/// Most events sent by one delivery round; the rest wait for the next.
const ROUND: u32 = 1000;

/// No new send is started once a round has taken this long; the rest wait for the next run,
/// so that a target that answers slowly or not at all does not hold up the runs.
const ROUND_TIME: Duration = Duration::from_secs(5 * 60);

/// What a delivery round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub sent: u64,
    pub failed: u64,
    /// Overdue letters newly recorded.
    pub overdue: u64,
    /// Why nothing could be sent at all (a setting that does not work); recorded with every
    /// event that was due.
    pub unusable: Option<String>,
    /// The round stopped early: a signal, or [`ROUND_TIME`]; the rest go out on the next run.
    pub cut_short: Option<&'static str>,
}

impl Delivered {
    pub fn line(&self, store: &Store) -> String {
        let pending = store
            .notification_counts()
            .map(|counts| counts.pending.to_string())
            .unwrap_or_else(|_| "?".into());
        let mut line = format!(
            "notifications: {} sent, {} failed (will be retried), {} still pending; {} overdue letters newly recorded",
            self.sent, self.failed, pending, self.overdue
        );
        if let Some(error) = &self.unusable {
            line.push_str(&format!("; cannot send any: {error}"));
        }
        if let Some(why) = self.cut_short {
            line.push_str(&format!(
                "; round stopped early ({why}), the rest go out next run"
            ));
        }
        line
    }
}

/// Whether to stop: asked between sends and while waiting for one.
pub type Stop<'a> = &'a (dyn Fn() -> bool + Sync);

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// For the commands without an async runtime (`import`, `notify`): from now on SIGINT and
/// SIGTERM stop the round after the send under way (a command is stopped, a webhook call left)
/// rather than the process in the middle of it. The returned check says whether one came.
pub fn stop_on_signals() -> fn() -> bool {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    }
    || SIGNALLED.load(Ordering::SeqCst)
}

/// Records overdue letters, then sends what is due. Errors of single sends are recorded with
/// the event and logged; only a database error is returned.
///
/// Each event is claimed before it is sent (its `next_attempt_at` moved past the longest a
/// send may take), so a delivery running at the same time (`notify` beside `import` or a
/// daemon pass) skips it rather than sending it twice. A run killed after claiming sends it on
/// a run after the claim has run out.
pub fn deliver(store: &mut Store, config: &NotifyConfig, stop: Stop<'_>) -> Result<Delivered> {
    let mut done = Delivered {
        overdue: store.scan_overdue(config.overdue_days)?,
        ..Delivered::default()
    };
    let started = Instant::now();
    let due = store.due_notifications(&crate::time::now_utc(), ROUND)?;
    if due.is_empty() {
        return Ok(done);
    }
    let sender = match Sender::new(config) {
        Ok(sender) => sender,
        Err(error) => {
            // Recorded with every event that is due, so that `status` and `status --check`
            // show it, and retried with the same backoff.
            let error = format!("{error:#}");
            tracing::error!("cannot send notifications: {error}");
            let failed: Vec<(i64, String)> = due
                .iter()
                .map(|event| (event.id, retry_at(event.attempts)))
                .collect();
            store.mark_all_failed(&failed, &error)?;
            done.failed = failed.len() as u64;
            done.unusable = Some(error);
            return Ok(done);
        }
    };
    // A send takes at most the command's timeout and then the webhook's, and a moment more.
    let lease = chrono::Duration::seconds(
        i64::try_from(config.timeout_seconds.saturating_mul(2)).unwrap_or(i64::MAX / 4) + 10,
    );
    for event in due {
        if stop() {
            done.cut_short = Some("signal");
            break;
        }
        if started.elapsed() >= ROUND_TIME {
            done.cut_short = Some("time limit");
            break;
        }
        let now = chrono::Utc::now();
        if !store.claim_notification(
            event.id,
            &crate::time::format_utc(now),
            &crate::time::format_utc(now + lease),
        )? {
            // Sent, or being sent, by another delivery.
            continue;
        }
        match sender.send(&event, stop) {
            Ok(()) => {
                store.mark_sent(event.id, &crate::time::now_utc())?;
                done.sent += 1;
            }
            Err(error) => {
                let error = format!("{error:#}");
                let interrupted = stop();
                // Cut off by a signal: whether it arrived is not known; again at once.
                let retry = if interrupted {
                    crate::time::now_utc()
                } else {
                    retry_at(event.attempts)
                };
                store.mark_failed(event.id, &error, &retry)?;
                tracing::warn!(key = %event.key, attempts = event.attempts + 1, "cannot send notification: {error}");
                done.failed += 1;
                if interrupted {
                    done.cut_short = Some("signal");
                    break;
                }
            }
        }
    }
    Ok(done)
}

/// For `check`: whether events could be sent as configured (without sending any): the
/// webhook's trust roots and header, the command's program. Says what was checked.
pub fn preflight(config: &NotifyConfig) -> Result<String> {
    let sender = Sender::new(config)?;
    let mut ways = Vec::new();
    if let Some(program) = &sender.program {
        ways.push(format!("command `{}`", program.display()));
    }
    if let Some(url) = &config.webhook {
        ways.push(format!("webhook {}", shown(url)));
    }
    Ok(format!("notifications can be sent: {}", ways.join(", ")))
}

/// When the attempt after `attempts` failed ones is due.
fn retry_at(attempts: i64) -> String {
    crate::time::format_utc(chrono::Utc::now() + backoff(attempts + 1))
}

/// A webhook URL as it may be shown: its scheme, host and port only. Its path may hold the
/// secret (Slack, Teams and Discord put it there), and so may its user information, query
/// and fragment.
fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => format!(
            "{}://{}{}/…",
            parsed.scheme(),
            parsed.host_str().unwrap_or("?"),
            parsed
                .port()
                .map_or_else(String::new, |port| format!(":{port}"))
        ),
        Err(_) => "(notify.webhook)".into(),
    }
}

/// The `Idempotency-Key` header of an event: the SHA-256 of its key, in hex. The key holds
/// what senders wrote (a letter's MessageUUID), which may hold characters no header value may,
/// and then every retry would fail the same way; a digest is always a valid value, the same
/// for every attempt, and different for different keys.
fn idempotency_key(key: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The wait before attempt `attempts + 1`: 1 minute, doubling, at most 6 hours.
fn backoff(attempts: i64) -> chrono::Duration {
    let minutes = 1i64 << attempts.clamp(1, 10).saturating_sub(1);
    chrono::Duration::minutes(minutes.min(6 * 60))
}

/// The webhook's extra header: `name` with the value of the environment variable `env`.
fn header(
    name: &str,
    env: &str,
) -> Result<(reqwest::header::HeaderName, reqwest::header::HeaderValue)> {
    let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).with_context(|| {
        format!("`notify.header_name` `{name}` is not a valid HTTP header name")
    })?;
    let value = crate::env::secret(env).map_err(|error| match error {
        std::env::VarError::NotPresent => anyhow::anyhow!(
            "`notify.header_value_env` names `{env}`, which is not set in beskedhent's environment"
        ),
        std::env::VarError::NotUnicode(_) => {
            anyhow::anyhow!("the value of `{env}` (`notify.header_value_env`) is not UTF-8")
        }
    })?;
    // The value is a secret: never in an error, only where it goes wrong.
    let mut value = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
        anyhow::anyhow!(
            "the value of `{env}` (`notify.header_value_env`, for header `{name}`) is not a valid HTTP header value: it holds a line break or another control character"
        )
    })?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// The configured ways of sending.
struct Sender<'a> {
    config: &'a NotifyConfig,
    /// The command's program, checked (`owner::check_program`) and its links resolved.
    program: Option<std::path::PathBuf>,
    http: Option<Webhook>,
}

/// A webhook ready to be called.
struct Webhook {
    client: reqwest::blocking::Client,
    url: String,
    /// The extra header, its value read from the environment once per round.
    header: Option<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
}

impl<'a> Sender<'a> {
    /// Everything a send needs that does not depend on the event: an error here means no
    /// event can be sent, and names the setting to fix.
    fn new(config: &'a NotifyConfig) -> Result<Sender<'a>> {
        let http = match &config.webhook {
            None => None,
            Some(url) => {
                let mut builder = reqwest::blocking::Client::builder()
                    .https_only(true)
                    // A redirect would turn the POST into a GET (301, 302, 303) or carry the
                    // event and the secret header to another server (307, 308): an answer
                    // other than 2xx is a failure, never followed.
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(concat!("beskedhent/", env!("CARGO_PKG_VERSION")))
                    .timeout(Duration::from_secs(config.timeout_seconds));
                if let Some(ca) = &config.ca_file {
                    for certificate in crate::pull::net::trust_roots(ca, "notify.ca_file")? {
                        builder = builder.add_root_certificate(certificate);
                    }
                }
                let header = match (&config.header_name, &config.header_value_env) {
                    (Some(name), Some(env)) => Some(header(name, env)?),
                    _ => None,
                };
                Some(Webhook {
                    client: builder
                        .build()
                        .context("cannot set up the webhook client")?,
                    url: url.clone(),
                    header,
                })
            }
        };
        let program = config
            .command
            .first()
            .map(|program| crate::owner::check_program(Path::new(program), "notify.command"))
            .transpose()?;
        Ok(Sender {
            config,
            program,
            http,
        })
    }

    /// Sends one event every configured way; Ok only if every way took it.
    fn send(&self, event: &Pending, stop: Stop<'_>) -> Result<()> {
        if let Some(program) = &self.program {
            self.run_command(program, event, stop)?;
        }
        if let Some(webhook) = &self.http {
            let mut request = webhook
                .client
                .post(&webhook.url)
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", idempotency_key(&event.key))
                .body(event.payload.clone());
            if let Some((name, value)) = &webhook.header {
                request = request.header(name, value);
            }
            let name = shown(&webhook.url);
            // On a thread of its own, so that a signal need not wait for the timeout.
            let (sender, answer) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = sender.send(
                    request
                        .send()
                        .map(|response| response.status())
                        .map_err(|error| crate::pull::sts::error_chain(&error.without_url())),
                );
            });
            let status = loop {
                match answer.recv_timeout(Duration::from_millis(50)) {
                    Ok(result) => {
                        break result
                            .map_err(|error| anyhow::anyhow!("webhook {name}: {error}"))?;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) if stop() => {
                        bail!("webhook {name}: interrupted by a signal before it answered")
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        bail!("webhook {name}: the request was lost")
                    }
                }
            };
            if status.is_redirection() {
                bail!(
                    "webhook {name} answered {status}: redirects are not followed; set `notify.webhook` to the address it redirects to"
                );
            }
            if !status.is_success() {
                bail!("webhook {name} answered {status}");
            }
        }
        Ok(())
    }

    fn run_command(&self, program: &Path, event: &Pending, stop: Stop<'_>) -> Result<()> {
        let result = self.run_command_once(program, event, stop);
        // Whatever it started is stopped with it, also what left its process group
        // (`setsid`): such processes come to this one (a child subreaper) when their parent
        // ends, and are killed and reaped here.
        reap_leftovers();
        result
    }

    fn run_command_once(&self, program: &Path, event: &Pending, stop: Stop<'_>) -> Result<()> {
        become_subreaper();
        let shown = &self.config.command[0];
        let mut command = Command::new(program);
        // Secrets beskedhent reads from its environment are not the command's business.
        for secret in &self.config.secret_env {
            command.env_remove(secret);
        }
        // Its own process group, so that a timeout stops whatever it started too.
        let mut child = command
            .args(&self.config.command[1..])
            .env("BESKEDHENT_EVENT", &event.event)
            .env("BESKEDHENT_KEY", &event.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot run `notify.command` `{shown}`"))?;
        let said = StderrTail::read(child.stderr.take());
        if let Some(mut stdin) = child.stdin.take() {
            // On a thread: a command that does not read its input is its own business, and
            // must not block the timeout.
            let payload = event.payload.clone();
            std::thread::spawn(move || {
                let _ = stdin.write_all(payload.as_bytes());
                let _ = stdin.write_all(b"\n");
            });
        }
        let deadline = Instant::now() + Duration::from_secs(self.config.timeout_seconds);
        let kill_group = |child: &std::process::Child| {
            // SAFETY: kill(2) with a negative pid signals the process group the command leads;
            // no memory is involved.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
        };
        loop {
            if let Some(status) = child.try_wait()? {
                // What it left running would hold its standard error open.
                kill_group(&child);
                if status.success() {
                    return Ok(());
                }
                bail!("`{shown}` exited with {status}{}", said.text());
            }
            if stop() {
                kill_group(&child);
                let _ = child.wait();
                bail!("`{shown}` was stopped by a signal before it finished");
            }
            if Instant::now() >= deadline {
                kill_group(&child);
                let _ = child.wait();
                bail!(
                    "`{shown}` did not finish within {} s (notify.timeout_seconds){}",
                    self.config.timeout_seconds,
                    said.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Makes this process the reaper of its orphaned descendants: a process a command started
/// whose parent ended comes here rather than to init, where it could outlive the timeout.
fn become_subreaper() {
    // SAFETY: prctl(2) with PR_SET_CHILD_SUBREAPER only sets a flag of this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Kills and reaps every child this process has left: commands run one at a time and this
/// runs after each, so every child is what a command left behind (its own children come here
/// in turn as their parents die, until none is left).
fn reap_leftovers() {
    for _ in 0..10_000 {
        let children = children_of(std::process::id());
        if children.is_empty() {
            return;
        }
        for &pid in &children {
            // SAFETY: kill(2) and waitpid(2) on a child of this process; no memory is shared.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// The pids whose parent is `parent`, from `/proc`.
fn children_of(parent: u32) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: libc::pid_t = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (name) state ppid ...`: the name may hold anything, so read after its end.
            let after = &stat[stat.rfind(')')? + 1..];
            let ppid: u32 = after.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

/// What a command says on standard error: the first 1 KiB is kept for the error and the log
/// (masked there like everything else); the rest is read and dropped, so that a talkative
/// command never blocks on a full pipe.
struct StderrTail {
    kept: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    done: Option<std::sync::mpsc::Receiver<()>>,
}

impl StderrTail {
    const KEEP: usize = 1024;

    fn read(stderr: Option<std::process::ChildStderr>) -> StderrTail {
        let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let done = stderr.map(|mut stderr| {
            let (sender, receiver) = std::sync::mpsc::channel();
            let kept = kept.clone();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while let Ok(read @ 1..) = std::io::Read::read(&mut stderr, &mut buffer) {
                    let mut kept = kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    let room = Self::KEEP.saturating_sub(kept.len());
                    kept.extend_from_slice(&buffer[..read.min(room)]);
                }
                let _ = sender.send(());
            });
            receiver
        });
        StderrTail { kept, done }
    }

    /// `: <what it said>`, or nothing. Waits a moment for the pipe to close, never longer:
    /// something the command started may still hold it open.
    fn text(&self) -> String {
        if let Some(done) = &self.done {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let text = String::from_utf8_lossy(&kept).trim().to_owned();
        if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_is_shown_without_its_secrets() {
        assert_eq!(
            shown("https://user:pw@hooks.example.dk:8443/x/y?token=s3cret#f"),
            "https://hooks.example.dk:8443/…"
        );
        assert_eq!(
            shown("https://hooks.slack.com/services/T0001/B0001/s3cr3tWebhookToken"),
            "https://hooks.slack.com/…"
        );
    }

    #[test]
    fn an_idempotency_key_is_always_a_valid_header_value() {
        for key in [
            "letter_failed:abc",
            "letter_failed:a\nb",
            "x\r\ny: z",
            "\u{7f}ø",
        ] {
            let value = idempotency_key(key);
            assert_eq!(value.len(), 64);
            reqwest::header::HeaderValue::from_str(&value).expect("a valid header value");
        }
        assert_ne!(idempotency_key("a"), idempotency_key("b"));
        assert_eq!(idempotency_key("a"), idempotency_key("a"));
    }

    #[test]
    fn backoff_doubles_up_to_six_hours() {
        assert_eq!(backoff(1), chrono::Duration::minutes(1));
        assert_eq!(backoff(2), chrono::Duration::minutes(2));
        assert_eq!(backoff(5), chrono::Duration::minutes(16));
        assert_eq!(backoff(10), chrono::Duration::minutes(360));
        assert_eq!(backoff(1000), chrono::Duration::minutes(360));
    }
}
