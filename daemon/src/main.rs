//! The `sealgate` binary: one program for the daemon and its verbs.

use std::process::ExitCode;

use clap::Parser;
use sealgate::cli::{self, Cli, Command};

fn main() -> ExitCode {
    // Files the program creates are never readable by others (the state
    // store, the outbox, TLS keys); group read only where a mode says so.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));
    let args = Cli::parse();
    if !matches!(args.command, Command::Run) {
        default_sigpipe();
    }
    let config = match cli::load_config(args.config.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sealgate: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    point_softhsm_at(&config.hsm_settings());
    match args.command {
        Command::Run => {
            sealgate::logging::init();
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("sealgate: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(sealgate::daemon::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sealgate: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig => {
            println!("configuration OK");
            println!("{config:#?}");
            ExitCode::SUCCESS
        }
        Command::Hsm(cmd) => match sealgate_hsm::cli::run_hsm(cmd, &config.hsm_settings()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sealgate: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Console(args) => sealgate::console::run(args),
        Command::Smime(cmd) => sealgate_smime::cli::run(cmd, &config.hsm_settings()),
        other => cli::dispatch(&config, other),
    }
}

/// SoftHSM reads its token directory from the file `SOFTHSM2_CONF` names:
/// the bootstrap file's `[hsm]` table says which (by default the token in
/// the data directory), so neither the daemon nor a verb depends on the
/// caller's environment. A missing file is reported when the token is
/// opened, with what to do.
#[allow(unsafe_code)]
fn point_softhsm_at(settings: &sealgate_hsm::HsmSettings) {
    let conf = settings.softhsm_conf();
    if settings.is_softhsm() && conf.exists() {
        // SAFETY: at the start of main, before any other thread exists, so
        // nothing reads the environment concurrently.
        unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
    }
}

/// A verb's output piped into `head` or a pager that quits: stop quietly,
/// as every Unix tool does, instead of panicking in `println!` on EPIPE.
/// (The daemon keeps Rust's default, ignoring SIGPIPE: a client that goes
/// away is an error on its socket, never a reason to stop.)
#[allow(unsafe_code)]
fn default_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_DFL installs no handler code, and this runs at the start
    // of main, before any other thread exists.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}
