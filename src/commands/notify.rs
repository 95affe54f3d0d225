//! `notify`: records overdue letters and sends the notifications that are due; `--dry-run`
//! lists what is waiting and changes nothing.

use anyhow::Result;
use rusqlite::types::Value;

use crate::commands::rows::{Format, render};
use crate::config::{Config, NotifyConfig};
use crate::exit;
use crate::replica::Store;

pub fn run(config: &Config, dry_run: bool) -> Result<u8> {
    if dry_run {
        return dry(config, config.notify.as_ref());
    }
    let Some(settings) = &config.notify else {
        anyhow::bail!(
            "`{}` has no [notify] section; add `command` or `webhook` (see docs/configuration.md), or see what would be sent with `beskedhent notify --dry-run`",
            config.path.display()
        );
    };
    let mut store = Store::open_required(&config.database, config.event_rules())?;
    let stop = crate::ops::notify::stop_on_signals();
    let done = crate::ops::notify::deliver(&mut store, settings, &stop)?;
    crate::sayln!("{}", done.line(&store));
    Ok(if stop() {
        exit::INTERRUPTED
    } else if done.failed > 0 {
        exit::ERROR
    } else {
        exit::OK
    })
}

/// `--dry-run`: read-only, nothing recorded, nothing sent. Printed for operators, like the
/// log: CPR numbers masked. Without `[notify]`, what the defaults would record: nothing can be
/// sent yet, and events are recorded from the moment a destination is configured.
fn dry(config: &Config, settings: Option<&NotifyConfig>) -> Result<u8> {
    let store = Store::open_existing(&config.database)?;
    store.require_current()?;
    let overdue_days = settings.map_or(crate::config::DEFAULT_OVERDUE_DAYS, |settings| {
        settings.overdue_days
    });
    let overdue = store.unrecorded_overdue(overdue_days)?;
    let pending = store.unsent_notifications(u32::MAX)?;
    let rows: Vec<Vec<Value>> = pending
        .iter()
        .map(|event| {
            vec![
                Value::Integer(event.id),
                Value::Text(event.key.clone()),
                Value::Text(event.event.clone()),
                Value::Text(event.created_at.clone()),
                Value::Integer(event.attempts),
                event
                    .last_error
                    .as_deref()
                    .map_or(Value::Null, |error| Value::Text(error.to_owned())),
            ]
        })
        .collect();
    if !rows.is_empty() {
        crate::say!(
            "{}",
            render(
                &["id", "key", "event", "created_at", "attempts", "last_error"],
                &rows,
                Format::Table
            )
        );
    }
    let overdue_letters = if overdue == 1 {
        "1 overdue letter".to_owned()
    } else {
        format!("{overdue} overdue letters")
    };
    crate::sayln!(
        "{} pending; {overdue_letters} not recorded yet (the next delivery records them); nothing sent or changed (--dry-run)",
        pending.len()
    );
    if settings.is_none() {
        crate::sayln!(
            "no [notify] section in `{}`: nothing can be sent yet. With a destination (`command` or `webhook`) and the default rules, the first delivery would record {} without a final status after {overdue_days} days; failed letters, failing feeds and refused messages are recorded from then on (see docs/operations.md#notifications)",
            config.path.display(),
            if overdue == 1 {
                "the 1 letter".to_owned()
            } else {
                format!("the {overdue} letters")
            }
        );
    }
    Ok(exit::OK)
}
