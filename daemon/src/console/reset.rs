//! Menu 6: factory reset.
//!
//! The running system cannot reformat the partition it is using, so this
//! leaves a marker (`<data>/.factory-reset`) and reboots; early in the next
//! boot `sealgate-factory-reset.service` reformats the data partition and
//! `sealgate-firstboot.service` runs again.

use std::fs;
use std::io::Write;

use super::command::Command;
use super::{ConsoleError, Context, FACTORY_RESET_WORD};

/// Name of the marker file in the data directory.
pub const MARKER: &str = ".factory-reset";

/// `factory-reset --confirm ERASE`.
pub fn factory_reset(
    ctx: &Context,
    confirm: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), ConsoleError> {
    if confirm.map(str::trim) != Some(FACTORY_RESET_WORD) {
        return Err(ConsoleError::NotConfirmed(FACTORY_RESET_WORD));
    }
    let marker = ctx.data_dir.join(MARKER);
    fs::write(&marker, "requested from the console\n")
        .map_err(|e| ConsoleError::io("writing", &marker, e))?;
    writeln!(
        out,
        "Factory reset armed: the data partition is wiped during the next boot."
    )?;
    writeln!(out, "Rebooting...")?;
    Command::Reboot.execute(ctx, out)
}
