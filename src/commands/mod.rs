//! The subcommands, one file each: each reads its arguments, calls the layers below and
//! prints. [`cli`] is the command line; [`rows`] prints rows as a table, CSV or JSON.

pub mod assets;
pub mod backup;
pub mod check;
pub mod cli;
pub mod daemon;
pub mod export;
pub mod forget;
pub mod import;
pub mod init;
pub mod letters;
pub mod lookup;
mod manual;
pub mod mirror;
pub mod notify;
pub mod prune;
pub mod reprocess;
pub mod rows;
pub mod show;
pub mod status;
pub mod sync;

use anyhow::Result;

use crate::commands::cli::{Cli, Command, ConfigOrigin};
use crate::commands::rows::Format;
use crate::config::Config;
use crate::replica::queries::LetterFilter;

/// Runs the command: reads the configuration (but for `generate-assets`, which needs none, and
/// `status --check`, which says every failure as a plugin does), then hands over. The exit
/// code follows the README's table.
pub fn run(cli: Cli) -> Result<u8> {
    if let Command::GenerateAssets { dir } = &cli.command {
        return assets::run(dir);
    }
    let (path, origin) = cli.config_path();
    if cli.is_plugin() {
        return Ok(status::plugin(&path));
    }
    let config = Config::load(&path)?;
    crate::replica::set_patience(config.wait_for_replica);
    say_which_configuration(&path, origin);
    let result = dispatch(cli.command, config).or_else(|error| {
        // Another writer kept the replica locked for longer than a run waits: said as a held
        // lock is.
        if crate::replica::is_busy(&error) {
            crate::logging::print_error(&format!(
                "{error:#}; another writer kept the replica locked for {} (`wait_for_replica_seconds`): run this again once it has finished",
                crate::replica::describe_wait(crate::replica::patience())
            ));
            Ok(crate::exit::LOCKED)
        } else {
            Err(error)
        }
    });
    result.map_err(|error| {
        // Where the operator may not have meant that file, say which one it was.
        if origin == ConfigOrigin::WorkingDirectory {
            error.context(format!(
                "with the configuration `{}` from the working directory (--config names another, e.g. {})",
                crate::files::real_path(&path).display(),
                crate::config::SYSTEM_CONFIG
            ))
        } else {
            error
        }
    })
}

/// Hands the command to its file.
fn dispatch(command: Command, config: Config) -> Result<u8> {
    match command {
        Command::Init => init::run(&config),
        Command::Import { paths, source } => import::run(&config, &paths, &source),
        Command::Reprocess => reprocess::run(&config),
        Command::Sync => sync::run(config),
        Command::Daemon => daemon::run(config),
        Command::Check => check::run(&config),
        Command::Letters {
            failed,
            overdue,
            since,
            until,
            kanal,
            limit,
            csv,
            json,
            wide,
            utc,
        } => {
            let filter = LetterFilter {
                failed,
                overdue_days: overdue,
                since,
                until,
                kanal,
                limit,
            };
            let format = match (csv, json) {
                (true, _) => Format::Csv,
                (_, true) => Format::Json,
                _ => Format::Table,
            };
            letters::run(&config, &filter, format, letters::Table { wide, utc })
        }
        Command::Show { id } => show::run(&config, &id),
        Command::Notify { dry_run } => notify::run(&config, dry_run),
        Command::Status { json, .. } => status::run(&config, json),
        Command::Backup { path } => backup::run(&config, &path),
        Command::Prune => prune::run(&config),
        Command::Mirror => mirror::run(&config),
        Command::Lookup(args) => lookup::run(&config, &args.into()),
        Command::Export {
            feed,
            after,
            cursor,
            limit,
            csv,
            output,
        } => export::run(
            &config,
            &export::Options {
                kind: export::kind_named(&feed)?,
                after,
                cursor,
                limit,
                csv,
                output,
            },
        ),
        Command::Forget { party, from } => forget::run(&config, party, from),
        Command::GenerateAssets { .. } => unreachable!("handled before the configuration"),
    }
}

/// The runtime of the commands that talk to the network (`sync`, `daemon`, `check`).
fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Says which configuration file was read: at `info` when it was found in the working
/// directory (where it may not be the one the operator meant), else at `debug`.
fn say_which_configuration(path: &std::path::Path, origin: ConfigOrigin) {
    let shown = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    match origin {
        ConfigOrigin::WorkingDirectory => tracing::info!(
            "configuration `{}` (config.toml in the working directory; --config names another)",
            shown.display()
        ),
        _ => tracing::debug!("configuration `{}`", shown.display()),
    }
}
