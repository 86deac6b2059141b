//! Menu 9 on the live medium: install the appliance onto a disk.
//!
//! The live system (the ISO, booted for a trial or to install) runs the same
//! read-only root as an installed appliance but keeps its data in RAM. This
//! lists the disks it could install to, asks for one and for its name as
//! confirmation, and runs `/usr/libexec/sealgate/install-disk` on it: the
//! disk gets the partitions of the disk image, the running root in slot A,
//! and a data partition that the installed system formats on its first
//! boot. Everything on the chosen disk is lost.
//!
//! Trusts: `lsblk` and sysfs for what the disks are. A [`Disk`] can only be
//! made from that listing, so nothing typed reaches the installer's command
//! line but the name of a disk the console offered.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::command::Command;
use super::{ConsoleError, Context};

/// Where the live initramfs (or live-init) records the medium's device.
const MEDIUM_DEVICE: &str = "/run/sealgate-live/device";

/// The smallest disk the appliance fits on: boot partitions, two root slots
/// and room for data.
pub const MIN_DISK_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// A whole disk the appliance can be installed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    name: String,
    path: String,
    size: u64,
    description: String,
}

impl Disk {
    /// The kernel's name, e.g. `vda`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device node, e.g. `/dev/vda`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// One line for the list: name, size, transport and model.
    pub fn summary(&self) -> String {
        let gib = self.size as f64 / (1024.0 * 1024.0 * 1024.0);
        format!("{:<10} {gib:>8.1} GiB  {}", self.name, self.description)
    }
}

/// The disks offered for installation: whole, writable, at least
/// [`MIN_DISK_BYTES`], and not the medium the live system runs from.
pub fn disks() -> Vec<Disk> {
    let medium = medium_disk();
    Command::ListDisks
        .query()
        .map(|text| parse_lsblk(&text, medium.as_deref()))
        .unwrap_or_default()
}

/// Parse `lsblk --pairs` lines (NAME, TYPE, SIZE, RO, TRAN, MODEL).
fn parse_lsblk(text: &str, medium: Option<&str>) -> Vec<Disk> {
    text.lines()
        .filter_map(|line| {
            let fields = pairs(line);
            let get = |key: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("")
            };
            let name = get("NAME");
            let size: u64 = get("SIZE").parse().ok()?;
            let usable = get("TYPE") == "disk"
                && get("RO") == "0"
                && size >= MIN_DISK_BYTES
                && !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric())
                && !["loop", "sr", "zram", "ram", "fd"]
                    .iter()
                    .any(|p| name.starts_with(p))
                && Some(name) != medium;
            usable.then(|| Disk {
                name: name.to_owned(),
                path: format!("/dev/{name}"),
                size,
                description: format!("{} {}", get("TRAN"), get("MODEL"))
                    .trim()
                    .to_owned(),
            })
        })
        .collect()
}

/// `KEY="value"` pairs of one `lsblk --pairs` line (values escape unsafe
/// bytes as `\xHH`, so they hold no quotes).
fn pairs(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some((value, tail)) = after.split_once('"') else {
            break;
        };
        out.push((key.trim().to_owned(), value.to_owned()));
        rest = tail.trim_start();
    }
    out
}

/// The whole disk the live medium is on (`sr0`, or `sdb` for `sdb1`).
fn medium_disk() -> Option<String> {
    let device = fs::read_to_string(MEDIUM_DEVICE).ok()?;
    let name = Path::new(device.trim()).file_name()?.to_str()?.to_owned();
    let sys = Path::new("/sys/class/block").join(&name);
    if sys.join("partition").exists() {
        let parent = fs::canonicalize(sys.join("..")).ok()?;
        return Some(parent.file_name()?.to_str()?.to_owned());
    }
    Some(name)
}

/// `install-disk --list`.
pub fn list(out: &mut dyn Write) -> Result<(), ConsoleError> {
    let disks = disks();
    if disks.is_empty() {
        writeln!(
            out,
            "No disk to install to: the appliance needs a writable disk of at least {} GiB.",
            MIN_DISK_BYTES >> 30
        )?;
    }
    for (i, disk) in disks.iter().enumerate() {
        writeln!(out, "  {}) {}", i + 1, disk.summary())?;
    }
    Ok(())
}

