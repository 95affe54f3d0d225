//! The `beskedhent` binary: parses arguments, sets up logging, runs a command, and maps the
//! result to an exit code. See the README for the codes.

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use beskedhent::commands::cli::{Cli, Command};
use beskedhent::commands::{check, letters, status};
use beskedhent::config::Config;
use beskedhent::ops::{monitor, notify, schedule};
use beskedhent::pull::{feed as sync, import};
use beskedhent::replica::Store;
use beskedhent::{exit, logging};

fn main() -> ExitCode {
    keep_memory_private();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // As a monitoring plugin, a usage mistake is UNKNOWN (exit 3), on one line.
        Err(error)
            if !matches!(
                error.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) && std::env::args_os()
                .any(|arg| arg == "--check" || arg.as_encoded_bytes().starts_with(b"--check=")) =>
        {
            let text = error.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            beskedhent::sayln!(
                "{}",
                logging::safe_line(&format!(
                    "UNKNOWN - {}",
                    first.trim_start_matches("error: ")
                ))
            );
            return ExitCode::from(monitor::State::Unknown.exit_code());
        }
        Err(error)
            if matches!(
                error.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            // Help and version go to standard output; a failure to write them is an error.
            use std::io::Write as _;
            return match error.print().and_then(|()| std::io::stdout().flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(write) if write.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(write) => {
                    // Standard error may be gone too: that is no reason to panic.
                    let _ = writeln!(
                        std::io::stderr(),
                        "error: cannot write to standard output: {write}"
                    );
                    ExitCode::from(exit::ERROR)
                }
            };
        }
        // A usage mistake: said like every error, masked and one line per line (an argument
        // with a newline in it cannot forge one).
        Err(error) => {
            use std::io::Write as _;
            // Standard error may be closed or full: the exit code still says it.
            let _ = writeln!(
                std::io::stderr(),
                "{}",
                usage_error(&error.render().to_string())
            );
            return ExitCode::from(exit::USAGE);
        }
    };
    // reqwest and lapin both use rustls; make one crypto provider the process default.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    logging::init();
    bound_the_heap();
    // A monitoring plugin's every failure is UNKNOWN, also one to write its line.
    let plugin = matches!(cli.command, Command::Status { check: true, .. });
    let code = match run(cli) {
        Ok(code) => code,
        Err(error) => {
            logging::print_error(&format!("{error:#}"));
            exit::ERROR
        }
    };
    // Output that could not be written: a reader that went away (`| head`) is its own
    // business; anything else (a full disk) is an error, said on standard error.
    match logging::stdout_failure() {
        Some(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(code),
        Some(error) => {
            logging::print_error(&format!("cannot write to standard output: {error}"));
            ExitCode::from(if plugin {
                monitor::State::Unknown.exit_code()
            } else if code == exit::OK {
                exit::ERROR
            } else {
                code
            })
        }
        None => ExitCode::from(code),
    }
}

