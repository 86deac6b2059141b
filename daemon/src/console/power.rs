//! Menus 4, 7 and 8: restart the gateway, reboot, power off.

use std::io::Write;

use super::command::Command;
use super::{ConsoleError, Context};

/// `restart`.
pub fn restart_gateway(ctx: &Context, out: &mut dyn Write) -> Result<(), ConsoleError> {
    writeln!(out, "Restarting the gateway service...")?;
    Command::RestartGateway.execute(ctx, out)?;
    let state = Command::GatewayState
        .query()
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    writeln!(out, "Gateway: {state}")?;
    Ok(())
}

/// `reboot`.
pub fn reboot(ctx: &Context, out: &mut dyn Write) -> Result<(), ConsoleError> {
    writeln!(out, "Rebooting...")?;
    Command::Reboot.execute(ctx, out)
}

/// `power-off`.
pub fn power_off(ctx: &Context, out: &mut dyn Write) -> Result<(), ConsoleError> {
    writeln!(out, "Powering off...")?;
    Command::PowerOff.execute(ctx, out)
}
