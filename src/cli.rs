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
    /// Show each source's position, counts and last run.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}
