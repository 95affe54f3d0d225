//! Command-line arguments (clap). Raw arguments only; `main` turns them into work.

use std::path::PathBuf;

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

use clap::{Parser, Subcommand};

/// Keeps a local SQLite replica of what KOMBIT's Beskedfordeler says about a municipality's
/// letters (print status) and citizens (Digital Post and NemSMS registrations).
#[derive(Debug, Parser)]
#[command(
    name = "beskedhent",
    version,
    about,
    long_about = None,
    after_long_help = "EXIT STATUS: 0 done; 1 could not do the job (configuration, database, unreadable input); 2 wrong usage; 3 done, but messages were refused (kept in `rejected`); 4 sync: a feed failed (daemon: too many failing passes in a row); 5 sync: another run holds a feed's lock; 130 stopped by SIGINT/SIGTERM after committing. status --check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.\n\nENVIRONMENT: BESKEDHENT_CONFIG (the configuration file), BESKEDHENT_LOG (level or filter: warn, info, debug), BESKEDHENT_LOG_FORMAT (text or json), BESKEDHENT_SKIP_UPGRADE_BACKUP (migrate without the backup), NOTIFY_SOCKET (set by systemd for the daemon).\n\nFILES: /etc/beskedhent/config.toml (the configuration when ./config.toml does not exist; a configuration file must belong to the invoking user or root and be writable by nobody else), /var/lib/beskedhent/replica.db (the package's replica), /usr/share/doc/beskedhent/ (the README, and docs/: configuration keys, commands, tables and queries, operations, security). Every command has a manual page: man beskedhent-sync, ..."
)]
pub struct Cli {
    /// The configuration file [default: ./config.toml if it exists and belongs to you (or
    /// root) and nobody else can write it, else /etc/beskedhent/config.toml]
    #[arg(long, global = true, env = crate::env::CONFIG, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// Where the configuration comes from, for the one line that says which file was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// `--config` or `BESKEDHENT_CONFIG`.
    Named,
    /// `config.toml` in the working directory (a checkout, a test).
    WorkingDirectory,
    /// [`crate::config::SYSTEM_CONFIG`].
    System,
}

