//! `forget`: erases CPR or CVR numbers everywhere the replica holds them (data-protection
//! requests). The numbers come from standard input or a file, one a line, so that they never
//! show in `ps`, shell history or sudo's log.

use std::path::PathBuf;

use anyhow::Result;

use crate::config::Config;
use crate::exit;
use crate::replica::Store;

/// The numbers from standard input, `--from FILE` or (with a warning) the command line, each
/// checked before anything is erased.
pub fn run(config: &Config, party: Option<String>, from: Option<PathBuf>) -> Result<u8> {
    let text = numbers_text(party, from)?;
    let mut parties = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        match crate::replica::Party::parse(line) {
            Ok(party) => parties.push(party),
            Err(error) => {
                crate::logging::print_error(&format!(
                    "line {}: {error:#}; nothing was erased",
                    number + 1
                ));
                return Ok(exit::USAGE);
            }
        }
    }
    if parties.is_empty() {
        crate::logging::print_error(
            "no CPR or CVR number was given (one a line on standard input, or --from FILE); nothing was erased",
        );
        return Ok(exit::USAGE);
    }
    erase(config, &parties)
}

/// The text holding the numbers: the one on the command line, a file's, or standard input's.
fn numbers_text(party: Option<String>, from: Option<PathBuf>) -> Result<String> {
    Ok(match (party, from) {
        (Some(party), _) => {
            tracing::warn!(
                "a number given on the command line can be seen by every user of this machine (`ps`) and stays in shell history and sudo's log; give it on standard input instead (`beskedhent forget`, then type it, or `beskedhent forget --from FILE`)"
            );
            party
        }
        (None, Some(file)) => crate::files::read_small_text(&file).map_err(|error| {
            anyhow::anyhow!(
                "cannot read the numbers to forget from `{}`: {error}",
                file.display()
            )
        })?,
        (None, None) => {
            use std::io::{IsTerminal as _, Read as _};
            if std::io::stdin().is_terminal() {
                eprintln!("CPR or CVR numbers to forget, one a line; end with Ctrl-D:");
            }
            let mut text = String::new();
            std::io::stdin()
                .take(crate::files::MAX_SETTINGS_FILE)
                .read_to_string(&mut text)
                .map_err(|error| anyhow::anyhow!("cannot read standard input: {error}"))?;
            text
        }
    })
}

/// Erases each of `parties`, once all of them are known to be numbers it may erase.
fn erase(config: &Config, parties: &[crate::replica::Party]) -> Result<u8> {
    // The installation's own CVR numbers are in every envelope it receives.
    let own: Vec<String> = config
        .sts()
        .map(|sts| sts.cvr.clone())
        .into_iter()
        .chain(config.feed_cvrs())
        .collect();
    if let Some(party) = parties.iter().find(|party| own.contains(&party.number)) {
        anyhow::bail!(
            "{} is this installation's own CVR number (in [sts] or a [[feed]]): it is in every envelope, and forgetting it would drop them all; nothing was erased",
            party.number
        );
    }
    let mut store = Store::open_required(&config.database, None)?;
    let mut all_truncated = true;
    for party in parties {
        let progress = crate::progress::Progress::start("forget", "envelopes");
        let done = store.forget(party, &progress.counter())?;
        drop(progress);
        all_truncated &= done.wal_truncated;
        crate::sayln!("{}", forgotten_line(config, party, &done));
    }
    // The PostgreSQL mirror is erased too, now rather than after the next run.
    if let Some(mirror) = &config.mirror {
        match crate::mirror::run(&mut store, &config.database, mirror, &|| false) {
            Ok(done) => crate::sayln!("{}", done.line(mirror)),
            Err(error) => {
                crate::logging::print_error(&format!(
                    "the PostgreSQL mirror still holds what was erased: {error:#}; run `beskedhent mirror` when PostgreSQL is back"
                ));
                return Ok(exit::ERROR);
            }
        }
    }
    let copies = crate::replica::copies_beside(&config.database);
    if !copies.is_empty() {
        crate::sayln!(
            "copies of the replica that forget cannot reach keep their own data; erase in them too, or delete them: {}",
            copies.join(", ")
        );
    }
    if !all_truncated {
        crate::logging::print_error(
            "another process has the replica open, so the erased pages could not yet be written over in the database file; run `beskedhent forget` again when nothing else uses the replica",
        );
        return Ok(exit::ERROR);
    }
    Ok(exit::OK)
}

/// What `forget` did for one number, in one line.
fn forgotten_line(
    config: &Config,
    party: &crate::replica::Party,
    done: &crate::replica::Forgotten,
) -> String {
    let changed = done.registrations
        + done.envelopes
        + done.rejected
        + done.notifications
        + done.lookups
        + done.texts;
    if changed == 0 {
        format!(
            "nothing in {} names {}; nothing was changed (check the number)",
            config.database.display(),
            party.number
        )
    } else {
        format!(
            "forgot {}: {} registrations deleted, {} envelopes dropped (rows kept, envelope_pruned_at set), {} refused messages deleted, {} notifications deleted, {} lookups deleted, {} texts masked",
            party.number,
            done.registrations,
            done.envelopes,
            done.rejected,
            done.notifications,
            done.lookups,
            done.texts
        )
    }
}
