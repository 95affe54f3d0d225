//! Checking each section: ranges, forms and files, each error naming its key (and never quoting
//! a value that may be a secret).

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::sections::*;
use crate::decode::payload::post_status;
use crate::decode::payload::registration::{Channel, RegistrationType};

/// A portable environment variable name: a letter or `_`, then letters, digits or `_`.
pub(super) fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(super) fn validate_notify(mut notify: NotifyConfig, base: &Path) -> Result<NotifyConfig> {
    check_days("notify.overdue_days", notify.overdue_days)?;
    check_days("notify.max_age_days", notify.max_age_days)?;
    if notify.command.is_empty() && notify.webhook.is_none() {
        bail!(
            "`[notify]` needs `command` (a program and its arguments) or `webhook` (an https:// URL)"
        );
    }
    if notify
        .command
        .first()
        .is_some_and(|program| program.trim().is_empty())
    {
        bail!("`notify.command` starts with an empty program name");
    }
    if let Some(url) = &notify.webhook {
        let parsed = reqwest::Url::parse(url)
            .map_err(|error| anyhow::anyhow!("`notify.webhook` is not a URL: {error}"))?;
        if parsed.scheme() != "https" {
            bail!("`notify.webhook` must be an https:// URL (TLS verification is always on)");
        }
    }
    if notify.header_name.is_some() != notify.header_value_env.is_some() {
        bail!(
            "`notify.header_name` and `notify.header_value_env` go together: set both or neither"
        );
    }
    if let Some(name) = &notify.header_name {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            bail!("`notify.header_name` `{name}` is not a valid HTTP header name");
        }
        // Headers that say how the request travels, or that beskedhent sets itself: the
        // secret value must never go where one of them belongs.
        const RESERVED: [&str; 11] = [
            "host",
            "content-length",
            "content-type",
            "transfer-encoding",
            "connection",
            "keep-alive",
            "upgrade",
            "te",
            "trailer",
            "expect",
            "idempotency-key",
        ];
        let lower = name.to_ascii_lowercase();
        if RESERVED.contains(&lower.as_str()) || lower.starts_with("proxy-") {
            bail!(
                "`notify.header_name` `{name}` is a header beskedhent or HTTP itself sets; use the header the webhook reads its secret from, e.g. `Authorization`"
            );
        }
    }
    if let Some(env) = &notify.header_value_env
        && !is_env_name(env)
    {
        // Not repeated: it may be the secret itself, put here by mistake.
        bail!(
            "`notify.header_value_env` must be the name of the environment variable that holds the header's value (letters, digits and `_`, e.g. `BESKEDHENT_WEBHOOK_TOKEN`), never the value itself"
        );
    }
    check_wait(
        "notify.timeout_seconds",
        notify.timeout_seconds,
        1,
        MAX_WAIT_SECONDS,
    )?;
    notify.ca_file = notify.ca_file.map(|path| base.join(path));
    // Run as this user, perhaps as root: never looked up from where beskedhent happens to
    // run, nor in PATH. Who may change it is checked before each round (`owner`).
    if let Some(program) = notify.command.first()
        && !Path::new(program.as_str()).is_absolute()
    {
        bail!(
            "`notify.command` must start with the absolute path of the program (e.g. \"/usr/local/bin/alert\", or \"/usr/bin/logger\"), got `{}`: a relative name would be looked up from wherever beskedhent runs",
            crate::mask::cap(program, 200)
        );
    }
    Ok(notify)
}

pub(super) fn validate_retention(retention: &RetentionConfig) -> Result<()> {
    for (key, days) in [
        ("retention.envelope_days", retention.envelope_days),
        ("retention.status_days", retention.status_days),
        (
            "retention.registration_history_days",
            retention.registration_history_days,
        ),
        ("retention.rejected_days", retention.rejected_days),
        ("retention.run_days", retention.run_days),
        ("retention.deletions_days", retention.deletions_days),
        ("retention.lookup_days", retention.lookup_days),
    ] {
        check_days(key, days)?;
    }
    Ok(())
}

