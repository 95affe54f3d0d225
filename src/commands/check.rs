//! `check`: verifies, without consuming anything, that a run could work: the configuration,
//! the certificate (readable, matches its key, valid, days left), a token from the STS, and the
//! AMQP login and queue of every feed. Says what is wrong and how to fix it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::Utc;

use crate::config::{Config, FeedConfig, PullConfig};
use crate::pull::amqp::{self, AmqpError};
use crate::pull::credentials::Credentials;
use crate::pull::sts::{Token, TokenClient};
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
    // What the replica received that no [types.*] names.
    if config.database.exists()
        && let Ok(Some(line)) = crate::replica::Store::open_existing(&config.database)
            .and_then(|store| crate::ops::monitor::other_types_line(&store))
    {
        findings.warn(line);
    }
    let prepared = config.pull().and_then(|pull| {
        let credentials = Credentials::load(&pull.sts)?;
        Ok((pull, credentials))
    });
    let (pull, credentials) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            findings.fail(format!("{error:#}"));
            return false;
        }
    };
    findings.ok(format!(
        "certificate and key {} belong together",
        credentials.origin
    ));
    if !certificate_is_valid(&mut findings, &credentials) {
        return false;
    }
    let sts = match TokenClient::new(&pull.sts, &credentials) {
        Ok(sts) => sts,
        Err(error) => {
            findings.fail(format!("{error:#}"));
            return false;
        }
    };
    let tokens = tokens(&mut findings, &pull, &sts).await;
    for feed in &pull.feeds {
        let cvr = feed.cvr.clone().unwrap_or_else(|| pull.sts.cvr.clone());
        if let Some(token) = tokens.get(&cvr) {
            broker(&mut findings, &pull, &credentials, token, feed).await;
        }
    }
    if config.lookup.is_some() {
        match super::lookup::check_line(config).await {
            Ok(line) => findings.ok(line),
            Err((true, line)) => findings.fail(line),
            Err((false, line)) => findings.warn(line),
        }
    }
    !findings.failed
}

/// The certificate's validity and days left; false when it is not valid now.
fn certificate_is_valid(findings: &mut Findings, credentials: &Credentials) -> bool {
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
            true
        }
        Err(error) => {
            findings.fail(format!("{error:#}"));
            false
        }
    }
}

/// A token for each CVR the feeds use: one request per CVR, so a failure is said once, not
/// again for every feed.
async fn tokens(
    findings: &mut Findings,
    pull: &PullConfig,
    sts: &TokenClient,
) -> BTreeMap<String, Arc<Token>> {
    let cvrs: BTreeSet<String> = pull
        .feeds
        .iter()
        .map(|feed| feed.cvr.clone().unwrap_or_else(|| pull.sts.cvr.clone()))
        .collect();
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
    tokens
}

/// The AMQP login and the queue of one feed, without consuming anything.
async fn broker(
    findings: &mut Findings,
    pull: &PullConfig,
    credentials: &Credentials,
    token: &Token,
    feed: &FeedConfig,
) {
    let broker = amqp::redact_url(&pull.amqp.url);
    let session = match amqp::connect(&pull.amqp, credentials, token, &feed.name).await {
        Ok(session) => session,
        Err(error) => {
            return findings.fail(format!(
                "AMQP login to {broker} for feed `{}`: {error}; {}",
                feed.name,
                error.hint()
            ));
        }
    };
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
