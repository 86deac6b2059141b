//! The `sealgate` binary: one program for the daemon and its verbs.

use std::process::ExitCode;

use clap::Parser;
use sealgate::cli::{self, Cli, Command, QueueCommand};
use sealgate::control::Request;

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
        Command::Queue(q) => {
            let (request, json) = match q {
                QueueCommand::List { json } => (Request::QueueList, json),
                QueueCommand::Show { id } => (Request::QueueShow { id }, false),
                QueueCommand::Delete { id } => (Request::QueueDelete { id }, false),
                QueueCommand::Retry { id } => (Request::QueueRetry { id }, false),
                QueueCommand::Release { id } => (Request::QueueRelease { id }, false),
            };
            run_control(&config, request, json)
        }
        Command::Keys(cmd) => hsm_result(sealgate_hsm::cli::run_keys(cmd, &config.hsm_settings())),
        Command::Hsm(cmd) => hsm_result(sealgate_hsm::cli::run_hsm(cmd, &config.hsm_settings())),
        Command::Pgp(cmd) => pgp_result(sealgate_openpgp::cli::run_pgp(
            cmd,
            &config.hsm_settings(),
            &config.data_dir,
        )),
        Command::Console(args) => sealgate::console::run(args),
        Command::Policy(cli::PolicyCommand::Explain(args)) => cli::policy_explain(&config, &args),
        Command::Directory(cmd) => match cli::directory_request(cmd) {
            Ok((request, json)) => run_control(&config, request, json),
            Err(e) => {
                eprintln!("sealgate: {e}");
                ExitCode::from(2)
            }
        },
        Command::Smime(cmd) => sealgate_smime::cli::run(cmd, &config.hsm_settings()),
        Command::Cluster(cmd) => sealgate::cluster::cli::run(cmd, &config),
        Command::Track(t) => match cli::track_query(&t) {
            Ok(query) => run_control(&config, Request::Track { query }, t.json),
            Err(e) => {
                eprintln!("sealgate: {e}");
                ExitCode::from(2)
            }
        },
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

fn hsm_result(result: Result<(), sealgate_hsm::Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sealgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn pgp_result(result: Result<(), sealgate_openpgp::Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The token is down: a distinct code so scripts can retry later.
        Err(e) if e.is_temporary() => {
            eprintln!("sealgate: {e}");
            ExitCode::from(75)
        }
        Err(e) => {
            eprintln!("sealgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_control(config: &sealgate::config::Config, request: Request, json: bool) -> ExitCode {
    match cli::control(config, request) {
        Ok(response) => cli::print_response(&response, json),
        Err(e) => {
            eprintln!("sealgate: {e}");
            ExitCode::FAILURE
        }
    }
}
