//! Integration tests: the `beskedhent` binary run end to end in temporary directories, against
//! a real RabbitMQ and a fake STS for the pull commands.

mod broker;
mod fake_sts;
mod fake_webhook;
mod hostile;
mod import;
mod layers;
mod local_users;
mod notify;
mod ops;
mod package;
mod pull;
#[path = "../support/sample.rs"]
mod sample;
mod schema;
mod support;
