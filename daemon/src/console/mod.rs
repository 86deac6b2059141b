//! The serial console recovery menu (`sealgate console`).
//!
//! On the appliance this runs as root on `ttyS0` and `tty1` in place of a
//! login prompt (`sealgate-console@.service`). It is what an administrator
//! has when the network or the web UI is lost, so it depends on nothing but
//! the data directory and a handful of system tools.
//!
//! Shape (after OPNsense's console): a numbered menu that fits a dumb 80x24
//! terminal; each item is one small function in its own file; a
//! non-interactive mode (`sealgate console <action>`) runs the same
//! functions for tests and scripts.
//!
//! Trust: it trusts the data directory and the system tools named in
//! [`command::Command`]. It must never run anything outside that fixed
//! allow-list, never offer a free-form shell, and never send the setup token
//! anywhere but the terminal it runs on.
//!
//! Setting `SEALGATE_CONSOLE_DRY_RUN=1` makes every privileged command
//! (service restarts, reboot, power off, network reload, installing to a
//! disk or an update) print what it would run instead; read-only queries
//! still run. The host tests use it, with `SEALGATE_CONSOLE_LIVE=1` to see
//! the live medium's menu.
//!
//! On the live medium (the ISO) the same menu runs with the data directory
//! in RAM; item 9 installs the appliance to a disk there, and installs an
//! update bundle on an installed appliance.

mod certs;
mod command;
mod error;
mod install;
mod log;
mod menu;
mod network;
mod power;
mod reset;
mod status;
mod token;
mod update;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use error::ConsoleError;

/// Default data directory: the appliance's data partition.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/sealgate";

/// Word the administrator types to confirm a factory reset.
pub const FACTORY_RESET_WORD: &str = "ERASE";

/// Written by the live medium's init (`live-init`): this is a live run.
const LIVE_MARKER: &str = "/run/sealgate-live/fstab";

/// `sealgate console [ACTION]`: the recovery menu, or one action of it.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Data directory (the appliance's data partition).
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// Run one action and exit; without one, show the interactive menu on
    /// standard input and output.
    #[command(subcommand)]
    pub action: Option<Action>,
}

/// The menu's actions, in menu order.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// 1: version, uptime, addresses, gateway state, queue and token status.
    Status,
    /// 2: show the network settings, or switch to DHCP or a static address.
    #[command(subcommand)]
    Network(NetworkAction),
    /// 3: show the one-time setup token, or reset admin access (new token).
    #[command(subcommand)]
    Token(TokenAction),
    /// 4: restart the gateway service.
    Restart,
    /// 5: recent log lines of the gateway (journald).
    Log,
    /// 6: wipe the data partition and run first boot again (reboots).
    FactoryReset {
        /// The confirmation word (ERASE).
        #[arg(long)]
        confirm: Option<String>,
    },
    /// 7: reboot the appliance.
    Reboot,
    /// 8: power the appliance off.
    PowerOff,
    /// 9 (installed): the root slots, or install a signed update bundle.
    #[command(subcommand)]
    Update(UpdateAction),
    /// 9 (live medium): list the disks, or install the appliance onto one.
    InstallDisk {
        /// The disk (e.g. vda); without it, list the disks offered.
        disk: Option<String>,
        /// The disk's name again, to confirm erasing it.
        #[arg(long)]
        confirm: Option<String>,
    },
    /// 10: the gateway's public S/MIME and OpenPGP certificates.
    Certificates,
}

/// `sealgate console update ...`
#[derive(Debug, Subcommand)]
pub enum UpdateAction {
    /// The root slots, their versions and the last update's outcome.
    Show,
    /// Install a signed update bundle into the other root slot; it starts
    /// with the next boot.
    Install {
        /// An absolute path to the bundle, or an http(s) URL.
        source: String,
    },
    /// Roll back: the next boot starts the other slot's version again.
    Rollback,
}