/// Find a listed disk by name (`vda` or `/dev/vda`).
pub fn find(name: &str) -> Result<Disk, ConsoleError> {
    let name = name.trim().trim_start_matches("/dev/");
    disks()
        .into_iter()
        .find(|d| d.name == name)
        .ok_or_else(|| ConsoleError::InvalidInput(format!("no disk {name:?} to install to")))
}

/// `install-disk NAME --confirm NAME`: erase the disk and install.
pub fn install(
    ctx: &Context,
    disk: &Disk,
    confirm: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), ConsoleError> {
    if !ctx.live {
        return Err(ConsoleError::InvalidInput(
            "installing to a disk is done from the live medium (the ISO)".into(),
        ));
    }
    if confirm.map(str::trim) != Some(disk.name()) {
        return Err(ConsoleError::InvalidInput(format!(
            "not confirmed: type the disk's name ({}) to erase it",
            disk.name()
        )));
    }
    writeln!(
        out,
        "Installing the Sealgate appliance onto {}...",
        disk.path()
    )?;
    Command::InstallToDisk(disk).execute(ctx, out)?;
    writeln!(
        out,
        "Installed. Power off (8), remove the installation medium and start the\n\
         appliance from {}. Its first boot prepares the data partition.",
        disk.name()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LSBLK: &str = "NAME=\"sr0\" TYPE=\"rom\" SIZE=\"170762240\" RO=\"0\" TRAN=\"sata\" MODEL=\"QEMU DVD-ROM\"\n\
NAME=\"vda\" TYPE=\"disk\" SIZE=\"4294967296\" RO=\"0\" TRAN=\"virtio\" MODEL=\"\"\n\
NAME=\"vdb\" TYPE=\"disk\" SIZE=\"1073741824\" RO=\"0\" TRAN=\"virtio\" MODEL=\"\"\n\
NAME=\"sda\" TYPE=\"disk\" SIZE=\"8589934592\" RO=\"0\" TRAN=\"usb\" MODEL=\"Stick\\x20One\"\n\
NAME=\"sdb\" TYPE=\"disk\" SIZE=\"8589934592\" RO=\"1\" TRAN=\"usb\" MODEL=\"Locked\"\n\
NAME=\"loop0\" TYPE=\"loop\" SIZE=\"8589934592\" RO=\"0\" TRAN=\"\" MODEL=\"\"\n";

    #[test]
    fn only_whole_writable_big_disks_but_the_medium_are_offered() {
        let names: Vec<String> = parse_lsblk(LSBLK, None)
            .iter()
            .map(|d| d.name().to_owned())
            .collect();
        assert_eq!(names, ["vda", "sda"]);
        let names: Vec<String> = parse_lsblk(LSBLK, Some("sda"))
            .iter()
            .map(|d| d.name().to_owned())
            .collect();
        assert_eq!(names, ["vda"]);
        let disks = parse_lsblk(LSBLK, None);
        assert_eq!(disks.first().map(Disk::path), Some("/dev/vda"));
    }

    #[test]
    fn installing_needs_the_live_medium_and_the_disk_name() {
        let disks = parse_lsblk(LSBLK, None);
        assert!(!disks.is_empty());
        let Some(disk) = disks.first() else { return };
        let mut ctx = Context {
            data_dir: std::env::temp_dir(),
            dry_run: true,
            live: false,
        };
        let mut out = Vec::new();
        assert!(install(&ctx, disk, Some("vda"), &mut out).is_err());
        ctx.live = true;
        assert!(install(&ctx, disk, Some("sda"), &mut out).is_err());
        assert!(install(&ctx, disk, None, &mut out).is_err());
        assert!(install(&ctx, disk, Some("vda"), &mut out).is_ok());
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("dry run: would run `/usr/libexec/sealgate/install-disk /dev/vda`"),
            "{text}"
        );
    }
}
