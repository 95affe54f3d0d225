//! beskedhent keeps a local SQLite replica of the messages KOMBIT's Beskedfordeler publishes
//! for SF1600 "Print på serviceplatformen": print status (PKO_PostStatus) and Digital Post and
//! NemSMS registrations.
//!
//! The crate is layered; a module only uses the layers below it (ARCHITECTURE.md, and a test
//! that holds the code to it):
//! - [`commands`]: one file per subcommand, and the command line;
//! - [`ops`]: what runs around a pull: the schedule, notifications, monitoring, the step after
//!   every run;
//! - [`pull`]: getting messages: the certificate, the token, the broker, a feed's run (fetch,
//!   decode, commit, then acknowledge), importing files, the locks;
//! - [`replica`]: the SQLite replica, the only SQL;
//! - [`config`]: the configuration file and the environment, validated;
//! - [`decode`]: bytes to typed messages, no I/O;
//! - leaves any layer may use: [`env`] (the environment), [`time`], [`exit`], [`files`],
//!   [`owner`], [`mask`], [`logging`], [`progress`].

pub mod commands;
pub mod config;
pub mod decode;
pub mod env;
pub mod exit;
pub mod files;
pub mod logging;
pub mod mask;
pub mod mirror;
pub mod ops;
pub mod owner;
pub mod progress;
pub mod pull;
pub mod replica;
pub mod time;

#[cfg(test)]
#[path = "../tests/support/sample.rs"]
mod sample;
