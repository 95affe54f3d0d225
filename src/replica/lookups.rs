//! PostForespoerg's answers (`registration_lookup`): stored one at a time as they come, found
//! again so that a bulk lookup resumes without asking twice, and the feed's recent parties for
//! `lookup --verify-feed`.

use anyhow::Result;
use rusqlite::{OptionalExtension, params};

use super::Store;

/// One answer: whether `party` was registered for `channel` when asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub party: String,
    /// `cpr` or `cvr`.
    pub party_type: String,
    /// `digitalpost` or `nemsms`.
    pub channel: String,
    pub registered: bool,
    pub asked_at: String,
    pub transaction_id: String,
}

/// A party's latest state in the registration feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedState {
    pub party: String,
    pub party_type: String,
    pub channel: String,
    pub registered: bool,
    pub changed_at: String,
}

impl Store {
    /// Stores an answer.
    pub fn record_lookup(&mut self, lookup: &Lookup) -> Result<()> {
        self.write(|tx, _| {
            tx.prepare_cached(
                "INSERT INTO registration_lookup
                     (party, party_type, channel, registered, asked_at, transaction_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                lookup.party,
                lookup.party_type,
                lookup.channel,
                lookup.registered,
                lookup.asked_at,
                lookup.transaction_id
            ])?;
            Ok(())
        })
    }

    /// The latest answer about `party` and `channel` given at or after `since`.
    pub fn lookup_since(&self, party: &str, channel: &str, since: &str) -> Result<Option<Lookup>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT party, party_type, channel, registered, asked_at, transaction_id
                 FROM registration_lookup
                 WHERE party = ?1 AND channel = ?2 AND asked_at >= ?3
                 ORDER BY asked_at DESC, id DESC LIMIT 1",
            )?
            .query_row(params![party, channel, since], |row| {
                Ok(Lookup {
                    party: row.get(0)?,
                    party_type: row.get(1)?,
                    channel: row.get(2)?,
                    registered: row.get(3)?,
                    asked_at: row.get(4)?,
                    transaction_id: row.get(5)?,
                })
            })
            .optional()?)
    }

    /// The `count` parties whose latest registration change in the feed is the most recent,
    /// with that change.
    pub fn recent_feed_states(&self, count: u32) -> Result<Vec<FeedState>> {
        let mut statement = self.conn.prepare(
            "SELECT party, party_type, channel, registered, changed_at
             FROM registration_current ORDER BY changed_at DESC, seq DESC LIMIT ?1",
        )?;
        let rows = statement.query_map([count], |row| {
            Ok(FeedState {
                party: row.get(0)?,
                party_type: row.get(1)?,
                channel: row.get(2)?,
                registered: row.get(3)?,
                changed_at: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
