//! Typed payloads derived from an [`Envelope`](crate::decode::envelope::Envelope): print status and
//! registrations. No I/O.

pub mod post_status;
pub mod registration;