pub(super) fn validate_monitor(monitor: &MonitorConfig) -> Result<()> {
    check_days("monitor.overdue_days", monitor.overdue_days)?;
    for (key, value, max) in [
        (
            "monitor.warn_after_minutes",
            monitor.warn_after_minutes,
            u64::from(MAX_DAYS) * 24 * 60,
        ),
        (
            "monitor.critical_after_minutes",
            monitor.critical_after_minutes,
            u64::from(MAX_DAYS) * 24 * 60,
        ),
        (
            "monitor.certificate_warning_days",
            monitor.certificate_warning_days,
            u64::from(MAX_DAYS),
        ),
        (
            "monitor.certificate_critical_days",
            monitor.certificate_critical_days,
            u64::from(MAX_DAYS),
        ),
    ] {
        if value > max {
            bail!("`{key}` is {value}; at most {max} (100 years)");
        }
    }
    let pairs = [
        (
            "warn_after_minutes",
            monitor.warn_after_minutes,
            "critical_after_minutes",
            monitor.critical_after_minutes,
        ),
        (
            "failed_runs_warning",
            monitor.failed_runs_warning,
            "failed_runs_critical",
            monitor.failed_runs_critical,
        ),
        (
            "rejected_warning",
            monitor.rejected_warning,
            "rejected_critical",
            monitor.rejected_critical,
        ),
        (
            "overdue_warning",
            monitor.overdue_warning,
            "overdue_critical",
            monitor.overdue_critical,
        ),
    ];
    for (warn_key, warn, critical_key, critical) in pairs {
        if warn > 0 && critical > 0 && warn > critical {
            bail!(
                "`monitor.{warn_key}` ({warn}) is above `monitor.{critical_key}` ({critical}); the warning threshold must come first"
            );
        }
    }
    if monitor.certificate_critical_days > monitor.certificate_warning_days
        && monitor.certificate_warning_days > 0
    {
        bail!(
            "`monitor.certificate_critical_days` ({}) is above `monitor.certificate_warning_days` ({}); the warning must come first",
            monitor.certificate_critical_days,
            monitor.certificate_warning_days
        );
    }
    Ok(())
}

pub(super) fn validate_metrics(
    mut metrics: MetricsConfig,
    base: &Path,
    database: &Path,
) -> Result<MetricsConfig> {
    if metrics.textfile.as_os_str().is_empty() {
        bail!(
            "`metrics.textfile` is empty; give a file path, e.g. \"/var/lib/prometheus/node-exporter/beskedhent.prom\""
        );
    }
    metrics.textfile = base.join(&metrics.textfile);
    // Renamed into place: over the replica or a file SQLite keeps beside it, it would destroy
    // the replica.
    let (file, replica) = (
        crate::files::real_path(&metrics.textfile),
        crate::files::real_path(database),
    );
    let beside = file.parent() == replica.parent();
    let (name, own) = (file.file_name(), replica.file_name());
    if let (true, Some(name), Some(own)) = (beside, name, own) {
        use std::os::unix::ffi::OsStrExt;
        if crate::files::is_own_file_name(own.as_bytes(), name.as_bytes()) {
            bail!(
                "`metrics.textfile` `{}` is the replica or one of its own files; name a file of its own, e.g. in node_exporter's textfile directory",
                metrics.textfile.display()
            );
        }
    }
    if metrics.textfile.is_dir() {
        bail!(
            "`metrics.textfile` `{}` is a directory; name a file in it, e.g. `{}`",
            metrics.textfile.display(),
            metrics.textfile.join("beskedhent.prom").display()
        );
    }
    Ok(metrics)
}

/// The PKCS#12 password, from the environment variable named in the configuration.
pub fn pkcs12_password(sts: &StsConfig) -> Result<String> {
    crate::env::secret(&sts.pkcs12_password_env).with_context(|| {
        format!(
            "the PKCS#12 password is read from the environment variable `{}`, which is not set",
            sts.pkcs12_password_env
        )
    })
}

