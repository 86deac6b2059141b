//! Stand-alone front end for the S/MIME CLI verbs (the same code as
//! `sealgate smime ...`): `sealgate-smime [--data-dir D] decrypt|encrypt|sign|verify`.
//! Used by `scripts/test-smime` to check the verbs and their exit codes
//! without building the whole daemon.
//!
//! Trusts: its operator.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sealgate_hsm::HsmSettings;
use sealgate_smime::cli::{SmimeCommand, run};

#[derive(Parser)]
#[command(name = "sealgate-smime", about = "Sealgate S/MIME engine")]
struct Cli {
    /// Sealgate data directory (the token lives in <data-dir>/hsm).
    #[arg(long, global = true, default_value = "/var/lib/sealgate")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: SmimeCommand,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    run(cli.command, &HsmSettings::with_data_dir(cli.data_dir))
}