impl Cli {
    /// The configuration file to read, and why that one. A `config.toml` in the working
    /// directory is taken when it exists at all (a link to nowhere included), so that one that
    /// cannot be read, or that another user owns, is an error rather than silently passed
    /// over for another file.
    pub fn config_path(&self) -> (PathBuf, ConfigOrigin) {
        match &self.config {
            Some(path) => (path.clone(), ConfigOrigin::Named),
            None => {
                let local = PathBuf::from("config.toml");
                if std::fs::symlink_metadata(&local).is_ok() {
                    (local, ConfigOrigin::WorkingDirectory)
                } else {
                    (
                        PathBuf::from(crate::config::SYSTEM_CONFIG),
                        ConfigOrigin::System,
                    )
                }
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database, or bring its schema up to date.
    Init,
    /// Import envelopes from files and directories (recursively, in sorted order).
    Import {
        /// Files (one envelope each) and directories.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// The name the files are recorded under in `message.source` and `cursor`.
        #[arg(long, default_value = "import", value_parser = source_name)]
        source: String,
    },
    /// Run refused messages, and messages of no known kind, through the current configuration
    /// again (after changing `[types.*]` or `max_message_bytes`).
    Reprocess,
    /// Pull every feed once, until its queue is empty (for cron).
    Sync,
    /// Pull every feed on the `[schedule]` cron expression until stopped.
    Daemon,
    /// Check configuration, certificate, token and AMQP login without consuming anything.
    Check,
    /// List letters (one row per message_uuid, with its current status). Prints personal
    /// data unmasked: for authorised users.
    #[command(
        after_help = "Times are UTC. --since and --until take a date (2026-03-01; --until includes that day) or a timestamp (with an offset, or without one as Danish local time), and apply to the letter's latest status."
    )]
    Letters {
        /// Only letters whose current status is a failure.
        #[arg(long)]
        failed: bool,
        /// Only letters without a final status whose latest status is older than DAYS days.
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(0..=36_500))]
        overdue: Option<u32>,
        /// Only letters whose latest status is at or after this date or time.
        #[arg(long, value_name = "WHEN", value_parser = since_bound)]
        since: Option<String>,
        /// Only letters whose latest status is before this time (or on or before this date).
        #[arg(long, value_name = "WHEN", value_parser = until_bound)]
        until: Option<String>,
        /// Only letters of this channel, e.g. "Digital Post" or "Fysisk Post".
        #[arg(long)]
        kanal: Option<String>,
        /// At most this many letters, newest first (0 for all).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(..=i64::MAX as u64))]
        limit: u64,
        /// Print CSV (RFC 4180, every column, times in UTC) instead of a table.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// Print a JSON array (every column, times in UTC) instead of a table.
        #[arg(long)]
        json: bool,
        /// Show every column in the table, not only the letter, its event, when and the error.
        #[arg(long, conflicts_with_all = ["csv", "json"])]
        wide: bool,
        /// Show times in the table in UTC rather than Danish local time.
        #[arg(long, conflicts_with_all = ["csv", "json"])]
        utc: bool,
    },
    /// Show a letter's whole history (by message_uuid) or one message decoded, envelope and
    /// payload (by besked_id). Prints personal data unmasked: for authorised users.
    Show {
        /// A message_uuid or a besked_id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Send the notifications that are due (records overdue letters first). Needs [notify].
    Notify {
        /// Only list what is waiting to be sent; send nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write the manual page and shell completions into DIR (for packagers).
    #[command(hide = true)]
    GenerateAssets {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Show each source's position, counts, last run and last successful run, and who follows the change feed.
    Status {
        /// Print JSON instead of a table.
        #[arg(long, conflicts_with = "check")]
        json: bool,
        /// Act as a Nagios/Icinga plugin: one line `OK|WARNING|CRITICAL|UNKNOWN - ...` with
        /// performance data, exit 0, 1, 2 or 3. Thresholds are in [monitor].
        #[arg(long)]
        check: bool,
    },
    /// Copy the database to PATH (mode 0600), consistently even while a sync writes, and
    /// verify the copy before reporting success.
    Backup {
        /// The new file; must not exist.
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Delete what [retention] says is too old, in small batches; print what went.
    Prune,
    /// Write the changes to letters, statuses or registrations after a position, in order, as
    /// JSON Lines (or CSV): each with its seq, for a downstream system to follow. Deletions
    /// (prune, forget) are changes too. Prints personal data unmasked: for authorised systems.
    #[command(
        after_help = "With --cursor NAME the position is kept in the replica and moved only once everything was written (and, with --output, the file synced and renamed into place): a consumer that fails reads the same changes again, never skips one."
    )]
    Export {
        /// The feed: letters (each changed letter once, in its latest state), statuses (every
        /// status row) or registrations.
        #[arg(value_name = "FEED", value_parser = ["letters", "statuses", "registrations"])]
        feed: String,
        /// Start after this seq (0: from the beginning); with --cursor, start the cursor
        /// there.
        #[arg(long, value_name = "SEQ", value_parser = clap::value_parser!(i64).range(0..))]
        after: Option<i64>,
        /// Start where the cursor NAME stands, and move it to the last change written.
        #[arg(long, value_name = "NAME", value_parser = cursor_name)]
        cursor: Option<String>,
        /// At most this many changes (0: all).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(..=i64::MAX as u64))]
        limit: u64,
        /// Write CSV (RFC 4180, a header line) instead of JSON Lines.
        #[arg(long)]
        csv: bool,
        /// Write to FILE (created private, renamed into place when complete) instead of
        /// standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
    /// Copy what changed into the PostgreSQL mirror now ([mirror]).
    ///
    /// Every import, sync and daemon pass does this after its run; `mirror` catches up by
    /// hand, e.g. after PostgreSQL was away. Each batch is one PostgreSQL transaction.
    Mirror,
    /// Ask PostForespoerg whether parties are registered for Digital Post and NemSMS ([lookup]).
    ///
    /// One line per party and channel: registered, not registered, or why there is no answer
    /// (a failure is never taken for an answer). Every answer is kept in registration_lookup;
    /// an answer younger than --max-age is shown again instead of asked for.
    #[command(
        after_help = "With --verify-feed, the parties whose registration changed last in the feed are asked about, and the answers compared with registration_current: exit 0 when they agree, 1 when any disagrees (most disagreeing: the registered and deregistered identifiers of [types.*] are probably swapped), 4 when nothing could be compared."
    )]
    Lookup(LookupArgs),
    /// Erase CPR or CVR numbers everywhere the replica holds them (data-protection requests).
    ///
    /// Registrations, envelopes and refused messages naming them, notifications. The numbers
    /// are read from standard input (or --from FILE), one a line, so that they never show in
    /// `ps` or shell history.
    Forget {
        /// Read the numbers from this file (one a line) instead of standard input.
        #[arg(long, value_name = "FILE", conflicts_with = "party")]
        from: Option<PathBuf>,
        /// A number on the command line (visible to every user in `ps`, kept in shell
        /// history and sudo's log: use standard input instead). 10-digit CPR (DDMMYYSSSS,
        /// DDMMYY-SSSS or urn:oio:cpr-nr:DDMMYYSSSS) or 8-digit CVR number (NNNNNNNN or
        /// urn:oio:cvr-nr:NNNNNNNN).
        #[arg(value_name = "PARTY", value_parser = party)]
        party: Option<String>,
    },
}

