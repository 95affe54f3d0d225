//! Sending the outbox (`notification`): after every `import`, `sync` and daemon pass, and by
//! `notify`. Events are written in the same transaction as the change that causes them; here
//! they are sent, and marked sent only afterwards. So every event is sent at least once: a
//! crash between sending and marking sends it again, with the same `key`, on the next run;
//! once marked, never again. A failed send is retried on later runs, with a backoff from 1
//! minute doubling up to 6 hours.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::config::NotifyConfig;
use crate::store::{EventRules, Pending, Store};

/// Most events sent by one delivery round; the rest wait for the next.
const ROUND: u32 = 1000;

/// The event rules `[notify]` asks for, for [`Store::record_events`].
pub fn rules(config: Option<&NotifyConfig>) -> Option<EventRules> {
    config.map(|notify| EventRules {
        failing_runs: notify.failing_runs,
        max_age_days: notify.max_age_days,
    })
}

/// What a delivery round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub sent: u64,
    pub failed: u64,
    /// Overdue letters newly recorded.
    pub overdue: u64,
}

impl Delivered {
    pub fn line(&self, store: &Store) -> String {
        let pending = store
            .notification_counts()
            .map(|counts| counts.pending.to_string())
            .unwrap_or_else(|_| "?".into());
        format!(
            "notifications: {} sent, {} failed (will be retried), {} still pending; {} overdue letters newly recorded",
            self.sent, self.failed, pending, self.overdue
        )
    }
}

/// Records overdue letters, then sends what is due. Errors of single sends are recorded with
/// the event and logged; only a database error is returned.
pub fn deliver(store: &mut Store, config: &NotifyConfig) -> Result<Delivered> {
    let mut done = Delivered {
        overdue: store.scan_overdue(config.overdue_days)?,
        ..Delivered::default()
    };
    let sender = Sender::new(config)?;
    let now = crate::time::now_utc();
    for event in store.due_notifications(&now, ROUND)? {
        match sender.send(&event) {
            Ok(()) => {
                store.mark_sent(event.id, &crate::time::now_utc())?;
                done.sent += 1;
            }
            Err(error) => {
                let error = format!("{error:#}");
                let retry = chrono::Utc::now() + backoff(event.attempts + 1);
                store.mark_failed(event.id, &error, &crate::time::format_utc(retry))?;
                tracing::warn!(key = %event.key, attempts = event.attempts + 1, "cannot send notification: {error}");
                done.failed += 1;
            }
        }
    }
    Ok(done)
}

/// A webhook URL as it may be shown: without user information, query or fragment, which may
/// hold a secret.
fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => "(notify.webhook)".into(),
    }
}

/// The wait before attempt `attempts + 1`: 1 minute, doubling, at most 6 hours.
fn backoff(attempts: i64) -> chrono::Duration {
    let minutes = 1i64 << attempts.clamp(1, 10).saturating_sub(1);
    chrono::Duration::minutes(minutes.min(6 * 60))
}

/// The configured ways of sending.
struct Sender<'a> {
    config: &'a NotifyConfig,
    http: Option<(reqwest::blocking::Client, String)>,
}

impl<'a> Sender<'a> {
    fn new(config: &'a NotifyConfig) -> Result<Sender<'a>> {
        let http = match &config.webhook {
            None => None,
            Some(url) => {
                let mut builder = reqwest::blocking::Client::builder()
                    .https_only(true)
                    .user_agent(concat!("beskedhent/", env!("CARGO_PKG_VERSION")))
                    .timeout(Duration::from_secs(config.timeout_seconds));
                if let Some(ca) = &config.ca_file {
                    let pem = std::fs::read(ca).with_context(|| {
                        format!("cannot read `notify.ca_file` `{}`", ca.display())
                    })?;
                    for certificate in
                        reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                            format!(
                                "`notify.ca_file` `{}` holds no PEM certificate",
                                ca.display()
                            )
                        })?
                    {
                        builder = builder.add_root_certificate(certificate);
                    }
                }
                Some((builder.build()?, url.clone()))
            }
        };
        Ok(Sender { config, http })
    }

    /// Sends one event every configured way; Ok only if every way took it.
    fn send(&self, event: &Pending) -> Result<()> {
        if !self.config.command.is_empty() {
            self.run_command(event)?;
        }
        if let Some((client, url)) = &self.http {
            let mut request = client
                .post(url)
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", &event.key)
                .body(event.payload.clone());
            if let (Some(name), Some(env)) =
                (&self.config.header_name, &self.config.header_value_env)
            {
                let value = std::env::var(env).with_context(|| {
                    format!("`notify.header_value_env` names `{env}`, which is not set")
                })?;
                request = request.header(name.as_str(), value);
            }
            let name = shown(url);
            let response = request.send().map_err(|error| {
                anyhow::anyhow!(
                    "webhook {name}: {}",
                    crate::sts::error_chain(&error.without_url())
                )
            })?;
            if !response.status().is_success() {
                bail!("webhook {name} answered {}", response.status());
            }
        }
        Ok(())
    }

    fn run_command(&self, event: &Pending) -> Result<()> {
        let program = &self.config.command[0];
        // Its own process group, so that a timeout stops whatever it started too.
        let mut child = Command::new(program)
            .args(&self.config.command[1..])
            .env("BESKEDHENT_EVENT", &event.event)
            .env("BESKEDHENT_KEY", &event.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot run `notify.command` `{program}`"))?;
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
                if status.success() {
                    return Ok(());
                }
                // What it left running would hold its standard error open.
                kill_group(&child);
                bail!("`{program}` exited with {status}{}", said.text());
            }
            if Instant::now() >= deadline {
                kill_group(&child);
                let _ = child.wait();
                bail!(
                    "`{program}` did not finish within {} s (notify.timeout_seconds){}",
                    self.config.timeout_seconds,
                    said.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
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
            "https://hooks.example.dk:8443/x/y"
        );
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
