//! Menu 5: recent log lines from journald.

use std::io::Write;

use super::command::Command;
use super::status::clip;
use super::{ConsoleError, Context};

/// `log`: the last lines of the gateway's and first boot's journal.
pub fn show(_ctx: &Context, out: &mut dyn Write) -> Result<(), ConsoleError> {
    match Command::RecentLog.query() {
        Some(text) if !text.trim().is_empty() => {
            for line in text.lines() {
                writeln!(out, "{}", clip(line, 79))?;
            }
        }
        Some(_) => writeln!(out, "The journal has no gateway lines yet.")?,
        None => writeln!(out, "The journal is not available.")?,
    }
    Ok(())
}