/// `sealgate console network ...`
#[derive(Debug, Subcommand)]
pub enum NetworkAction {
    /// Show the saved setting and the current addresses and routes.
    Show,
    /// Configure every wired interface by DHCP.
    Dhcp,
    /// Configure a static IPv4 address.
    Static {
        /// Address with prefix length, e.g. 192.168.1.10/24.
        #[arg(long)]
        address: String,
        /// Default gateway.
        #[arg(long)]
        gateway: Option<String>,
        /// DNS server (repeat for several).
        #[arg(long)]
        dns: Vec<String>,
    },
}

/// `sealgate console token ...`
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Show the current one-time setup token.
    Show,
    /// Reset admin access: replace the setup token with a new one.
    Reset,
}

/// What every action needs: where the data lives and whether privileged
/// commands really run.
#[derive(Debug, Clone)]
pub struct Context {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Print privileged commands instead of running them.
    pub dry_run: bool,
    /// Running from the live medium: data in RAM, installing to a disk
    /// instead of updating.
    pub live: bool,
}

impl Context {
    fn from_args(args: &ConsoleArgs) -> Self {
        let flag = |name: &str| {
            std::env::var(name)
                .map(|v| !v.is_empty() && v != "0")
                .unwrap_or(false)
        };
        Context {
            data_dir: args.data_dir.clone(),
            dry_run: flag("SEALGATE_CONSOLE_DRY_RUN"),
            live: flag("SEALGATE_CONSOLE_LIVE") || std::path::Path::new(LIVE_MARKER).exists(),
        }
    }
}

/// Entry point of `sealgate console`.
pub fn run(args: ConsoleArgs) -> ExitCode {
    let ctx = Context::from_args(&args);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = match args.action {
        None => {
            let stdin = std::io::stdin();
            let mut input = stdin.lock();
            menu::run(&ctx, &mut input, &mut out)
        }
        Some(action) => run_action(&ctx, action, &mut out),
    };
    let _ = out.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One write: unbuffered stderr would issue one write(2) per
            // format piece, and a terminal that hangs up as the process
            // exits can drop the later pieces (seen on a loaded machine).
            let line = format!("sealgate console: {err}\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// Run one action non-interactively.
pub fn run_action(ctx: &Context, action: Action, out: &mut dyn Write) -> Result<(), ConsoleError> {
    match action {
        Action::Status => status::show(ctx, out),
        Action::Network(NetworkAction::Show) => network::show(ctx, out),
        Action::Network(NetworkAction::Dhcp) => network::apply(ctx, &network::Setting::Dhcp, out),
        Action::Network(NetworkAction::Static {
            address,
            gateway,
            dns,
        }) => {
            let setting = network::Setting::parse_static(&address, gateway.as_deref(), &dns)?;
            network::apply(ctx, &setting, out)
        }
        Action::Token(TokenAction::Show) => token::show(ctx, out),
        Action::Token(TokenAction::Reset) => token::reset(ctx, out),
        Action::Restart => power::restart_gateway(ctx, out),
        Action::Log => log::show(ctx, out),
        Action::FactoryReset { confirm } => reset::factory_reset(ctx, confirm.as_deref(), out),
        Action::Reboot => power::reboot(ctx, out),
        Action::PowerOff => power::power_off(ctx, out),
        Action::Update(UpdateAction::Show) => update::show(ctx, out),
        Action::Update(UpdateAction::Install { source }) => {
            update::install(ctx, &update::BundleSource::parse(&source)?, out)
        }
        Action::Update(UpdateAction::Rollback) => update::rollback(ctx, out),
        Action::InstallDisk { disk: None, .. } => install::list(out),
        Action::InstallDisk {
            disk: Some(name),
            confirm,
        } => install::install(ctx, &install::find(&name)?, confirm.as_deref(), out),
        Action::Certificates => certs::show(ctx, out),
    }
}
