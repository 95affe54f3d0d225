//! The manual pages (`beskedhent.1`, `beskedhent-COMMAND.1`): what clap knows of each command
//! (name, synopsis, options), then what it does, its exit status, the files and environment it
//! uses, and examples, from the table below. Written by the packager's `generate-assets`.

use std::io::Write;

/// What a page says beyond clap's: the description's paragraphs, the exit codes the command
/// gives, and examples (what it does, the command).
struct Page {
    command: &'static str,
    description: &'static [&'static str],
    exit: &'static [(&'static str, &'static str)],
    examples: &'static [(&'static str, &'static str)],
}

/// Exit codes every command can give.
const COMMON_EXIT: &[(&str, &str)] = &[
    ("0", "Done."),
    (
        "1",
        "Could not do the job: the configuration, the replica, an input path or the output. The message on standard error names the file or key and says what to do.",
    ),
    (
        "2",
        "Wrong usage: an unknown argument, or a value of the wrong form.",
    ),
];

const PAGES: &[Page] = &[
    Page {
        command: "",
        description: &[
            "beskedhent keeps a local SQLite replica of what KOMBIT's Beskedfordeler tells a municipality about its letters (DigitalPost_StatusPrint, print status) and its citizens (Digital Post and NemSMS registrations). It pulls the messages (BeskedHent): a token from KOMBIT's STS over mutual TLS, then the queues over AMQP, committing each batch before it is acknowledged.",
            "The replica's tables (message, print_status, letter, registration, rejected, cursor, run, notification) and views (print_status_latest, registration_current) can be queried with sqlite3. Every command has a page of its own: beskedhent-sync(1), beskedhent-letters(1), and so on.",
        ],
        exit: &[
            (
                "3",
                "Done, but some messages were refused; they are kept in the rejected table with their bytes and a reason.",
            ),
            (
                "4",
                "sync: a feed failed. daemon: too many failing passes in a row.",
            ),
            (
                "5",
                "Another run holds a feed's or source's lock, or another writer kept the replica locked for longer than wait_for_replica_seconds (10 min).",
            ),
            (
                "130",
                "Stopped by SIGINT or SIGTERM after committing what it had received.",
            ),
        ],
        examples: &[
            (
                "Check the set-up without consuming anything:",
                "runuser -u beskedhent -- beskedhent check",
            ),
            (
                "Pull every feed once:",
                "runuser -u beskedhent -- beskedhent sync",
            ),
        ],
    },
    Page {
        command: "init",
        description: &[
            "Creates the replica, mode 0600, in a directory of the user beskedhent runs as, or brings an existing one to the current schema after a verified copy (<database>.schema<N>.bak). Safe to run again.",
        ],
        exit: &[],
        examples: &[(
            "Migrate after an upgrade, at a moment of your choosing:",
            "runuser -u beskedhent -- beskedhent init",
        )],
    },
    Page {
        command: "import",
        description: &[
            "Imports envelopes from files and directories, recursively in sorted order; names starting with a dot are skipped; one envelope per regular file. Anything else (a FIFO, a device, a socket) is named in a warning and never read. The replica's own files and any SQLite database are left out.",
            "Inside a directory, a symbolic link is followed only when the user running import or root made it, or whoever made it owns its target; what the walk found is opened relative to its directory, so a file or directory swapped for a link meanwhile is skipped.",
        ],
        exit: &[
            ("3", "Some messages were refused (kept in rejected)."),
            (
                "5",
                "Another run of the same source holds its lock; nothing was imported.",
            ),
            (
                "130",
                "A signal ended the notification round after the import.",
            ),
        ],
        examples: &[(
            "Import a directory of envelopes under the source name archive:",
            "beskedhent import --source archive /srv/envelopes",
        )],
    },
    Page {
        command: "reprocess",
        description: &[
            "Runs every refused message, and every stored one, through the current configuration again (after changing [types.*] or max_message_bytes), in one transaction. Running it again changes nothing.",
        ],
        exit: &[(
            "3",
            "Some messages are still refused, or do not derive under the current configuration.",
        )],
        examples: &[("After adding a registration type:", "beskedhent reprocess")],
    },
    Page {
        command: "sync",
        description: &[
            "Pulls every [[feed]] once, concurrently, until its queue is empty or a limit is reached; then sends the notifications that are due, applies [retention] and writes the metrics file. A delivery is acknowledged only after the transaction holding it has committed and reached the disk.",
            "The package runs it every five minutes as the user beskedhent through beskedhent-sync.timer (systemctl enable --now beskedhent-sync.timer); journalctl -u beskedhent-sync.service shows what the runs said. Exit codes 3, 5 and 130 count as success for that unit.",
        ],
        exit: &[
            ("3", "Some messages were refused (kept in rejected)."),
            (
                "4",
                "A feed failed: the STS, the broker, the queue, or the retries ran out. What was committed is acknowledged; nothing else is.",
            ),
            (
                "5",
                "A feed was skipped: another run holds its lock, or another writer kept the replica locked for longer than wait_for_replica_seconds.",
            ),
            (
                "130",
                "Stopped by SIGINT or SIGTERM after committing and acknowledging what it had received.",
            ),
        ],
        examples: &[(
            "From cron, as the service user:",
            "*/5 * * * * beskedhent /usr/bin/beskedhent --config /etc/beskedhent/config.toml sync",
        )],
    },
    Page {
        command: "daemon",
        description: &[
            "Runs sync passes on the [schedule] cron expression (Danish local time) until SIGINT or SIGTERM, never two at once. Under systemd (Type=notify) it says when it is ready and how each pass went.",
        ],
        exit: &[(
            "4",
            "[schedule] exit_after_failed_passes failing passes in a row.",
        )],
        examples: &[(
            "As the package's service:",
            "systemctl enable --now beskedhent.service",
        )],
    },
    Page {
        command: "check",
        description: &[
            "Checks the configuration, whether notifications can be sent, the certificate (readable, matching its key, valid, days left), a token from the STS and the AMQP login and queue of every feed, without consuming anything. Each line starts with ok, WARN or FAIL.",
        ],
        exit: &[("1", "A check failed.")],
        examples: &[(
            "Until every line says ok:",
            "runuser -u beskedhent -- beskedhent --config /etc/beskedhent/config.toml check",
        )],
    },
    Page {
        command: "letters",
        description: &[
            "Lists letters, one row per message_uuid with its current status, newest first, as a table, CSV or JSON. Prints personal data unmasked: for authorised users. Control characters are escaped in the table.",
        ],
        exit: &[],
        examples: &[
            (
                "Failed letters as CSV:",
                "beskedhent letters --failed --csv > failed.csv",
            ),
            (
                "Letters without a final status after 5 days:",
                "beskedhent letters --overdue 5",
            ),
        ],
    },
    Page {
        command: "show",
        description: &[
            "Shows a letter's whole history (by message_uuid), or one message decoded, with its envelope and payload (by besked_id). Prints personal data unmasked: for authorised users.",
        ],
        exit: &[("1", "The replica holds no letter or message by that id.")],
        examples: &[(
            "A letter's history:",
            "beskedhent show 5f0c5d3e-6a1b-4c2d-9e8f-0a1b2c3d4e5f",
        )],
    },
    Page {
        command: "notify",
        description: &[
            "Records overdue letters and sends the notifications that are due, by the [notify] command or webhook; each event is claimed before it is sent and marked sent only after it was delivered. --dry-run lists what is waiting, CPR numbers masked, and changes nothing.",
        ],
        exit: &[
            ("1", "A send failed; it is retried later."),
            ("130", "A signal ended the round after the send under way."),
        ],
        examples: &[("What would be sent:", "beskedhent notify --dry-run")],
    },
    Page {
        command: "status",
        description: &[
            "Shows each source's position, counts, last run and last successful run, and the replica's totals, then the change feed's newest seq with each export cursor and PostgreSQL mirror that follows it: its position, how many changes it has not read, and why a mirror's last try failed; --json for scripts. With --check it is a Nagios/Icinga plugin: one line OK, WARNING, CRITICAL or UNKNOWN with performance data, thresholds from [monitor].",
        ],
        exit: &[(
            "0-3",
            "With --check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        )],
        examples: &[(
            "From an Icinga agent, through sudo:",
            "sudo -u beskedhent beskedhent --config /etc/beskedhent/config.toml status --check",
        )],
    },
    Page {
        command: "backup",
        description: &[
            "Copies the replica to PATH, which must not exist, through SQLite's online backup while a sync goes on writing: one consistent snapshot, one self-contained file, mode 0600, checked with integrity_check in a private directory beside PATH before it is linked into place. SIGINT or SIGTERM removes the partial copy.",
        ],
        exit: &[("130", "Stopped by a signal; the partial copy was removed.")],
        examples: &[(
            "Daily, from /etc/cron.d/beskedhent-backup:",
            "30 2 * * * beskedhent /usr/bin/beskedhent --config /etc/beskedhent/config.toml backup /var/lib/beskedhent/backup-$(date +\\%F).db",
        )],
    },
    Page {
        command: "prune",
        description: &[
            "Deletes what [retention] says is too old, in batches of 500 rows, each its own short transaction, and prints what went. Deleted content is overwritten (secure_delete) and the WAL truncated.",
        ],
        exit: &[(
            "1",
            "No [retention] period is set: nothing is deleted unless configured.",
        )],
        examples: &[(
            "Apply the retention periods now:",
            "runuser -u beskedhent -- beskedhent prune",
        )],
    },
    Page {
        command: "export",
        description: &[
            "Writes the change feed of letters, statuses or registrations after a position, in seq order, one JSON object a line (or CSV with a header). Every object has its seq, its kind, op (upsert: the thing as it is now; delete: it was deleted, named by its keys only), the schema version of the feed and the thing's id. A letter changed several times since the position appears once, in its latest state.",
            "With --cursor NAME the position is read from the replica and moved to the last seq written only after the output was completely written: flushed to standard output, or, with --output FILE, synced to a private file renamed into place. A consumer that stops half way reads the same changes again; none is ever skipped. The fields are described in docs/export.md and docs/export.schema.json.",
        ],
        exit: &[(
            "1",
            "The output could not be written or was closed early (the cursor did not move), or the position is older than the deletions the replica still tells of ([retention] deletions_days): read everything again from 0.",
        )],
        examples: &[
            (
                "Everything about letters so far:",
                "beskedhent export letters > letters.jsonl",
            ),
            (
                "Follow the statuses in pages of 10,000, keeping the position in the replica:",
                "beskedhent export statuses --cursor esdh --limit 10000 --output /srv/esdh/statuses.jsonl",
            ),
        ],
    },
    Page {
        command: "lookup",
        description: &[
            "Asks SF1601 PostForespoerg whether each party (a CPR number of 10 digits, or DDMMYY-SSSS, or a CVR number of 8 digits; or --from FILE, one a line) is registered for Digital Post and for NemSMS, and prints one line per party and channel: registered, not registered, or FAILED and why. --json and --csv write the same as JSON Lines or CSV. Every number is checked before anything is sent.",
            "It uses the certificate and STS of [sts]: a token for PostForespoerg's entity id, exchanged for an access token that is kept until shortly before it expires and renewed after a 401. A technical failure (a timeout, an HTTP status other than 200, an answer that is not {\"result\": true|false}, TLS) is never taken for an answer: nothing is stored for it. Every answer is kept in registration_lookup; the view registration_known gives per party and channel the newer of the feed's latest change and the latest answer. An answer younger than --max-age (default 1d) is shown again instead of asked for, so a bulk lookup that stopped resumes where it was; questions keep to [lookup] per_second.",
            "--verify-feed asks about the --sample parties (default 20) whose registration changed last in the feed and compares the answers with registration_current. When most disagree, the registered and deregistered identifiers of [types.*] are probably swapped: swap them and run reprocess. See docs/lookup.md.",
        ],
        exit: &[
            (
                "1",
                "--verify-feed: an answer disagrees with the feed; or no [lookup] section, or a file that cannot be read.",
            ),
            (
                "2",
                "A number is not a CPR or CVR number (nothing was asked).",
            ),
            (
                "4",
                "A question failed (the reason is printed per party and channel), or PostForespoerg refused the service agreement (401 or 403: it must name the entity id).",
            ),
        ],
        examples: &[
            (
                "Ask about two parties:",
                "beskedhent lookup 0101701234 12345678",
            ),
            (
                "A list of 100,000 numbers, as CSV, resumable:",
                "beskedhent lookup --from parties.txt --csv > answers.csv",
            ),
            (
                "Check the registration feed's identifiers:",
                "beskedhent lookup --verify-feed",
            ),
        ],
    },
    Page {
        command: "mirror",
        description: &[
            "Copies what changed in the replica since the last copy into the PostgreSQL database [mirror] names: letters, statuses and their postal events, registrations and the messages' metadata (and their envelopes with envelopes = true), each row marked with the installation it comes from. Deletions by prune, forget and reprocess are applied too. import, sync and every daemon pass do this after their run; mirror catches up by hand.",
            "Each batch is one PostgreSQL transaction that also moves the mirror's position, kept in PostgreSQL's mirror_state: a copy cut short leaves nothing half done, and the next one starts where the last committed batch ended. The replica stays the source of truth: a PostgreSQL that is away never stops pulling, and status --check warns when the mirror falls behind by more than lag_warning_minutes. See docs/mirror.md.",
        ],
        exit: &[(
            "1",
            "No [mirror] section, or PostgreSQL could not be reached or refused (the reason is printed; what was committed stays, the next run goes on from there).",
        )],
        examples: &[(
            "Catch up after PostgreSQL was away:",
            "sudo -u beskedhent beskedhent --config /etc/beskedhent/config.toml mirror",
        )],
    },
    Page {
        command: "forget",
        description: &[
            "Erases CPR or CVR numbers everywhere the replica holds them, for data-protection requests: registrations, envelopes and refused messages naming them, notifications, and the number in every text. The numbers are read from standard input (or --from FILE), one a line, so that they never show in ps, shell history or sudo's log. Every number is checked before anything is erased. The copies of the replica beside it that forget cannot reach are named.",
        ],
        exit: &[
            (
                "1",
                "Another process had the replica open, so erased pages could not yet be overwritten in the file: run it again when nothing else uses the replica.",
            ),
            (
                "2",
                "A line is not a CPR or CVR number, or none was given; nothing was erased.",
            ),
        ],
        examples: &[
            (
                "One person, typed at the prompt:",
                "runuser -u beskedhent -- beskedhent forget",
            ),
            (
                "A list in a file:",
                "beskedhent forget --from /root/erase.txt",
            ),
        ],
    },
];

/// The files every page names.
const FILES: &[(&str, &str)] = &[
    (
        "/etc/beskedhent/config.toml",
        "The configuration, when neither --config, BESKEDHENT_CONFIG nor ./config.toml names another. A configuration file must belong to the user beskedhent runs as, or to root, and be writable by nobody else.",
    ),
    (
        "/var/lib/beskedhent/replica.db",
        "The package's replica, with its -wal, -shm and lock files; the user beskedhent's alone.",
    ),
    (
        "/etc/beskedhent/environment",
        "Secrets named by *_env keys, as NAME=value lines, read by systemd for the units.",
    ),
    (
        "/usr/share/doc/beskedhent/",
        "The README, and the reference in docs/: configuration, commands, the replica and its queries, operations, security, performance.",
    ),
];

/// The environment variables every page names.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        crate::env::CONFIG,
        "The configuration file (the command line wins).",
    ),
    (
        crate::env::LOG,
        "The log level or filter: warn, info (the default), debug, beskedhent=debug.",
    ),
    (
        crate::env::LOG_FORMAT,
        "text (the default) or json, one object per line.",
    ),
    (
        crate::env::SKIP_UPGRADE_BACKUP,
        "Migrate a replica without the copy taken first, after a backup made another way.",
    ),
    (crate::env::NOTIFY_SOCKET, "Set by systemd for the daemon."),
];

