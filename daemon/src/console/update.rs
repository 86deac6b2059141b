//! Menu 9 on an installed appliance: install a signed update bundle.
//!
//! The disk has two root slots, A and B; one runs, the other takes the next
//! version. `rauc install` checks the bundle's signature against the
//! keyring in the root (`/etc/rauc/keyring.pem`), writes the new root into
//! the other slot and makes it the boot loader's first choice. The next
//! boot tries it once: `sealgate-boot-ok.service` confirms it when the
//! gateway service runs, or marks it bad and reboots into the previous root
//! (see `/usr/libexec/sealgate/boot-ok`). The data partition is shared by
//! both slots and never written by an update.
//!
//! Trusts: RAUC for the signature check and the slot state. The bundle
//! source the administrator types is parsed into a [`BundleSource`] before
//! it reaches RAUC's command line.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::command::Command;
use super::status::clip;
use super::{ConsoleError, Context};

/// Where an update's outcome is recorded (by `boot-ok`, which also keeps
/// `update/slot-<A|B>.version` of every slot it confirmed), relative to the
/// data directory.
const LAST_RESULT: &str = "update/last-result";

/// Where a bundle is an update waiting for its first boot (written by RAUC's
/// post-install handler), relative to the data directory.
const TRIAL: &str = "update/trial";

/// Where an update bundle comes from: a file on the appliance or a URL RAUC
/// downloads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSource(String);

impl BundleSource {
    /// An absolute path to an existing regular file, or an http(s) URL
    /// without spaces, quotes, backslashes or control characters.
    pub fn parse(text: &str) -> Result<Self, ConsoleError> {
        let text = text.trim();
        let clean = !text.is_empty()
            && text.len() <= 2048
            && !text
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\'));
        if !clean {
            return Err(ConsoleError::InvalidInput(
                "give the bundle as an absolute file path or an http(s):// URL".into(),
            ));
        }
        if let Some(rest) = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
        {
            let host = rest.split('/').next().unwrap_or("");
            if host.is_empty() || host.starts_with('-') {
                return Err(ConsoleError::InvalidInput(format!(
                    "no host in the URL {text:?}"
                )));
            }
            return Ok(BundleSource(text.to_owned()));
        }
        if text.starts_with('/') {
            let path = Path::new(text);
            return match fs::metadata(path) {
                Ok(meta) if meta.is_file() => Ok(BundleSource(text.to_owned())),
                Ok(_) => Err(ConsoleError::InvalidInput(format!(
                    "{text} is not a regular file"
                ))),
                Err(e) => Err(ConsoleError::io("reading", path, e)),
            };
        }
        Err(ConsoleError::InvalidInput(
            "give the bundle as an absolute file path or an http(s):// URL".into(),
        ))
    }

    /// The source as RAUC gets it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One root slot as RAUC reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slot {
    /// Boot name, `A` or `B`.
    pub bootname: String,
    /// `booted` for the running slot, else `inactive`.
    pub state: String,
    /// `good` or `bad` in the boot loader.
    pub boot_status: String,
    /// Version of the bundle last installed into it, if RAUC recorded one.
    pub version: Option<String>,
    /// RAUC's slot name (`rootfs.0`).
    pub name: String,
}

/// RAUC's view of the two root slots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slots {
    /// Boot name of the running slot.
    pub booted: String,
    /// RAUC's name of the slot the boot loader starts next.
    pub primary: String,
    /// Every root slot.
    pub slots: Vec<Slot>,
}

impl Slots {
    /// Parse `rauc status --detailed --output-format=json`.
    pub fn parse(json: &str) -> Option<Slots> {
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        let text = |v: &serde_json::Value, key: &str| {
            v.get(key).and_then(|x| x.as_str()).unwrap_or("").to_owned()
        };
        let mut slots = Vec::new();
        for entry in v.get("slots")?.as_array()? {
            for (name, slot) in entry.as_object()? {
                slots.push(Slot {
                    name: name.clone(),
                    bootname: text(slot, "bootname"),
                    state: text(slot, "state"),
                    boot_status: text(slot, "boot_status"),
                    version: slot
                        .pointer("/slot_status/bundle/version")
                        .and_then(|x| x.as_str())
                        .map(str::to_owned),
                });
            }
        }
        slots.sort_by(|a, b| a.bootname.cmp(&b.bootname));
        Some(Slots {
            booted: text(&v, "booted"),
            primary: text(&v, "boot_primary"),
            slots,
        })
    }