/// The command line, or, when clap had something to say instead (help, the version, a usage
/// mistake), the exit code after saying it.
pub fn parse() -> Result<Cli, u8> {
    use std::io::Write as _;
    let error = match Cli::try_parse() {
        Ok(cli) => return Ok(cli),
        Err(error) => error,
    };
    let kind = error.kind();
    let shown = matches!(
        kind,
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
    );
    if shown {
        // Help and version go to standard output; a failure to write them is an error.
        return match error.print().and_then(|()| std::io::stdout().flush()) {
            Ok(()) => Ok(crate::exit::OK),
            Err(write) if write.kind() == std::io::ErrorKind::BrokenPipe => Ok(crate::exit::OK),
            Err(write) => {
                // Standard error may be gone too: that is no reason to panic.
                let _ = writeln!(
                    std::io::stderr(),
                    "error: cannot write to standard output: {write}"
                );
                Ok(crate::exit::ERROR)
            }
        }
        .and_then(Err);
    }
    // As a monitoring plugin, a usage mistake is UNKNOWN (exit 3), on one line.
    if std::env::args_os()
        .any(|arg| arg == "--check" || arg.as_encoded_bytes().starts_with(b"--check="))
    {
        let text = error.to_string();
        let first = text.lines().next().unwrap_or("invalid arguments");
        crate::sayln!("UNKNOWN - {}", first.trim_start_matches("error: "));
        return Err(crate::ops::monitor::State::Unknown.exit_code());
    }
    // A usage mistake: said like every error, masked and one line per line (an argument with
    // a newline in it cannot forge one). Standard error may be closed or full: the exit code
    // still says it.
    let _ = writeln!(
        std::io::stderr(),
        "{}",
        usage_error(&error.render().to_string())
    );
    Err(crate::exit::USAGE)
}

impl Cli {
    /// Whether this is `status --check`, whose every failure is UNKNOWN.
    pub fn is_plugin(&self) -> bool {
        matches!(self.command, Command::Status { check: true, .. })
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
            let escaped = crate::mask::escape_controls(&quoted);
            if escaped != quoted.as_str() && !quoted.is_empty() {
                text = text.replace(&quoted, &escaped);
            }
        }
    }
    // An argument is quoted as given: a CPR number in it is masked even where letters touch
    // it (`--source a0101701234`), which the masking of logs leaves alone, as `010170****`;
    // and a number parsed from it may be quoted without its leading zeros (`101701234 is not
    // in 0..=36500`), which the masking cannot recognise, so what is left of it goes too.
    let mut text = crate::mask::mask_cpr_among_letters(&text).into_owned();
    for arg in std::env::args_os().skip(1) {
        let arg = arg.to_string_lossy();
        if !crate::mask::holds_cpr_number(&arg) {
            continue;
        }
        for run in arg.split(|c: char| !c.is_ascii_digit()) {
            let parsed = run.trim_start_matches('0');
            if parsed.len() >= 6 {
                text = text.replace(parsed, &"*".repeat(parsed.len()));
            }
        }
    }
    text.lines()
        .map(crate::logging::safe_line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes the manual pages (`beskedhent.1`, and `beskedhent-COMMAND.1` for each command: see
/// [`super::manual`]) and
/// the completions for bash (`beskedhent.bash`), zsh (`_beskedhent`) and fish
/// (`beskedhent.fish`) into `dir`, all generated from the definition above.
pub fn generate_assets(dir: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    use clap_complete::Shell;

    std::fs::create_dir_all(dir)?;
    // Written into a private directory first, then renamed into place: a link someone put in
    // `dir` is replaced, never written through.
    let work = dir.join(format!(".assets-{}", crate::files::random_hex(8)?));
    std::fs::DirBuilder::new().mode(0o700).create(&work)?;
    let written = (|| -> std::io::Result<()> {
        let mut command = Cli::command().disable_help_subcommand(true);
        command.build();
        let mut page = Vec::new();
        super::manual::write_page(command.clone(), "", &mut page)?;
        std::fs::write(work.join("beskedhent.1"), &page)?;
        for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            let mut page = Vec::new();
            super::manual::write_page(sub.clone(), sub.get_name(), &mut page)?;
            std::fs::write(work.join(format!("beskedhent-{}.1", sub.get_name())), &page)?;
        }
        for (shell, file) in [
            (Shell::Bash, "beskedhent.bash"),
            (Shell::Zsh, "_beskedhent"),
            (Shell::Fish, "beskedhent.fish"),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "beskedhent", &mut out);
            std::fs::write(work.join(file), out)?;
        }
        for entry in std::fs::read_dir(&work)? {
            let entry = entry?;
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o644))?;
            std::fs::rename(entry.path(), dir.join(entry.file_name()))?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&work);
    written
}

