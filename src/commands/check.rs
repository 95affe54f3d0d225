//! `check`: verifies, without consuming anything, that a run could work: the configuration,
//! the certificate (readable, matches its key, valid, days left), a token from the STS, and the
//! AMQP login and queue of every feed. Says what is wrong and how to fix it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;

use crate::config::Config;
use crate::pull::amqp::{self, AmqpError};
use crate::pull::credentials::Credentials;
use crate::pull::sts::TokenClient;
use crate::time;

/// Certificates expiring within this many days are reported as a warning.
const WARN_DAYS: i64 = 30;

/// One finding.
struct Findings {
    failed: bool,
}

impl Findings {
    fn ok(&self, what: impl AsRef<str>) {
        crate::sayln!("ok    {}", what.as_ref());
    }
    fn warn(&self, what: impl AsRef<str>) {
        crate::sayln!("WARN  {}", what.as_ref());
    }
    fn fail(&mut self, what: impl AsRef<str>) {
        self.failed = true;
        crate::sayln!("FAIL  {}", what.as_ref());
    }
}

pub fn run(config: &Config) -> anyhow::Result<u8> {
    let passed = super::runtime()?.block_on(check(config));
    Ok(if passed {
        crate::exit::OK
    } else {
        crate::exit::ERROR
    })
}

/// Runs every check; true when all passed.
pub async fn check(config: &Config) -> bool {
    let mut findings = Findings { failed: false };
    findings.ok(format!(
        "configuration `{}`",
        std::fs::canonicalize(&config.path)
            .unwrap_or_else(|_| config.path.clone())
            .display()
    ));
    if let Some(notify) = &config.notify {
        // The webhook's client is a blocking one, which must not be made on a runtime thread.
        match tokio::task::block_in_place(|| crate::ops::notify::preflight(notify)) {
            Ok(line) => findings.ok(line),
            Err(error) => findings.fail(format!("{error:#}")),
        }
    }
    let pull = match config.pull() {
        Ok(pull) => pull,
        Err(error) => {
            findings.fail(format!("{error:#}"));
            return false;
        }
    };

    let credentials = match Credentials::load(&pull.sts) {
        Ok(credentials) => credentials,
        Err(error) => {
            findings.fail(format!("{error:#}"));
            return false;
        }
    };
    findings.ok(format!(
        "certificate and key {} belong together",
        credentials.origin
    ));
    let now = Utc::now();
    match credentials.check_validity(now) {
        Ok(info) => {
            let days = info.days_left(now);
            let line = format!(
                "certificate `{}` issued by `{}` valid until {} ({days} days left)",
                info.subject,
                info.issuer,
                time::format_utc(info.not_after)
            );
            if days < WARN_DAYS {
                findings.warn(format!("{line}: renew it soon"));
            } else {
                findings.ok(line);
            }
        }
        Err(error) => {
            findings.fail(format!("{error:#}"));
            return false;
        }
    }

    let sts = match TokenClient::new(&pull.sts, &credentials) {
        Ok(sts) => sts,
        Err(error) => {
            findings.fail(format!("{error:#}"));
            return false;
        }
    };
    let cvrs: BTreeSet<String> = pull
        .feeds
        .iter()
        .map(|feed| feed.cvr.clone().unwrap_or_else(|| pull.sts.cvr.clone()))
        .collect();
    // One request per CVR: a failure is reported once, not again for every feed.
    let mut tokens = BTreeMap::new();
    for cvr in &cvrs {
        match sts.token(cvr).await {
            Ok(token) => {
                findings.ok(format!(
                    "token from {} for CVR {cvr}, valid until {}",
                    pull.sts.url,
                    time::format_utc(token.not_on_or_after)
                ));
                tokens.insert(cvr.clone(), token);
            }
            Err(error) => findings.fail(format!(
                "token for CVR {cvr}: {error}; {}",
                error.hint(&pull.sts)
            )),
        }
    }

    for feed in &pull.feeds {
        let cvr = feed.cvr.clone().unwrap_or_else(|| pull.sts.cvr.clone());
        let Some(token) = tokens.get(&cvr) else {
            continue;
        };
        let broker = amqp::redact_url(&pull.amqp.url);
        match amqp::connect(&pull.amqp, &credentials, token, &feed.name).await {
            Ok(session) => {
                findings.ok(format!("AMQP login to {broker} for feed `{}`", feed.name));
                match session.queue_exists(&feed.dueslag).await {
                    Ok(count) => findings.ok(format!(
                        "queue `{}` of feed `{}` exists ({count} messages waiting)",
                        feed.dueslag, feed.name
                    )),
                    Err(error @ AmqpError::QueueMissing { .. }) => findings.fail(format!(
                        "feed `{}`: {error}; check `dueslag` (the queue's UUID from the Beskedfordeler's administration)",
                        feed.name
                    )),
                    Err(error) => findings.warn(format!(
                        "could not confirm queue `{}` of feed `{}` ({error}); the service may not allow the check, `sync` will tell. If `sync` is refused consuming, try `[sync] fetch = \"get\"`",
                        feed.dueslag, feed.name
                    )),
                }
                session.close().await;
            }
            Err(error) => findings.fail(format!(
                "AMQP login to {broker} for feed `{}`: {error}; {}",
                feed.name,
                error.hint()
            )),
        }
    }
    !findings.failed
}
