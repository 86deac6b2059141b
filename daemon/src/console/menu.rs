//! The interactive numbered menu (80x24, no cursor control).

use std::io::{BufRead, Write};

use super::{
    ConsoleError, Context, FACTORY_RESET_WORD, certs, install, network, power, reset, status,
    token, update,
};

/// The prompt the tests wait for.
pub const PROMPT: &str = "Enter an option: ";

const ITEMS: &str = "  1) Status                          6) Factory reset
  2) Network settings                7) Reboot
  3) Setup token / admin access      8) Power off
  4) Restart gateway service         9) Install an update
  5) Recent log                     10) Gateway certificates
";

const LIVE_ITEMS: &str = "  1) Status                          6) Factory reset
  2) Network settings                7) Reboot
  3) Setup token / admin access      8) Power off
  4) Restart gateway service         9) Install to disk
  5) Recent log                     10) Gateway certificates
";

/// Run the menu until the terminal closes.
pub fn run(
    ctx: &Context,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), ConsoleError> {
    loop {
        banner(ctx, out)?;
        write!(out, "{PROMPT}")?;
        out.flush()?;
        let Some(choice) = read_line(input)? else {
            return Ok(());
        };
        writeln!(out)?;
        let result = match choice.as_str() {
            "1" => status::show(ctx, out),
            "2" => network_menu(ctx, input, out),
            "3" => token_menu(ctx, input, out),
            "4" => power::restart_gateway(ctx, out),
            "5" => super::log::show(ctx, out),
            "6" => factory_reset(ctx, input, out),
            "7" => confirmed(input, out, "Reboot now?", |o| power::reboot(ctx, o)),
            "8" => confirmed(input, out, "Power off now?", |o| power::power_off(ctx, o)),
            "9" if ctx.live => install_menu(ctx, input, out),
            "9" => update_menu(ctx, input, out),
            "10" => certs::show(ctx, out),
            "" => continue,
            other => {
                writeln!(out, "Unknown option {:?}.", status::clip(other, 20))?;
                Ok(())
            }
        };
        if let Err(err) = result {
            match err {
                ConsoleError::Terminal(_) => return Err(err),
                other => writeln!(out, "Error: {other}")?,
            }
        }
        write!(out, "\nPress Enter to continue.")?;
        out.flush()?;
        if read_line(input)?.is_none() {
            return Ok(());
        }
    }
}

fn banner(ctx: &Context, out: &mut dyn Write) -> Result<(), ConsoleError> {
    writeln!(out)?;
    writeln!(
        out,
        "*** Sealgate {} recovery console ***",
        env!("CARGO_PKG_VERSION")
    )?;
    if ctx.live {
        writeln!(
            out,
            "Live system: nothing is saved. Choose 9 to install it onto a disk."
        )?;
    }
    if let Some(token) = token::current(ctx) {
        writeln!(out, "Setup token: {token}")?;
    }
    writeln!(out)?;
    write!(out, "{}", if ctx.live { LIVE_ITEMS } else { ITEMS })?;
    writeln!(out)?;
    Ok(())
}

/// One trimmed line, or `None` at end of input.
fn read_line(input: &mut dyn BufRead) -> Result<Option<String>, ConsoleError> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim().to_owned()))
}

fn ask(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    question: &str,
) -> Result<String, ConsoleError> {
    write!(out, "{question}")?;
    out.flush()?;
    Ok(read_line(input)?.unwrap_or_default())
}

fn confirmed(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    question: &str,
    action: impl FnOnce(&mut dyn Write) -> Result<(), ConsoleError>,
) -> Result<(), ConsoleError> {
    let answer = ask(input, out, &format!("{question} [y/N]: "))?;
    if answer.eq_ignore_ascii_case("y") || answer.eq_ignore_ascii_case("yes") {
        action(out)
    } else {
        writeln!(out, "Cancelled.")?;
        Ok(())
    }
}

fn network_menu(
    ctx: &Context,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), ConsoleError> {
    network::show(ctx, out)?;
    writeln!(out)?;
    writeln!(out, "  1) Use DHCP   2) Set a static address   0) Back")?;
    match ask(input, out, PROMPT)?.as_str() {
        "1" => confirmed(input, out, "Switch to DHCP?", |o| {
            network::apply(ctx, &network::Setting::Dhcp, o)
        }),
        "2" => {
            let address = ask(input, out, "Address/prefix (e.g. 192.168.1.10/24): ")?;
            let gateway = ask(input, out, "Gateway (empty for none): ")?;
            let dns = ask(
                input,
                out,
                "DNS servers (space separated, empty for none): ",
            )?;
            let setting = network::Setting::parse_static(&address, Some(&gateway), &[dns])?;
            let question = format!("Apply {}?", setting.summary());
            confirmed(input, out, &question, |o| network::apply(ctx, &setting, o))
        }
        _ => Ok(()),
    }
}

