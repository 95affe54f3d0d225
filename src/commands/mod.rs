//! The subcommands: [`cli`] (the command line), and the commands with logic of their own.

pub mod check;
pub mod cli;
pub mod letters;
pub mod status;
