//! beskedhent keeps a local SQLite replica of the messages KOMBIT's Beskedfordeler publishes
//! for SF1600 "Print på serviceplatformen": print status (PKO_PostStatus) and Digital Post and
//! NemSMS registrations.
//!
//! The pipeline, in reading order:
//! - [`config`]: the configuration file, validated ([`cron`]: its schedule expression);
//! - [`xml`]: bytes to a namespace-resolved element tree, refusing DTDs and entities;
//! - [`envelope`]: the `Haendelsesbesked` envelope;
//! - [`payload`]: typed payloads (print status, registrations);
//! - [`message`]: one received message decoded, or refused with a reason;
//! - [`store`]: the replica, the only module with SQL;
//! - [`import`]: envelopes from files;
//! - [`credentials`], [`sts`], [`amqp`]: the certificate, the token, the broker;
//! - [`sync`]: pulling feeds (fetch, decode, commit, then acknowledge); [`schedule`]: `daemon`;
//! - [`check`]: checking a set-up without consuming anything;
//! - [`status`]: the `status` report; [`monitor`]: `status --check` and the metrics file; [`logging`]: the one layer every log line passes through;
//! - [`sample`]: realistic generated envelopes for benchmarks and tests.

pub mod amqp;
pub mod check;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod cron;
pub mod envelope;
pub mod exit;
pub mod files;
pub mod import;
pub mod letters;
pub mod logging;
pub mod mask;
pub mod message;
pub mod monitor;
pub mod net;
pub mod notify;
pub mod owner;
pub mod payload;
pub mod sample;
pub mod schedule;
pub mod status;
pub mod store;
pub mod sts;
pub mod sync;
pub mod time;
pub mod xml;
