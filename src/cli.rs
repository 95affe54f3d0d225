//! Command-line arguments (clap). Raw arguments only; `main` turns them into work.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Keeps a local SQLite replica of what KOMBIT's Beskedfordeler says about a municipality's
/// letters (print status) and citizens (Digital Post and NemSMS registrations).
#[derive(Debug, Parser)]
#[command(name = "beskedhent", version, about, long_about = None)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        env = "BESKEDHENT_CONFIG",
        default_value = "config.toml",
        value_name = "PATH"
    )]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Command,
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
        #[arg(long, default_value = "import")]
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
        after_help = "Times are UTC. --since and --until take a date (2026-03-01; --until includes that day) or a timestamp with an offset, and apply to the letter's latest status."
    )]
    Letters {
        /// Only letters whose current status is a failure.
        #[arg(long)]
        failed: bool,
        /// Only letters without a final status whose latest status is older than DAYS days.
        #[arg(long, value_name = "DAYS")]
        overdue: Option<u32>,
        /// Only letters whose latest status is at or after this date or time.
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Only letters whose latest status is before this time (or on or before this date).
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
        /// Only letters of this channel, e.g. "Digital Post" or "Fysisk Post".
        #[arg(long)]
        kanal: Option<String>,
        /// At most this many letters, newest first (0 for all).
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Print CSV (RFC 4180) instead of a table.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
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
    /// Show each source's position, counts and last run.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}
