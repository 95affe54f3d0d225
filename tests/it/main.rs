//! Integration tests: the `beskedhent` binary run end to end in temporary directories.

mod import;
mod support;
