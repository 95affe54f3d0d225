//! Bytes in, typed messages out, and no I/O: [`xml`] (a namespace-resolved tree, refusing DTDs
//! and entities), [`envelope`] (the `Haendelsesbesked`), [`payload`] (print status and
//! registrations), [`message`] (one received message decoded, or refused with a reason).

pub mod envelope;
pub mod field;
pub mod message;
pub mod payload;
pub mod xml;
