//! Process exit codes, documented in the README. With several outcomes in one run, the first
//! that applies in the order `FEED_FAILED`, `LOCKED`, `INTERRUPTED`, `REJECTED` is the code.

/// Everything asked for was done.
pub const OK: u8 = 0;
/// The command could not do its job (configuration, database, unreadable input, certificate).
pub const ERROR: u8 = 1;
/// Wrong command-line usage (an unknown argument, a value of the wrong form).
pub const USAGE: u8 = 2;
/// The command completed, but some messages were refused and kept in `rejected`.
pub const REJECTED: u8 = 3;
/// `sync`: at least one feed failed; nothing uncommitted was acknowledged.
pub const FEED_FAILED: u8 = 4;
/// `sync`: a feed was skipped because another run holds its lock.
pub const LOCKED: u8 = 5;
/// `sync`: stopped by SIGINT or SIGTERM after committing and acknowledging what it received.
pub const INTERRUPTED: u8 = 130;
