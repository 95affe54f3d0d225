//! The outbox (`notification`): events written with the changes that cause them, claimed,
//! marked sent or failed by the delivery (`ops::notify`).

use anyhow::Result;
use rusqlite::{TransactionBehavior, params};
use serde::Serialize;

use super::Store;
use crate::config::EventRules;

/// A failed attempt at event `?1`: error `?2`, next attempt not before `?3`; an event sent
/// meanwhile (by another delivery) stays as it is.
pub(super) const MARK_FAILED: &str =
    "UPDATE notification SET attempts = attempts + 1, last_error = ?2,
    next_attempt_at = ?3 WHERE id = ?1 AND sent_at IS NULL";

/// Letters overdue (no final status, first seen before `?1`) without a `letter_overdue` event.
pub(super) const OVERDUE_UNRECORDED: &str = "final = 0 AND first_seen_at < ?1
    AND NOT EXISTS (SELECT 1 FROM notification
                    WHERE key = 'letter_overdue:' || letter.message_uuid)";

/// An event waiting to be sent.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: i64,
    pub key: String,
    pub event: String,
    pub payload: String,
    pub attempts: i64,
    pub created_at: String,
    pub last_error: Option<String>,
}

/// Counts of the outbox, for `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NotificationCounts {
    /// Not sent yet (including failing).
    pub pending: i64,
    /// Not sent, and at least one attempt failed.
    pub failing: i64,
    pub sent: i64,
    /// Recorded but not sent: older than `max_age_days`.
    pub suppressed: i64,
}

/// Writes one event to the outbox, unless its key is there already; true if it was new. An
/// event about something older than `max_age_days` is recorded as suppressed: never sent.
pub(super) fn record_event(
    tx: &rusqlite::Connection,
    rules: &EventRules,
    key: &str,
    event: &str,
    facts: serde_json::Value,
    about: Option<&str>,
) -> Result<bool> {
    let now = chrono::Utc::now();
    let suppressed = rules.max_age_days > 0
        && about.is_some_and(|about| {
            about
                < crate::time::format_utc(now - chrono::Duration::days(rules.max_age_days.into()))
                    .as_str()
        });
    let mut payload = match facts {
        serde_json::Value::Object(facts) => facts,
        _ => serde_json::Map::new(),
    };
    // After the facts: no fact can take the place of the key or the kind of event.
    debug_assert!(!payload.contains_key("key") && !payload.contains_key("event"));
    payload.insert("key".into(), key.into());
    payload.insert("event".into(), event.into());
    let inserted = tx
        .prepare_cached(
            "INSERT INTO notification (key, event, payload, created_at, occurred_at, suppressed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (key) DO NOTHING",
        )?
        .execute(params![
            key,
            event,
            serde_json::Value::Object(payload).to_string(),
            crate::time::format_utc(now),
            about,
            suppressed
        ])?;
    Ok(inserted > 0)
}

