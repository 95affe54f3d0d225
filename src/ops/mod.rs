//! What runs around a pull: [`schedule`] (the daemon's passes), [`notify`] (sending the
//! outbox), [`monitor`] (`status --check` and the metrics file).

pub mod after_run;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod schedule;
