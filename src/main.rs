//! The `beskedhent` binary: parses arguments, sets up the process (its memory private,
//! logging, the TLS provider), runs a command and maps the result to an exit code (the
//! README's table).

use std::process::ExitCode;

use beskedhent::commands::{self, cli};
use beskedhent::{exit, logging};

fn main() -> ExitCode {
    keep_memory_private();
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    // reqwest and lapin both use rustls; make one crypto provider the process default.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    logging::init();
    bound_the_heap();
    // A monitoring plugin's every failure is UNKNOWN, also one to write its line.
    let plugin = cli.is_plugin();
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            logging::print_error(&format!("{error:#}"));
            exit::ERROR
        }
    };
    ExitCode::from(after_output(code, plugin))
}

/// The exit code once output that could not be written is taken into account: a reader that
/// went away (`| head`) is its own business; anything else (a full disk) is an error, said on
/// standard error.
fn after_output(code: u8, plugin: bool) -> u8 {
    match logging::stdout_failure() {
        Some(error) if error.kind() == std::io::ErrorKind::BrokenPipe => code,
        Some(error) => {
            logging::print_error(&format!("cannot write to standard output: {error}"));
            if plugin {
                beskedhent::ops::monitor::State::Unknown.exit_code()
            } else if code == exit::OK {
                exit::ERROR
            } else {
                code
            }
        }
        None => code,
    }
}

/// Marks the process not dumpable: no core file (it would hold the key, the token, the
/// secrets from the environment and personal data), and no reading of its memory or
/// `/proc/PID/environ` by other processes of the same user, such as a `[notify] command`.
fn keep_memory_private() {
    // SAFETY: prctl(2) with PR_SET_DUMPABLE only sets a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// Large buffers (a message's bytes, its decoded payload) are mapped on their own and given
/// back when freed. By default the C allocator raises this threshold to the largest buffer freed
/// so far and serves later ones from its heaps, which keep the memory: a run through several
/// large messages would then hold more than the bound promises.
fn bound_the_heap() {
    // SAFETY: mallopt only changes allocator settings; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}