/// `forget PARTY`: a CPR or CVR number in one of the forms `forget` takes; anything else is a
/// usage error.
fn party(value: &str) -> Result<String, String> {
    crate::replica::Party::parse(value)
        .map(|_| value.to_owned())
        .map_err(|error| error.to_string())
}

/// `--source`: a name as `check_source_name` allows; a wrong one is a usage error.
fn source_name(value: &str) -> Result<String, String> {
    crate::config::check_source_name("--source", value)
        .map(|()| value.to_owned())
        .map_err(|error| error.to_string())
}

/// `--since`, in its stored form (see [`crate::commands::letters::parse_bound`]).
/// A cursor's name: 1 to 64 letters, digits, `-`, `_` or `.`.
/// The arguments of `lookup`.
#[derive(Debug, Clone, clap::Args)]
pub struct LookupArgs {
    /// CPR (10 digits, or DDMMYY-SSSS) or CVR (8 digits) numbers.
    #[arg(value_name = "PARTY", conflicts_with_all = ["from", "verify_feed"])]
    pub parties: Vec<String>,
    /// Read the numbers from this file, one a line (blank lines and # comments skipped).
    #[arg(long, value_name = "FILE", conflicts_with = "verify_feed")]
    pub from: Option<PathBuf>,
    /// One JSON object a line.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// CSV with a header line.
    #[arg(long)]
    pub csv: bool,
    /// Show an answer given within this long (e.g. 1d, 12h, 30m; 0: always ask) instead of
    /// asking again: a bulk lookup that stopped resumes where it was.
    #[arg(long, value_name = "AGE", default_value = "1d", value_parser = age)]
    pub max_age: chrono::Duration,
    /// Check the registration feed against PostForespoerg's answers.
    #[arg(long)]
    pub verify_feed: bool,
    /// How many parties --verify-feed asks about.
    #[arg(long, value_name = "N", default_value_t = 20, requires = "verify_feed", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub sample: u32,
}

/// `--max-age`: a number of days (`d`), hours (`h`) or minutes (`m`); `0` for none.
fn age(text: &str) -> Result<chrono::Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(chrono::Duration::zero());
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let number: i64 = number
        .parse()
        .ok()
        .filter(|n| (0..=100_000).contains(n))
        .ok_or_else(|| "an age is a number and d, h or m, e.g. 1d, 12h, 30m, or 0".to_owned())?;
    match unit {
        "d" => Ok(chrono::Duration::days(number)),
        "h" => Ok(chrono::Duration::hours(number)),
        "m" => Ok(chrono::Duration::minutes(number)),
        _ => Err("an age is a number and d, h or m, e.g. 1d, 12h, 30m, or 0".to_owned()),
    }
}

fn cursor_name(name: &str) -> Result<String, String> {
    let fits = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if fits && crate::mask::mask_cpr_among_letters(name) == name {
        Ok(name.to_owned())
    } else {
        Err(
            "a cursor name is 1 to 64 letters, digits, '-', '_' or '.', and not a CPR number"
                .to_owned(),
        )
    }
}

fn since_bound(value: &str) -> Result<String, String> {
    crate::commands::letters::parse_bound(value, false).map_err(|error| error.to_string())
}

/// `--until`, in its stored form (see [`crate::commands::letters::parse_bound`]).
fn until_bound(value: &str) -> Result<String, String> {
    crate::commands::letters::parse_bound(value, true).map_err(|error| error.to_string())
}