impl Store {
    /// Records a `letter_overdue` event for every letter with no final status `days` days after
    /// it was first seen (once per letter). Returns how many were new.
    pub fn scan_overdue(&mut self, days: u32) -> Result<u64> {
        let Some(rules) = self.events else {
            return Ok(0);
        };
        if days == 0 {
            return Ok(0);
        }
        let before =
            crate::time::format_utc(chrono::Utc::now() - chrono::Duration::days(days.into()));
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // message_uuid, first_seen_at, event
        type Overdue = (String, Option<String>, Option<String>);
        let overdue: Vec<Overdue> = tx
            .prepare(&format!(
                "SELECT message_uuid, first_seen_at, event FROM letter WHERE {OVERDUE_UNRECORDED}"
            ))?
            .query_map([&before], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut recorded = 0;
        for (uuid, first_seen_at, event) in overdue {
            // The event is the letter becoming overdue, `days` after it was first seen: that is
            // what `max_age_days` is measured against, not its latest status, which is older.
            let became_overdue = first_seen_at
                .as_deref()
                .and_then(crate::time::parse_timestamp)
                .and_then(|first| first.checked_add_signed(chrono::Duration::days(days.into())))
                .and_then(crate::time::try_format_utc);
            let new = record_event(
                &tx,
                &rules,
                &format!("letter_overdue:{uuid}"),
                "letter_overdue",
                serde_json::json!({
                    "message_uuid": uuid,
                    "first_seen_at": first_seen_at,
                    "latest_event": event,
                }),
                became_overdue.as_deref(),
            )?;
            recorded += u64::from(new);
        }
        tx.commit()?;
        Ok(recorded)
    }

    /// How many letters [`Store::scan_overdue`] would record now (for `notify --dry-run`).
    pub fn unrecorded_overdue(&self, days: u32) -> Result<u64> {
        if days == 0 {
            return Ok(0);
        }
        let before =
            crate::time::format_utc(chrono::Utc::now() - chrono::Duration::days(days.into()));
        let count: i64 = self.conn.query_row(
            &format!("SELECT count(*) FROM letter WHERE {OVERDUE_UNRECORDED}"),
            [&before],
            |row| row.get(0),
        )?;
        Ok(count.unsigned_abs())
    }

    /// Events to send now: unsent, not suppressed, due; oldest first.
    pub fn due_notifications(&self, now: &str, limit: u32) -> Result<Vec<Pending>> {
        self.unsent(
            "AND (next_attempt_at IS NULL OR next_attempt_at <= ?1) ORDER BY id LIMIT ?2",
            now,
            limit,
        )
    }

    /// Every event not sent yet, oldest first (for `notify --dry-run`).
    pub fn unsent_notifications(&self, limit: u32) -> Result<Vec<Pending>> {
        self.unsent("AND ?1 IS NOT NULL ORDER BY id LIMIT ?2", "", limit)
    }

    fn unsent(&self, tail: &str, now: &str, limit: u32) -> Result<Vec<Pending>> {
        let sql = format!(
            "SELECT id, key, event, payload, attempts, created_at, last_error FROM notification
             WHERE sent_at IS NULL AND suppressed = 0 {tail}"
        );
        let rows = self
            .conn
            .prepare(&sql)?
            .query_map(params![now, limit], |row| {
                Ok(Pending {
                    id: row.get(0)?,
                    key: row.get(1)?,
                    event: row.get(2)?,
                    payload: row.get(3)?,
                    attempts: row.get(4)?,
                    created_at: row.get(5)?,
                    last_error: row.get(6)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Claims an unsent, due event for one send: moves its next attempt to `until`, so that
    /// no other delivery takes it meanwhile. False if it was sent, or claimed, by another.
    pub fn claim_notification(&self, id: i64, now: &str, until: &str) -> Result<bool> {
        let claimed = self.conn.execute(
            "UPDATE notification SET next_attempt_at = ?3
             WHERE id = ?1 AND sent_at IS NULL AND suppressed = 0
               AND (next_attempt_at IS NULL OR next_attempt_at <= ?2)",
            params![id, now, until],
        )?;
        Ok(claimed == 1)
    }

    /// Marks an event as delivered; it is never sent again.
    pub fn mark_sent(&self, id: i64, at: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE notification SET sent_at = ?2, attempts = attempts + 1, last_error = NULL,
                 next_attempt_at = NULL WHERE id = ?1",
            params![id, at],
        )?;
        Ok(())
    }

    /// Records a failed attempt; the next one is not before `retry_at`. An event another
    /// delivery has sent meanwhile stays as it is.
    pub fn mark_failed(&self, id: i64, error: &str, retry_at: &str) -> Result<()> {
        self.conn.execute(
            MARK_FAILED,
            params![id, crate::mask::clean_reason(error), retry_at],
        )?;
        Ok(())
    }

    /// [`Store::mark_failed`] for several events (id, retry at) with one error, in one
    /// transaction.
    pub fn mark_all_failed(&mut self, events: &[(i64, String)], error: &str) -> Result<()> {
        let error = crate::mask::clean_reason(error);
        let tx = self.conn.transaction()?;
        for (id, retry_at) in events {
            tx.prepare_cached(MARK_FAILED)?
                .execute(params![id, error, retry_at])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// How many events are pending, failing, sent and suppressed.
    pub fn notification_counts(&self) -> Result<NotificationCounts> {
        Ok(self.conn.query_row(
            "SELECT coalesce(sum(sent_at IS NULL AND suppressed = 0), 0),
                 coalesce(sum(sent_at IS NULL AND suppressed = 0 AND attempts > 0), 0),
                 coalesce(sum(sent_at IS NOT NULL), 0), coalesce(sum(suppressed), 0)
             FROM notification",
            [],
            |row| {
                Ok(NotificationCounts {
                    pending: row.get(0)?,
                    failing: row.get(1)?,
                    sent: row.get(2)?,
                    suppressed: row.get(3)?,
                })
            },
        )?)
    }
}