pub(super) fn validate_sts(mut sts: StsConfig, base: &Path) -> Result<StsConfig> {
    if !sts.url.starts_with("https://") {
        bail!("`sts.url` must be an https:// URL, got `{}`", sts.url);
    }
    if sts.entity_id.trim().is_empty() {
        bail!("`sts.entity_id` is empty; e.g. http://entityid.kombit.dk/service/bfo_modtag/2");
    }
    check_cvr("sts.cvr", &sts.cvr)?;
    match (&sts.certificate, &sts.private_key, &sts.pkcs12) {
        (Some(_), Some(_), None) | (None, None, Some(_)) => {}
        _ => bail!(
            "`[sts]` needs either `certificate` and `private_key` (PEM files) or `pkcs12` (a .p12 file), not both"
        ),
    }
    for path in [
        &mut sts.certificate,
        &mut sts.private_key,
        &mut sts.pkcs12,
        &mut sts.ca_file,
    ]
    .into_iter()
    .flatten()
    {
        *path = base.join(&*path);
    }
    check_wait(
        "sts.timeout_seconds",
        sts.timeout_seconds,
        1,
        MAX_WAIT_SECONDS,
    )?;
    check_wait(
        "sts.refresh_before_seconds",
        sts.refresh_before_seconds,
        0,
        MAX_WAIT_SECONDS,
    )?;
    Ok(sts)
}

pub(super) fn validate_amqp(mut amqp: AmqpConfig, base: &Path) -> Result<AmqpConfig> {
    if !amqp.url.starts_with("amqps://") {
        bail!(
            "`amqp.url` must be an amqps:// URL (AMQP over TLS), got `{}`",
            amqp.url
        );
    }
    if let Some(path) = &mut amqp.ca_file {
        *path = base.join(&*path);
    }
    check_wait(
        "amqp.connect_timeout_seconds",
        amqp.connect_timeout_seconds,
        1,
        MAX_WAIT_SECONDS,
    )?;
    Ok(amqp)
}

/// A source name (a feed's `name`, `import --source`): 1 to 64 letters, digits, `-`, `_` or
/// `.`, starting with a letter, so that it is safe in file names, metrics labels and plugin
/// output, and never looks like a CPR number.
pub fn check_source_name(what: &str, name: &str) -> Result<()> {
    // First whether it could hold a CPR number, so that no other error shows its digits.
    check_source_name_digits(what, name)?;
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid {
        bail!(
            "{what} `{}` must be 1 to 64 letters, digits, `-`, `_` or `.`, starting with a letter",
            crate::mask::cap(name, 80)
        );
    }
    Ok(())
}

/// A name is kept in every row it stores, the run history and file names: never a CPR number,
/// however it is joined to the rest or split: ten of its digits in a row (whatever stands
/// between them) whose first four are a day and a month are refused.
pub(super) fn check_source_name_digits(what: &str, name: &str) -> Result<()> {
    let digits: Vec<u8> = name
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    let cpr_like = digits.windows(10).any(|ten| {
        let (day, month) = (ten[0] * 10 + ten[1], ten[2] * 10 + ten[3]);
        matches!(day, 1..=31 | 61..=91) && matches!(month, 1..=12)
    });
    if cpr_like {
        let hidden: String = name
            .chars()
            .map(|c| if c.is_ascii_digit() { '*' } else { c })
            .collect();
        bail!(
            "{what} `{hidden}` holds what could be a CPR number (ten digits starting with a date); choose a name with fewer digits"
        );
    }
    Ok(())
}

/// Longest period a `*_days` key may give: 100 years.
pub(super) const MAX_DAYS: u32 = 36_500;

/// Longest a timeout or a wait may be: a day. Longer is a mistake (and would overflow clocks).
pub(super) const MAX_WAIT_SECONDS: u64 = 86_400;

/// A time value within `min..=max` (in its key's unit).
pub(super) fn check_wait(key: &str, value: u64, min: u64, max: u64) -> Result<()> {
    if value < min || value > max {
        bail!("`{key}` is {value}; it must be from {min} to {max}");
    }
    Ok(())
}

pub(super) fn check_days(key: &str, days: u32) -> Result<()> {
    if days > MAX_DAYS {
        bail!("`{key}` is {days} days; at most {MAX_DAYS} (100 years), or 0 where 0 means off");
    }
    Ok(())
}