fn token_menu(
    ctx: &Context,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), ConsoleError> {
    token::show(ctx, out)?;
    writeln!(out)?;
    writeln!(out, "  1) Reset admin access (new setup token)   0) Back")?;
    match ask(input, out, PROMPT)?.as_str() {
        "1" => confirmed(input, out, "Replace the setup token?", |o| {
            token::reset(ctx, o)
        }),
        _ => Ok(()),
    }
}

fn factory_reset(
    ctx: &Context,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), ConsoleError> {
    if ctx.live {
        writeln!(
            out,
            "The live system keeps nothing on disk: power off to start afresh."
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "Factory reset wipes the data partition: queued mail, keys in the HSM\n\
         token, settings and logs. The appliance reboots and runs first boot."
    )?;
    let word = ask(
        input,
        out,
        &format!("Type {FACTORY_RESET_WORD} to confirm, anything else cancels: "),
    )?;
    if word == FACTORY_RESET_WORD {
        reset::factory_reset(ctx, Some(&word), out)
    } else {
        writeln!(out, "Cancelled.")?;
        Ok(())
    }
}

fn install_menu(
    ctx: &Context,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), ConsoleError> {
    writeln!(
        out,
        "Install the appliance onto a disk. Everything on that disk is erased;\n\
         the installed system prepares its data partition on its first boot."
    )?;
    let disks = install::disks();
    install::list(out)?;
    if disks.is_empty() {
        return Ok(());
    }
    writeln!(out, "  0) Back")?;
    let choice = ask(input, out, PROMPT)?;
    let Some(disk) = choice
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| disks.get(i))
    else {
        return Ok(());
    };
    let word = ask(
        input,
        out,
        &format!(
            "Type {} to erase {} and install, anything else cancels: ",
            disk.name(),
            disk.path()
        ),
    )?;
    if word != disk.name() {
        writeln!(out, "Cancelled.")?;
        return Ok(());
    }
    install::install(ctx, disk, Some(&word), out)
}

fn update_menu(
    ctx: &Context,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), ConsoleError> {
    update::show(ctx, out)?;
    let previous = update::slots(ctx).and_then(|s| {
        s.previous()
            .map(|p| format!("{} ({})", p.bootname, p.version.clone().unwrap_or_default()))
    });
    writeln!(out)?;
    writeln!(out, "  1) Install an update")?;
    if let Some(previous) = &previous {
        writeln!(out, "  2) Roll back to slot {}", status::clip(previous, 50))?;
    }
    writeln!(out, "  0) Back")?;
    match ask(input, out, PROMPT)?.as_str() {
        "1" => {
            writeln!(
                out,
                "An update is a signed bundle (.raucb): give its path on the appliance\n\
                 or an http(s):// URL to download it from."
            )?;
            let text = ask(input, out, "Bundle path or URL (empty goes back): ")?;
            if text.is_empty() {
                return Ok(());
            }
            let source = update::BundleSource::parse(&text)?;
            update::install(ctx, &source, out)?;
            confirmed(input, out, "Reboot into the new version now?", |o| {
                power::reboot(ctx, o)
            })
        }
        "2" if previous.is_some() => confirmed(
            input,
            out,
            "Roll back to the previous version and reboot now?",
            |o| {
                update::rollback(ctx, o)?;
                power::reboot(ctx, o)
            },
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(input: &str) -> (String, tempdir::Dir) {
        let dir = tempdir::Dir::new();
        let ctx = Context {
            data_dir: dir.0.clone(),
            dry_run: true,
            live: false,
        };
        let mut out = Vec::new();
        let mut input = input.as_bytes();
        assert!(run(&ctx, &mut input, &mut out).is_ok());
        (String::from_utf8_lossy(&out).into_owned(), dir)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let n: u64 = rand::random();
                let p = std::env::temp_dir().join(format!("sealgate-console-{n:x}"));
                let _ = std::fs::create_dir_all(&p);
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn every_screen_fits_80_columns() {
        let (out, _dir) = run_with("1\n\n3\n1\ny\n\n9\n\n\n10\n\n11\n\n");
        assert!(out.contains("New setup token: "));
        assert!(out.contains("Unknown option"));
        // A terminal echoes the answer and its newline after each prompt.
        let echoed = out.replace(": ", ":\n");
        for line in echoed.lines() {
            assert!(line.chars().count() <= 80, "too wide: {line:?}");
        }
    }

    #[test]
    fn factory_reset_needs_the_word() {
        let (out, dir) = run_with("6\nerase\n\n");
        assert!(out.contains("Cancelled."));
        assert!(!dir.0.join(reset::MARKER).exists());
        let (out, dir) = run_with("6\nERASE\n\n");
        assert!(out.contains("dry run: would run `systemctl reboot`"));
        assert!(dir.0.join(reset::MARKER).exists());
    }
}