    /// The status lines, one per slot; `running` is the running root's
    /// version (the image's own, whether RAUC installed it or not).
    pub fn describe(&self, running: &str) -> Vec<String> {
        self.slots
            .iter()
            .map(|s| {
                if s.state == "booted" {
                    let pending = if s.boot_status == "good" {
                        ""
                    } else {
                        ", boot not confirmed yet"
                    };
                    return format!("{} running {running}{pending}", s.bootname);
                }
                match &s.version {
                    Some(v) => {
                        let next = if s.name == self.primary {
                            " (starts next boot)"
                        } else {
                            ""
                        };
                        format!("{} {}, {v}{next}", s.bootname, s.boot_status)
                    }
                    None => format!("{} empty", s.bootname),
                }
            })
            .collect()
    }

    /// Boot name of the slot an update goes to.
    pub fn other(&self) -> Option<&str> {
        self.other_slot().map(|s| s.bootname.as_str())
    }

    fn other_slot(&self) -> Option<&Slot> {
        self.slots
            .iter()
            .find(|s| s.state != "booted" && !s.bootname.is_empty())
    }

    /// The other slot when it holds a version that booted before (good):
    /// what a roll back returns to.
    pub fn previous(&self) -> Option<&Slot> {
        self.other_slot()
            .filter(|s| s.boot_status == "good" && s.version.is_some())
    }
}

/// The slots, or `None` when RAUC cannot tell (live system, a host). A
/// slot RAUC never installed (the factory image's) has the version
/// `boot-ok` recorded when it last ran there.
pub fn slots(ctx: &Context) -> Option<Slots> {
    let mut slots = Command::SlotStatus.query().and_then(|j| Slots::parse(&j))?;
    for slot in slots.slots.iter_mut().filter(|s| s.version.is_none()) {
        let record = ctx
            .data_dir
            .join(format!("update/slot-{}.version", slot.bootname));
        slot.version = fs::read_to_string(record)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty());
    }
    Some(slots)
}