pub(super) fn validate_feeds(feeds: Vec<FeedConfig>) -> Result<Vec<FeedConfig>> {
    let mut seen = std::collections::HashSet::new();
    for feed in &feeds {
        check_source_name("`feed.name`", &feed.name)?;
        if !seen.insert(feed.name.as_str()) {
            bail!("two [[feed]] sections are named `{}`", feed.name);
        }
        if feed.name == "import" {
            bail!("`feed.name` `import` is the default source of `import`; choose another name");
        }
        if feed.dueslag.trim().is_empty() {
            bail!(
                "`dueslag` of feed `{}` is empty; give the queue's UUID",
                feed.name
            );
        }
        if let Some(cvr) = &feed.cvr {
            check_cvr(&format!("cvr of feed `{}`", feed.name), cvr)?;
        }
    }
    Ok(feeds)
}

pub(super) fn validate_sync(sync: &SyncConfig) -> Result<()> {
    if sync.batch_size == 0 {
        bail!("`sync.batch_size` must be at least 1");
    }
    if sync.prefetch == 0 {
        bail!("`sync.prefetch` must be at least 1");
    }
    for (key, value) in [
        ("sync.flush_interval_ms", sync.flush_interval_ms),
        ("sync.drain_check_ms", sync.drain_check_ms),
    ] {
        check_wait(key, value, 1, MAX_WAIT_SECONDS * 1000)?;
    }
    check_wait(
        "sync.retry_backoff_ms",
        sync.retry_backoff_ms,
        0,
        MAX_WAIT_SECONDS * 1000,
    )?;
    check_wait(
        "sync.max_seconds",
        sync.max_seconds,
        0,
        u64::from(MAX_DAYS) * 86_400,
    )?;
    Ok(())
}

pub(super) fn check_cvr(key: &str, cvr: &str) -> Result<()> {
    if cvr.len() != 8 || !cvr.bytes().all(|b| b.is_ascii_digit()) {
        bail!("`{key}` must be an 8-digit CVR number, got `{cvr}`");
    }
    Ok(())
}

pub(super) fn registration_type(channel: Channel, raw: RawType) -> Result<RegistrationType> {
    let key = channel.config_key();
    let trimmed = |values: Vec<String>| -> Vec<String> {
        values.into_iter().map(|v| v.trim().to_owned()).collect()
    };
    let beskedtype = raw.beskedtype.trim().to_owned();
    if beskedtype.is_empty() {
        bail!(
            "`types.{key}.beskedtype` is empty; give the beskedtype UUID from the Beskedfordeler"
        );
    }
    if beskedtype.eq_ignore_ascii_case(post_status::BESKEDTYPE) {
        bail!("`types.{key}.beskedtype` is the PKO_PostStatus beskedtype, which is built in");
    }
    let registered = trimmed(raw.registered);
    let deregistered = trimmed(raw.deregistered);
    if let Some(both) = registered
        .iter()
        .find(|id| deregistered.iter().any(|d| d.eq_ignore_ascii_case(id)))
    {
        bail!("`{both}` is in both `types.{key}.registered` and `types.{key}.deregistered`");
    }
    Ok(RegistrationType {
        channel,
        beskedtype,
        registered,
        deregistered,
    })
}