/// Writes the page of the built command `command`, named `beskedhent` or `beskedhent-NAME`.
pub fn write_page(command: clap::Command, name: &str, out: &mut dyn Write) -> std::io::Result<()> {
    let page = PAGES
        .iter()
        .find(|page| page.command == name)
        .unwrap_or(&PAGES[0]);
    // Every page's footer names the version, a command's page too.
    let command = command.version(env!("CARGO_PKG_VERSION"));
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    for paragraph in page.description {
        writeln!(out, ".PP\n{}", roff(paragraph))?;
    }
    if command.get_arguments().any(|arg| !arg.is_hide_set()) {
        man.render_options_section(out)?;
    }
    if command.get_subcommands().any(|sub| !sub.is_hide_set()) {
        man.render_subcommands_section(out)?;
    }
    // The command's own meaning of a common code comes after the common one.
    let mut exit: Vec<(String, String)> = COMMON_EXIT
        .iter()
        .map(
            |(code, text)| match page.exit.iter().find(|(own, _)| own == code) {
                Some((_, own)) if *code != "0" => (code.to_string(), format!("{text} Also: {own}")),
                _ => (code.to_string(), text.to_string()),
            },
        )
        .collect();
    exit.extend(
        page.exit
            .iter()
            .filter(|(code, _)| !COMMON_EXIT.iter().any(|(common, _)| common == code))
            .map(|(code, text)| (code.to_string(), text.to_string())),
    );
    exit.sort_by_key(|(code, _)| code.split('-').next().and_then(|n| n.parse::<u32>().ok()));
    let exit: Vec<(&str, &str)> = exit
        .iter()
        .map(|(code, text)| (code.as_str(), text.as_str()))
        .collect();
    section(out, "EXIT STATUS", &exit)?;
    section(out, "ENVIRONMENT", ENVIRONMENT)?;
    section(out, "FILES", FILES)?;
    writeln!(out, ".SH EXAMPLES")?;
    for (what, example) in page.examples {
        writeln!(
            out,
            ".PP\n{}\n.PP\n.RS 4\n.nf\n{}\n.fi\n.RE",
            roff(what),
            roff(example)
        )?;
    }
    writeln!(
        out,
        ".SH \"SEE ALSO\"\n{}",
        roff("sqlite3(1), systemctl(1); /usr/share/doc/beskedhent/README.md.gz and docs/")
    )?;
    if command.get_version().is_some() {
        man.render_version_section(out)?;
    }
    Ok(())
}