/// Marks the process not dumpable: no core file (it would hold the key, the token, the
/// secrets from the environment and personal data), and no reading of its memory or
/// `/proc/PID/environ` by other processes of the same user, such as a `[notify] command`.
fn keep_memory_private() {
    // SAFETY: prctl(2) with PR_SET_DUMPABLE only sets a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// Large buffers (a message's bytes, its decoded payload) are mapped on their own and given
/// back when freed. By default the C allocator raises this threshold to the largest buffer freed
/// so far and serves later ones from its heaps, which keep the memory: a run through several
/// large messages would then hold more than the bound promises.
fn bound_the_heap() {
    // SAFETY: mallopt only changes allocator settings; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

/// clap's text about a usage mistake, made safe: the arguments that have control characters in
/// them escaped wherever the text quotes them, then each line masked and escaped.
fn usage_error(text: &str) -> String {
    let mut text = text.trim_end().to_owned();
    for arg in std::env::args_os().skip(1) {
        let arg = arg.to_string_lossy().into_owned();
        let value = arg.split_once('=').map(|(_, value)| value.to_owned());
        for quoted in std::iter::once(arg).chain(value) {
            let escaped = beskedhent::mask::escape_controls(&quoted);
            if escaped != quoted.as_str() && !quoted.is_empty() {
                text = text.replace(&quoted, &escaped);
            }
        }
    }
    // An argument is quoted as given: a CPR number in it is masked even where letters touch
    // it (`--source a0101701234`), which the masking of logs leaves alone; and a number parsed
    // from it is quoted without its leading zeros (`101701234 is not in 0..=36500`).
    for arg in std::env::args_os().skip(1) {
        let arg = arg.to_string_lossy();
        if !beskedhent::mask::holds_cpr_number(&arg) {
            continue;
        }
        for run in arg.split(|c: char| !c.is_ascii_digit()) {
            let parsed = run.trim_start_matches('0');
            if parsed.len() >= 6 {
                text = text.replace(parsed, &"*".repeat(parsed.len()));
            }
        }
    }
    let text = beskedhent::mask::mask_cpr_among_letters(&text);
    text.lines()
        .map(logging::safe_line)
        .collect::<Vec<_>>()
        .join("\n")
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run(cli: Cli) -> Result<u8> {
    if let Command::GenerateAssets { dir } = &cli.command {
        // Needs no configuration: run by packagers at build time.
        beskedhent::commands::cli::generate_assets(dir)
            .map_err(|error| anyhow::anyhow!("cannot write into `{}`: {error}", dir.display()))?;
        return Ok(exit::OK);
    }
    let (config_path, origin) = cli.config_path();
    if let Command::Status { check: true, .. } = cli.command {
        // A plugin: every failure is UNKNOWN (exit 3) on one line, never a bare error.
        let verdict = match Config::load(&config_path) {
            Ok(config) => monitor::check(&config, chrono::Utc::now()),
            Err(error) => monitor::Verdict {
                state: monitor::State::Unknown,
                line: logging::safe_line(&format!("UNKNOWN - {error:#}")),
            },
        };
        beskedhent::sayln!("{}", verdict.line);
        return Ok(verdict.state.exit_code());
    }
    let config = Config::load(&config_path)?;
    say_which_configuration(&config_path, origin);
    match cli.command {
        Command::Init => {
            let existed = config.database.exists();
            let before = Store::open_existing(&config.database)
                .and_then(|store| store.schema_version())
                .ok();
            let store = Store::open(&config.database)?;
            let now = store.schema_version()?;
            let line = match before {
                Some(before) if before < now => format!(
                    "migrated: database {} from schema {before} to {now}",
                    config.database.display()
                ),
                _ => format!(
                    "{} database {} (schema {now})",
                    if existed { "up to date:" } else { "created" },
                    config.database.display()
                ),
            };
            beskedhent::sayln!("{}", logging::safe_line(&line));
            Ok(exit::OK)
        }
        Command::Import { paths, source } => {
            let mut store = Store::open(&config.database)?;
            // One run of a source at a time, as `sync` does for a feed: two would record each
            // other's counts and take each other for killed.
            let _lock = match beskedhent::pull::feed::FeedLock::acquire(&config.database, &source) {
                Ok(lock) => lock,
                Err(beskedhent::pull::feed::LockError::Held { holder, path, .. }) => {
                    logging::print_error(&format!(
                        "source `{source}` is being written by another beskedhent run ({holder}, lock file `{path}`); wait for it to finish, or import under another --source"
                    ));
                    return Ok(exit::LOCKED);
                }
                Err(error) => return Err(error.into()),
            };
            store.record_events(notify::rules(config.notify.as_ref()));
            let summary = import::import(&mut store, &config.decoder(), &paths, &source)?;
            beskedhent::sayln!("{}", summary.line());
            let mut interrupted = false;
            if let Some(settings) = &config.notify {
                let stop = notify::stop_on_signals();
                match notify::deliver(&mut store, settings, &stop) {
                    Ok(done) => beskedhent::sayln!("{}", done.line(&store)),
                    Err(error) => {
                        logging::print_error(&format!("cannot send notifications: {error:#}"))
                    }
                }
                interrupted = stop();
            }
            if let Some(metrics) = &config.metrics {
                let expiry = config
                    .sts()
                    .and_then(|sts| beskedhent::pull::credentials::Credentials::load(sts).ok())
                    .and_then(|credentials| credentials.info().ok())
                    .map(|info| info.not_after);
                if let Err(error) = monitor::write_metrics(&store, &metrics.textfile, expiry) {
                    logging::print_error(&format!("{error:#}"));
                }
            }
            Ok(if summary.unreadable > 0 || summary.skipped > 0 {
                exit::ERROR
            } else if interrupted {
                exit::INTERRUPTED
            } else if summary.counts.rejected > 0 {
                exit::REJECTED
            } else {
                exit::OK
            })
        }
        Command::Reprocess => {
            let mut store = Store::open_required(&config.database)?;
            let decoder = config.decoder();
            let done =
                store.reprocess(&|raw: &[u8]| decoder.decode(raw), config.max_message_bytes)?;
            beskedhent::sayln!(
                "reprocessed: {} refused messages taken in, {} already stored, {} still refused; {} messages derived anew, {} not derivable (rows kept)",
                done.taken_in,
                done.already_stored,
                done.still_rejected,
                done.rederived,
                done.not_derivable
            );
            Ok(if done.still_rejected > 0 || done.not_derivable > 0 {
                exit::REJECTED
            } else {
                exit::OK
            })
        }
        Command::Sync => {
            let puller = sync::Puller::new(&config, "sync")?;
            runtime()?.block_on(async {
                let shutdown = sync::shutdown_on_signals();
                let report = sync::run_once(puller, shutdown).await;
                for line in report.lines() {
                    beskedhent::sayln!("{}", logging::safe_line(&line));
                }
                Ok(report.exit_code())
            })
        }
        Command::Daemon => {
            let schedule = config.schedule()?.clone();
            let puller = sync::Puller::new(&config, "daemon")?;
            runtime()?.block_on(async {
                let shutdown = sync::shutdown_on_signals();
                schedule::run(puller, &schedule, shutdown).await
            })
        }
        Command::Check => {
            let passed = runtime()?.block_on(check::check(&config));
            Ok(if passed { exit::OK } else { exit::ERROR })
        }
        Command::Letters {
            failed,
            overdue,
            since,
            until,
            kanal,
            limit,
            csv,
            json,
        } => {
            let filter = letters::Filter {
                failed,
                overdue_days: overdue,
                since,
                until,
                kanal,
                limit,
            };
            let store = Store::open_existing(&config.database)?;
            store.require_current()?;
            let rows = letters::list(&store, &filter)?;
            let format = if csv {
                letters::Format::Csv
            } else if json {
                letters::Format::Json
            } else {
                letters::Format::Table
            };
            beskedhent::say!("{}", letters::render(letters::columns(), &rows, format));
            Ok(exit::OK)
        }
        Command::Show { id } => {
            let store = Store::open_existing(&config.database)?;
            store.require_current()?;
            match letters::show(&store, &id)? {
                Some(text) => {
                    beskedhent::say!("{text}");
                    Ok(exit::OK)
                }
                None => {
                    logging::print_error(&format!(
                        "no letter (message_uuid) or message (besked_id) `{}` in {}",
                        beskedhent::mask::cap(&beskedhent::mask::mask_cpr_among_letters(&id), 100),
                        config.database.display()
                    ));
                    Ok(exit::ERROR)
                }
            }
        }
        Command::Notify { dry_run } => {
            let Some(settings) = &config.notify else {
                anyhow::bail!(
                    "`{}` has no [notify] section; add `command` or `webhook` (see the README)",
                    config.path.display()
                );
            };
            if dry_run {
                // Read-only: nothing recorded, nothing sent.
                let store = Store::open_existing(&config.database)?;
                store.require_current()?;
                let overdue = store.unrecorded_overdue(settings.overdue_days)?;
                let pending = store.unsent_notifications(u32::MAX)?;
                let rows: Vec<Vec<rusqlite::types::Value>> = pending
                    .iter()
                    .map(|event| {
                        use rusqlite::types::Value;
                        vec![
                            Value::Integer(event.id),
                            // For operators, like the log: CPR numbers masked.
                            Value::Text(beskedhent::mask::mask_cpr(&event.key).into_owned()),
                            Value::Text(event.event.clone()),
                            Value::Text(event.created_at.clone()),
                            Value::Integer(event.attempts),
                            event.last_error.as_deref().map_or(Value::Null, |error| {
                                Value::Text(beskedhent::mask::mask_cpr(error).into_owned())
                            }),
                        ]
                    })
                    .collect();
                beskedhent::say!(
                    "{}",
                    letters::render(
                        &["id", "key", "event", "created_at", "attempts", "last_error"],
                        &rows,
                        letters::Format::Table
                    )
                );
                beskedhent::sayln!(
                    "{} pending; {overdue} overdue letters not recorded yet (the next delivery records them); nothing sent or changed (--dry-run)",
                    pending.len()
                );
                return Ok(exit::OK);
            }
            let mut store = Store::open_required(&config.database)?;
            store.record_events(notify::rules(Some(settings)));
            let stop = notify::stop_on_signals();
            let done = notify::deliver(&mut store, settings, &stop)?;
            beskedhent::sayln!("{}", done.line(&store));
            Ok(if stop() {
                exit::INTERRUPTED
            } else if done.failed > 0 {
                exit::ERROR
            } else {
                exit::OK
            })
        }
        Command::GenerateAssets { .. } => unreachable!("handled before the configuration"),
        Command::Backup { path } => {
            // Read-only: a backup of the replica as it is, never migrated first.
            let store = Store::open_existing(&config.database)?;
            let done = store.backup_to(&path)?;
            beskedhent::sayln!(
                "{}",
                logging::safe_line(&format!(
                    "backup written: {} ({} bytes, schema {}, integrity ok) in {:.1} s",
                    done.path.display(),
                    done.bytes,
                    store.schema_version()?,
                    done.elapsed.as_secs_f64()
                ))
            );
            Ok(exit::OK)
        }
        Command::Prune => {
            if !config.retention.is_set() {
                anyhow::bail!(
                    "`{}` sets no retention period ([retention] with a key above 0); nothing is deleted unless configured (see the README)",
                    config.path.display()
                );
            }
            let mut store = Store::open_required(&config.database)?;
            let pruned = store.prune(&config.retention)?;
            beskedhent::sayln!("{}", pruned.line());
            Ok(exit::OK)
        }
        Command::Forget { party, from } => forget(&config, party, from),
        Command::Status { json, .. } => {
            let store = Store::open_existing(&config.database)?;
            let report = status::report(&store)?;
            if json {
                beskedhent::sayln!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                beskedhent::say!("{}", report.to_text());
            }
            Ok(exit::OK)
        }
    }
}

/// Says which configuration file was read: at `info` when it was found in the working
/// directory (where it may not be the one the operator meant), else at `debug`.
fn say_which_configuration(
    path: &std::path::Path,
    origin: beskedhent::commands::cli::ConfigOrigin,
) {
    let shown = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    match origin {
        beskedhent::commands::cli::ConfigOrigin::WorkingDirectory => tracing::info!(
            "configuration `{}` (config.toml in the working directory; --config names another)",
            shown.display()
        ),
        _ => tracing::debug!("configuration `{}`", shown.display()),
    }
}

/// `forget`: the numbers from standard input, `--from FILE` or (with a warning) the command
/// line, each checked before anything is erased.
fn forget(config: &Config, party: Option<String>, from: Option<std::path::PathBuf>) -> Result<u8> {
    let text = match (party, from) {
        (Some(party), _) => {
            tracing::warn!(
                "a number given on the command line can be seen by every user of this machine (`ps`) and stays in shell history and sudo's log; give it on standard input instead (`beskedhent forget`, then type it, or `beskedhent forget --from FILE`)"
            );
            party
        }
        (None, Some(file)) => beskedhent::files::read_small_text(&file).map_err(|error| {
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
                .take(beskedhent::files::MAX_SETTINGS_FILE)
                .read_to_string(&mut text)
                .map_err(|error| anyhow::anyhow!("cannot read standard input: {error}"))?;
            text
        }
    };
    let mut parties = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        match beskedhent::replica::Party::parse(line) {
            Ok(party) => parties.push(party),
            Err(error) => {
                logging::print_error(&format!(
                    "line {}: {error:#}; nothing was erased",
                    number + 1
                ));
                return Ok(exit::USAGE);
            }
        }
    }
    if parties.is_empty() {
        logging::print_error(
            "no CPR or CVR number was given (one a line on standard input, or --from FILE); nothing was erased",
        );
        return Ok(exit::USAGE);
    }
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
    let mut store = Store::open_required(&config.database)?;
    let mut all_truncated = true;
    for party in &parties {
        let done = store.forget(party)?;
        all_truncated &= done.wal_truncated;
        beskedhent::sayln!(
            "{}",
            logging::safe_line(&forgotten_line(config, party, &done))
        );
    }
    let copies = beskedhent::replica::copies_beside(&config.database);
    if !copies.is_empty() {
        beskedhent::sayln!(
            "{}",
            logging::safe_line(&format!(
                "copies of the replica that forget cannot reach keep their own data; erase in them too, or delete them: {}",
                copies.join(", ")
            ))
        );
    }
    if !all_truncated {
        logging::print_error(
            "another process has the replica open, so the erased pages could not yet be written over in the database file; run `beskedhent forget` again when nothing else uses the replica",
        );
        return Ok(exit::ERROR);
    }
    Ok(exit::OK)
}

/// What `forget` did for one number, in one line.
fn forgotten_line(
    config: &Config,
    party: &beskedhent::replica::Party,
    done: &beskedhent::replica::Forgotten,
) -> String {
    let changed =
        done.registrations + done.envelopes + done.rejected + done.notifications + done.texts;
    if changed == 0 {
        format!(
            "nothing in {} names {}; nothing was changed (check the number)",
            config.database.display(),
            party.number
        )
    } else {
        format!(
            "forgot {}: {} registrations deleted, {} envelopes dropped (rows kept, envelope_pruned_at set), {} refused messages deleted, {} notifications deleted, {} texts masked",
            party.number,
            done.registrations,
            done.envelopes,
            done.rejected,
            done.notifications,
            done.texts
        )
    }
}