/// `[mirror]`, checked: the connection string parsed, the names and numbers in range. The
/// installation defaults to `[sts] cvr`.
pub(super) fn validate_mirror(
    raw: RawMirror,
    base: &Path,
    sts: Option<&StsConfig>,
) -> Result<MirrorConfig> {
    let target = super::postgres::parse(&raw.postgresql, base)?;
    let installation = match raw.installation.or_else(|| sts.map(|sts| sts.cvr.clone())) {
        Some(name) => name,
        None => bail!(
            "`mirror.installation` is not set and there is no [sts] cvr to take it from; name this installation, e.g. installation = \"29189846\""
        ),
    };
    let plain = |text: &str, extra: &[char]| {
        text.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
    };
    let holds_cpr = |text: &str| crate::mask::mask_cpr_among_letters(text) != text;
    if installation.is_empty()
        || installation.len() > 64
        || !plain(&installation, &['-', '_', '.'])
        || holds_cpr(&installation)
    {
        bail!(
            "`mirror.installation` must be 1 to 64 letters, digits, `-`, `_` or `.`, and not a CPR number (it is in every row), got `{}`",
            crate::mask::mask_cpr_among_letters(&installation.chars().take(80).collect::<String>())
        );
    }
    let schema = raw.schema.unwrap_or_else(|| "beskedhent".to_owned());
    if schema.is_empty()
        || schema.len() > 63
        || !plain(&schema, &['_'])
        || schema.starts_with(|c: char| c.is_ascii_digit())
        || schema.bytes().any(|b| b.is_ascii_uppercase())
        || schema == "information_schema"
        || schema.starts_with("pg_")
        || holds_cpr(&schema)
    {
        bail!(
            "`mirror.schema` must be a plain PostgreSQL name of at most 63 characters (lower-case letters, digits and `_`, not starting with a digit, not a system schema, not a CPR number), got `{}`",
            crate::mask::mask_cpr_among_letters(&schema.chars().take(80).collect::<String>())
        );
    }
    let batch = raw.batch.unwrap_or(5_000);
    if !(1..=100_000).contains(&batch) {
        bail!("`mirror.batch` must be between 1 and 100000, got {batch}");
    }
    let timeout_seconds = raw.timeout_seconds.unwrap_or(30);
    if !(1..=3_600).contains(&timeout_seconds) {
        bail!("`mirror.timeout_seconds` must be between 1 and 3600, got {timeout_seconds}");
    }
    let lag_warning_minutes = raw.lag_warning_minutes.unwrap_or(60);
    if lag_warning_minutes > 525_600 {
        bail!(
            "`mirror.lag_warning_minutes` must be between 0 (warn whenever anything is not copied) and 525600 (a year), got {lag_warning_minutes}"
        );
    }
    let password_env = raw.password_env.unwrap_or_else(|| "PGPASSWORD".to_owned());
    if password_env.is_empty() || !plain(&password_env, &['_']) {
        bail!("`mirror.password_env` must name an environment variable, got `{password_env}`");
    }
    Ok(MirrorConfig {
        target,
        password_file: raw.password_file.map(|path| base.join(path)),
        password_env,
        installation,
        schema,
        envelopes: raw.envelopes,
        lag_warning_minutes,
        batch,
        timeout_seconds,
    })
}

/// `[lookup]`, checked; its `cvr` defaults to `[sts] cvr`, which it needs for the certificate.
pub(super) fn validate_lookup(
    mut lookup: LookupConfig,
    base: &Path,
    sts: Option<&StsConfig>,
) -> Result<LookupConfig> {
    let Some(sts) = sts else {
        bail!(
            "[lookup] needs [sts]: PostForespoerg is asked with the certificate and a token from the STS that `sync` uses"
        );
    };
    let url = lookup.url.trim_end_matches('/').to_owned();
    if !url.starts_with("https://") || url.len() <= "https://".len() {
        bail!(
            "`lookup.url` must be the service platform's https:// address, e.g. https://exttest.serviceplatformen.dk, got `{}`",
            crate::mask::cap(&lookup.url, 200)
        );
    }
    let authority = url["https://".len()..].split('/').next().unwrap_or("");
    if authority.contains('@') || url.contains(['?', '#']) || url["https://".len()..].contains('/')
    {
        bail!(
            "`lookup.url` must be the service platform's address only, like https://exttest.serviceplatformen.dk: no user, path, query or fragment (the paths of the services are added to it)"
        );
    }
    lookup.url = url;
    if lookup.entity_id.trim().is_empty() {
        bail!("`lookup.entity_id` is empty; the default is {DEFAULT_LOOKUP_ENTITY_ID}");
    }
    let cvr = lookup.cvr.clone().unwrap_or_else(|| sts.cvr.clone());
    check_cvr("lookup.cvr", &cvr)?;
    lookup.cvr = Some(cvr);
    if !(lookup.per_second > 0.0 && lookup.per_second <= 100.0) {
        bail!(
            "`lookup.per_second` must be more than 0 and at most 100, got {}",
            lookup.per_second
        );
    }
    check_wait(
        "lookup.timeout_seconds",
        lookup.timeout_seconds,
        1,
        MAX_WAIT_SECONDS,
    )?;
    if lookup.retries > 10 {
        bail!(
            "`lookup.retries` must be at most 10, got {}",
            lookup.retries
        );
    }
    if let Some(ca_file) = &mut lookup.ca_file {
        *ca_file = base.join(&*ca_file);
    }
    Ok(lookup)
}