/// The last update's outcome as `boot-ok` recorded it, and a pending trial.
pub fn last_result(ctx: &Context) -> Option<String> {
    if let Ok(trial) = fs::read_to_string(ctx.data_dir.join(TRIAL)) {
        let mut words = trial.split_whitespace();
        if let (Some(slot), Some(version)) = (words.next(), words.next()) {
            return Some(format!(
                "{version} installed in slot {slot}, tried on the next boot"
            ));
        }
    }
    fs::read_to_string(ctx.data_dir.join(LAST_RESULT))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// `update show`.
pub fn show(ctx: &Context, out: &mut dyn Write) -> Result<(), ConsoleError> {
    match slots(ctx) {
        Some(slots) => {
            let running = super::status::image_version();
            for (i, line) in slots.describe(&running).iter().enumerate() {
                let label = if i == 0 { "Root slots:" } else { "" };
                writeln!(out, "{label:<14}{}", clip(line, 64))?;
            }
        }
        None => writeln!(out, "Root slots:   unknown (RAUC does not answer)")?,
    }
    if let Some(result) = last_result(ctx) {
        for (i, line) in wrap(&result, 64).iter().enumerate() {
            let label = if i == 0 { "Last update:" } else { "" };
            writeln!(out, "{label:<14}{line}")?;
        }
    }
    Ok(())
}

/// `text` in lines of at most `width` characters, broken between words.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&clip(word, width));
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// `update install SOURCE`: verify and write the bundle into the other slot.
pub fn install(
    ctx: &Context,
    source: &BundleSource,
    out: &mut dyn Write,
) -> Result<(), ConsoleError> {
    if ctx.live {
        return Err(ConsoleError::InvalidInput(
            "the live system is not updated; install it to a disk first (9)".into(),
        ));
    }
    let target = slots(ctx)
        .and_then(|s| s.other().map(str::to_owned))
        .unwrap_or_else(|| "the other slot".into());
    writeln!(
        out,
        "Installing {} into root slot {target}...",
        source.as_str()
    )?;
    if let Err(err) = Command::InstallBundle(source).execute(ctx, out) {
        writeln!(
            out,
            "The update was not installed; the running version stays as it is."
        )?;
        return Err(err);
    }
    writeln!(
        out,
        "The update is installed and starts with the next boot. If the gateway\n\
         does not come up there, the appliance returns to this version by itself."
    )?;
    Ok(())
}

/// `update rollback`: make the other slot's version the one the next boot
/// starts (RAUC `mark-active other`). The data partition stays as it is.
pub fn rollback(ctx: &Context, out: &mut dyn Write) -> Result<(), ConsoleError> {
    if ctx.live {
        return Err(ConsoleError::InvalidInput(
            "the live system has no previous version".into(),
        ));
    }
    let previous = slots(ctx).and_then(|s| {
        s.previous()
            .map(|p| (p.bootname.clone(), p.version.clone().unwrap_or_default()))
    });
    let (slot, version) = match (previous, ctx.dry_run) {
        (Some(p), _) => p,
        (None, true) => ("the other slot".into(), "its version".into()),
        (None, false) => {
            return Err(ConsoleError::InvalidInput(
                "the other root slot holds no version that booted: nothing to roll back to".into(),
            ));
        }
    };
    Command::ActivateOtherSlot.execute(ctx, out)?;
    writeln!(
        out,
        "Slot {slot} ({version}) starts with the next boot. The data partition\n\
         stays as it is."
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_paths_to_files_or_urls() {
        assert!(BundleSource::parse("http://10.0.2.2:8080/update.raucb").is_ok());
        assert!(BundleSource::parse("https://updates.example/sealgate.raucb").is_ok());
        assert!(BundleSource::parse("/etc/hostname").is_ok());
        assert!(BundleSource::parse("/nonexistent/update.raucb").is_err());
        assert!(BundleSource::parse("/etc").is_err());
        assert!(BundleSource::parse("update.raucb").is_err());
        assert!(BundleSource::parse("http:///x").is_err());
        assert!(BundleSource::parse("http://a b").is_err());
        assert!(BundleSource::parse("http://x/$(reboot)'").is_err());
        assert!(BundleSource::parse("-h").is_err());
        assert!(BundleSource::parse("").is_err());
    }

    #[test]
    fn rauc_status_is_read() {
        let json = r#"{"compatible":"sealgate-x86_64","variant":"","booted":"A",
            "boot_primary":"rootfs.1","slots":[
            {"rootfs.0":{"class":"rootfs","device":"/dev/vda3","type":"raw","bootname":"A",
              "state":"booted","parent":null,"mountpoint":null,"boot_status":"good",
              "slot_status":{"bundle":{"compatible":"sealgate-x86_64","version":"0.1.0+a"}}}},
            {"rootfs.1":{"class":"rootfs","device":"/dev/vda4","type":"raw","bootname":"B",
              "state":"inactive","parent":null,"mountpoint":null,"boot_status":"good",
              "slot_status":{"bundle":{"version":"0.1.0+b"}}}}]}"#;
        let slots = Slots::parse(json);
        assert!(slots.is_some());
        let Some(slots) = slots else { return };
        assert_eq!(slots.booted, "A");
        assert_eq!(slots.other(), Some("B"));
        assert_eq!(
            slots.describe("0.1.0+a"),
            ["A running 0.1.0+a", "B good, 0.1.0+b (starts next boot)"]
        );
        let fresh = json.replace("\"version\":\"0.1.0+b\"", "\"x\":1");
        let slots = Slots::parse(&fresh.replace("\"good\"", "\"bad\""));
        let Some(slots) = slots else { return };
        assert_eq!(
            slots.describe("0.1.0+a"),
            ["A running 0.1.0+a, boot not confirmed yet", "B empty"]
        );
    }

    #[test]
    fn results_wrap_between_words() {
        assert_eq!(
            wrap("update to 0.2.0 failed: the gateway did not start", 20),
            ["update to 0.2.0", "failed: the gateway", "did not start"]
        );
    }

    #[test]
    fn the_live_system_is_not_updated() {
        let ctx = Context {
            data_dir: std::env::temp_dir(),
            dry_run: true,
            live: true,
        };
        let Ok(source) = BundleSource::parse("http://10.0.2.2/u.raucb") else {
            return;
        };
        let mut out = Vec::new();
        assert!(install(&ctx, &source, &mut out).is_err());
    }
}
