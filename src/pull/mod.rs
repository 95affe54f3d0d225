//! Getting messages into the replica: [`credentials`] (the function certificate), [`sts`] (the
//! token), [`amqp`] and [`net`] (the broker and what went wrong on the way), [`feed`] (one run
//! over the feeds: fetch, decode, commit, then acknowledge), [`import`] (envelopes from files).

pub mod amqp;
mod committer;
pub mod credentials;
pub mod feed;
pub mod import;
pub mod lock;
pub mod lookup;
pub mod net;
pub mod report;
pub mod sts;
mod walk;
