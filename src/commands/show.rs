//! `show ID`: a letter's whole history (by `message_uuid`), or one message decoded, envelope
//! and payload (by `besked_id`). Prints personal data unmasked, for authorised users; control
//! characters are escaped.

use std::fmt::Write as _;

use anyhow::Result;

use crate::commands::rows::{Format, fields, push_text, render};
use crate::config::Config;
use crate::exit;
use crate::replica::Store;
use crate::replica::queries::{HISTORY_COLUMNS, LETTER_COLUMNS, MESSAGE_COLUMNS};

pub fn run(config: &Config, id: &str) -> Result<u8> {
    let store = Store::open_existing(&config.database)?;
    store.require_current()?;
    match show(&store, id)? {
        Some(text) => {
            crate::say_data!("{text}");
            Ok(exit::OK)
        }
        None => {
            crate::logging::print_error(&format!(
                "no letter (message_uuid) or message (besked_id) `{}` in {}",
                crate::mask::cap(id, 100),
                config.database.display()
            ));
            Ok(exit::ERROR)
        }
    }
}

/// The text `show` prints for `id`; None when the replica has neither a letter nor a message
/// by that id.
pub fn show(store: &Store, id: &str) -> Result<Option<String>> {
    let id = id.trim();
    if let Some(current) = store.letter(id)? {
        let mut out = String::from("letter\n");
        fields(&mut out, LETTER_COLUMNS, &current);
        let history = store.letter_history(id)?;
        let _ = writeln!(out, "\nstatuses, oldest first ({})", history.len());
        out.push_str(&render(HISTORY_COLUMNS, &history, Format::Table));
        return Ok(Some(out));
    }
    let besked_id = crate::decode::message::canonical_besked_id(id.to_owned());
    let Some((seq, row)) = store.message_row(&besked_id)? else {
        return Ok(None);
    };
    let mut out = String::from("message\n");
    fields(&mut out, MESSAGE_COLUMNS, &row);
    for derived in store.derived_rows(seq)? {
        let _ = writeln!(out, "\n{}", derived.title);
        let names: Vec<&str> = derived.names.iter().map(String::as_str).collect();
        fields(&mut out, &names, &derived.values);
    }
    let (envelope, pruned_at) = store.envelope_of(seq)?;
    out.push_str("\nenvelope\n");
    if let Some(at) = pruned_at {
        let _ = write!(out, "(dropped at {at}, by [retention] or `forget`)");
    }
    // Decoded before anything is written out (decoding may need copies for a moment), then
    // written straight into the text, once, each copy dropped when written: an envelope may be
    // as large as `max_message_bytes`, and its payload three quarters of that.
    let payload = crate::decode::envelope::base64_payload(&envelope);
    push_text(&mut out, &envelope);
    drop(envelope);
    if let Some(payload) = payload {
        out.push_str("\n\npayload (decoded from Base64)\n");
        push_text(&mut out, &payload);
    }
    out.push('\n');
    Ok(Some(out))
}
