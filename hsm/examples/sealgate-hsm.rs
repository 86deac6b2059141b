//! Stand-alone front end for the key store's CLI verbs, until the `sealgate`
//! binary embeds them: `sealgate-hsm [--data-dir D] keys|hsm ...`.
//! Used by `hsm/provision` and `scripts/test-hsm`.
//!
//! Trusts: its operator. Must never: print a PIN.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sealgate_hsm::HsmSettings;
use sealgate_hsm::cli::{HsmCommand, KeysCommand, run_hsm, run_keys};

#[derive(Parser)]
#[command(name = "sealgate-hsm", about = "Sealgate key store (PKCS#11)")]
struct Cli {
    /// Sealgate data directory.
    #[arg(long, global = true, default_value = "/var/lib/sealgate")]
    data_dir: PathBuf,
    /// PKCS#11 module.
    #[arg(long, global = true, default_value = sealgate_hsm::DEFAULT_MODULE)]
    module: PathBuf,
    /// Token label.
    #[arg(long, global = true, default_value = "sealgate")]
    token_label: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Keys and certificates.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The token.
    #[command(subcommand)]
    Hsm(HsmCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = HsmSettings {
        module: cli.module,
        token_label: cli.token_label,
        ..HsmSettings::with_data_dir(cli.data_dir)
    };
    let result = match cli.command {
        Command::Keys(cmd) => run_keys(cmd, &settings),
        Command::Hsm(cmd) => run_hsm(cmd, &settings),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sealgate-hsm: {e}");
            // 75 = EX_TEMPFAIL: try again later (token away); 1 otherwise.
            ExitCode::from(if e.is_temporary() { 75 } else { 1 })
        }
    }
}
