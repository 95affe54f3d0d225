//! Integration tests: the `beskedhent` binary run end to end in temporary directories, against
//! a real RabbitMQ and a fake STS for the pull commands and a fake webhook for notifications.
//! Each file covers one subject (its header says which); `support` holds the helpers they share,
//! `broker`, `fake_sts` and `fake_webhook` the real and fake servers (the benchmarks include the
//! first two as well).

mod broker;
mod export;
mod fake_postforespoerg;
mod fake_sts;
mod fake_webhook;
mod forget;
mod hostile;
mod import;
mod layers;
mod local_users;
mod lookup;
mod mirror;
mod mistakes;
mod notify;
mod ops;
mod package;
mod postgres;
mod pull;
mod retention;
#[path = "../support/sample.rs"]
mod sample;
mod schema;
mod seams;
mod support;