/// A section of tagged paragraphs.
fn section(out: &mut dyn Write, title: &str, items: &[(&str, &str)]) -> std::io::Result<()> {
    writeln!(out, ".SH \"{title}\"")?;
    for (tag, text) in items {
        writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff(tag), roff(text))?;
    }
    Ok(())
}

/// Text made safe for roff: backslashes escaped, and no line starting with a control character.
fn roff(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    if text.starts_with('.') || text.starts_with('\'') {
        format!("\\&{text}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_a_page_with_every_section() {
        use clap::CommandFactory;
        let mut command = super::super::cli::Cli::command().disable_help_subcommand(true);
        command.build();
        for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            let name = sub.get_name();
            assert!(
                PAGES.iter().any(|page| page.command == name),
                "no manual text for `{name}`"
            );
            let mut out = Vec::new();
            write_page(sub.clone(), name, &mut out).expect("page");
            let page = String::from_utf8(out).expect("utf-8");
            for section in [
                ".SH NAME",
                ".SH SYNOPSIS",
                ".SH DESCRIPTION",
                ".SH \"EXIT STATUS\"",
                ".SH \"ENVIRONMENT\"",
                ".SH \"FILES\"",
                ".SH EXAMPLES",
            ] {
                assert!(page.contains(section), "{name}: {section}");
            }
            assert!(page.contains("beskedhent"), "{name}");
        }
    }
}
