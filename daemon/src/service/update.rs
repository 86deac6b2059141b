//! Software updates of the appliance, once for every front end: the root
//! slots RAUC reports, and installing a signed bundle into the slot that
//! is not running.
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
//! Front ends: the service operations `update.status` and `update.install`
//! (the CLI's `sealgate update`, the admin UI), and the recovery console's
//! menu 9, which sends the same operation to the running daemon and, when
//! no daemon answers (the console is for when things are broken), calls
//! [`install`] here itself.
//!
//! Runs two RAUC commands, each a constant argument vector, one of them
//! with the one checked argument a [`BundleSource`] can be; RAUC's service
//! (root, over D-Bus) does the work, so the unprivileged daemon can ask
//! for it. Trusts: RAUC for the signature check and the slot state, and the
//! files `boot-ok` and RAUC's post-install handler keep in
//! `<data>/update/`.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use sealgate_api::ops::update::{
    RootSlot, UpdateInstall, UpdateInstalled, UpdateReport, UpdateStatus,
};
use sealgate_api::{Actor, ServiceError};

use super::{Ctx, blocking};

/// The running root's version, written by the image build.
const IMAGE_VERSION: &str = "/etc/sealgate/image-version";

/// Written by the live medium's init: this is a live run (the ISO).
const LIVE_MARKER: &str = "/run/sealgate-live/fstab";

/// Where an update's outcome is recorded (by `boot-ok`, which also keeps
/// `update/slot-<A|B>.version` of every slot it confirmed), relative to the
/// data directory.
const LAST_RESULT: &str = "update/last-result";

/// Where a bundle is an update waiting for its first boot (written by RAUC's
/// post-install handler), relative to the data directory.
const TRIAL: &str = "update/trial";

/// Why an update did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// The source is not an absolute path to a file or an http(s) URL.
    #[error("{0}")]
    InvalidSource(String),
    /// The live system (the ISO) is installed to a disk, not updated.
    #[error("the live system is not updated; install it to a disk first")]
    LiveSystem,
    /// RAUC refused the bundle (signature, compatibility, a bad image):
    /// the same bundle will be refused again.
    #[error("the update was refused: {reason}")]
    Refused { reason: String },
    /// RAUC could not download the bundle: it may work later.
    #[error("the bundle could not be downloaded: {reason}")]
    Download { reason: String },
    /// RAUC does not answer (not installed, its service down).
    #[error("RAUC does not answer: {reason}")]
    Unavailable { reason: String },
}

impl UpdateError {
    /// Whether trying the same again later can help.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            UpdateError::Download { .. } | UpdateError::Unavailable { .. }
        )
    }
}

impl From<UpdateError> for ServiceError {
    fn from(e: UpdateError) -> ServiceError {
        match &e {
            UpdateError::InvalidSource(_) | UpdateError::LiveSystem => {
                ServiceError::invalid("source", e.to_string())
            }
            UpdateError::Download { .. } | UpdateError::Unavailable { .. } => {
                ServiceError::Unavailable {
                    what: e.to_string(),
                }
            }
            UpdateError::Refused { .. } => ServiceError::failed(e.to_string()),
        }
    }
}

/// Where an update bundle comes from: a file on the appliance or a URL RAUC
/// downloads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSource(String);

impl BundleSource {
    /// An absolute path to an existing regular file, or an http(s) URL
    /// without spaces, quotes, backslashes or control characters.
    pub fn parse(text: &str) -> Result<Self, UpdateError> {
        let wanted = || {
            UpdateError::InvalidSource(
                "give the bundle as an absolute file path or an http(s):// URL".into(),
            )
        };
        let text = text.trim();
        let clean = !text.is_empty()
            && text.len() <= 2048
            && !text
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\'));
        if !clean {
            return Err(wanted());
        }
        if let Some(rest) = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
        {
            let host = rest.split('/').next().unwrap_or("");
            if host.is_empty() || host.starts_with('-') {
                return Err(UpdateError::InvalidSource(format!(
                    "no host in the URL {text:?}"
                )));
            }
            return Ok(BundleSource(text.to_owned()));
        }
        if text.starts_with('/') {
            return match fs::metadata(text) {
                Ok(meta) if meta.is_file() => Ok(BundleSource(text.to_owned())),
                Ok(_) => Err(UpdateError::InvalidSource(format!(
                    "{text} is not a regular file"
                ))),
                Err(e) => Err(UpdateError::InvalidSource(format!("{text}: {e}"))),
            };
        }
        Err(wanted())
    }

    /// The source as RAUC gets it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The RAUC commands this module runs: constant argument vectors, and one
/// checked argument.
#[derive(Debug, Clone, Copy)]
enum Rauc<'a> {
    /// The root slots as JSON (read-only).
    Status,
    /// Install a signed bundle into the other root slot.
    Install(&'a BundleSource),
}

impl Rauc<'_> {
    fn argv(self) -> &'static [&'static str] {
        match self {
            Rauc::Status => &["status", "--detailed", "--output-format=json"],
            Rauc::Install(_) => &["install"],
        }
    }

    fn command(self) -> Command {
        let mut command = Command::new("rauc");
        command.args(self.argv());
        if let Rauc::Install(source) = self {
            command.arg(source.as_str());
        }
        command
    }

    /// The command line, as dry runs and errors show it.
    fn display(self) -> String {
        let mut words = format!("rauc {}", self.argv().join(" "));
        if let Rauc::Install(source) = self {
            words.push(' ');
            words.push_str(source.as_str());
        }
        words
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
pub fn slots(data_dir: &Path) -> Option<Slots> {
    let output = Rauc::Status.command().stderr(Stdio::null()).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let mut slots = Slots::parse(&String::from_utf8_lossy(&output.stdout))?;
    for slot in slots.slots.iter_mut().filter(|s| s.version.is_none()) {
        let record = data_dir.join(format!("update/slot-{}.version", slot.bootname));
        slot.version = fs::read_to_string(record)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty());
    }
    Some(slots)
}

/// The update waiting for its trial boot: (slot, version).
fn trial(data_dir: &Path) -> Option<(String, String)> {
    let trial = fs::read_to_string(data_dir.join(TRIAL)).ok()?;
    let mut words = trial.split_whitespace();
    Some((words.next()?.to_owned(), words.next()?.to_owned()))
}

/// The last update's outcome as `boot-ok` recorded it, or a pending trial.
pub fn last_result(data_dir: &Path) -> Option<String> {
    if let Some((slot, version)) = trial(data_dir) {
        return Some(format!(
            "{version} installed in slot {slot}, tried on the next boot"
        ));
    }
    fs::read_to_string(data_dir.join(LAST_RESULT))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The running root's version.
pub fn image_version() -> String {
    fs::read_to_string(IMAGE_VERSION)
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// Whether this is the live system (the ISO).
pub fn is_live() -> bool {
    Path::new(LIVE_MARKER).exists()
}

/// The root slots and the last update's outcome.
pub fn report(data_dir: &Path, live: bool) -> UpdateReport {
    let slots = slots(data_dir);
    UpdateReport {
        running_version: image_version(),
        live,
        slots_known: slots.is_some(),
        slots: slots
            .map(|s| {
                s.slots
                    .iter()
                    .map(|slot| RootSlot {
                        name: slot.bootname.clone(),
                        running: slot.state == "booted",
                        boot_status: slot.boot_status.clone(),
                        version: slot.version.clone(),
                        next_boot: slot.name == s.primary,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        last_result: last_result(data_dir),
    }
}

/// Install `source` into the root slot that is not running. RAUC's
/// progress lines go to `progress` as they come; `dry_run` only says what
/// would run.
pub fn install(
    data_dir: &Path,
    live: bool,
    source: &BundleSource,
    dry_run: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<UpdateInstalled, UpdateError> {
    if live {
        return Err(UpdateError::LiveSystem);
    }
    let command = Rauc::Install(source);
    if dry_run {
        progress(&format!("dry run: would run `{}`", command.display()));
        return Ok(UpdateInstalled {
            slot: None,
            version: None,
            text: "dry run: nothing installed".into(),
        });
    }
    let target = slots(data_dir).and_then(|s| s.other().map(str::to_owned));
    run_install(command, progress)?;
    let (slot, version) = match trial(data_dir) {
        Some((slot, version)) => (Some(slot), Some(version)),
        None => (target, None),
    };
    let text = format!(
        "{} is installed in root slot {} and starts with the next boot. If the \
         gateway does not come up there, the appliance returns to this version by itself.",
        version.as_deref().unwrap_or("The update"),
        slot.as_deref().unwrap_or("(the other one)"),
    );
    Ok(UpdateInstalled {
        slot,
        version,
        text,
    })
}

/// Runs `rauc install`, passing its output on line by line; its error
/// output says why it failed.
fn run_install(command: Rauc<'_>, progress: &mut dyn FnMut(&str)) -> Result<(), UpdateError> {
    let mut child = command
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| UpdateError::Unavailable {
            reason: format!("`{}`: {e}", command.display()),
        })?;
    // Read the error output beside the progress, so neither pipe fills up.
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    });
    let mut last_lines: Vec<String> = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            progress(&line);
            last_lines.push(line);
            if last_lines.len() > 3 {
                last_lines.remove(0);
            }
        }
    }
    let status = child.wait().map_err(|e| UpdateError::Unavailable {
        reason: format!("`{}`: {e}", command.display()),
    })?;
    let errors = stderr
        .and_then(|t| t.join().ok())
        .unwrap_or_default()
        .trim()
        .to_owned();
    if status.success() {
        return Ok(());
    }
    let reason = if errors.is_empty() {
        format!("{} ({status})", last_lines.join(" / "))
    } else {
        errors.lines().collect::<Vec<_>>().join(" / ")
    };
    Err(classify(reason))
}

/// What kind of failure RAUC's message describes.
fn classify(reason: String) -> UpdateError {
    let lower = reason.to_lowercase();
    if lower.contains("download") {
        UpdateError::Download { reason }
    } else if lower.contains("de.pengutronix.rauc")
        || lower.contains("proxy")
        || lower.contains("d-bus")
        || lower.contains("dbus")
    {
        UpdateError::Unavailable { reason }
    } else {
        UpdateError::Refused { reason }
    }
}

/// `update.status`.
pub async fn status(
    ctx: Arc<Ctx>,
    _: Actor,
    _: UpdateStatus,
) -> Result<UpdateReport, ServiceError> {
    let data_dir = ctx.live.get().config.data_dir.clone();
    blocking(move || Ok(report(&data_dir, is_live()))).await
}

/// `update.install`: RAUC's progress goes to the log.
pub async fn install_op(
    ctx: Arc<Ctx>,
    actor: Actor,
    op: UpdateInstall,
) -> Result<UpdateInstalled, ServiceError> {
    let data_dir = ctx.live.get().config.data_dir.clone();
    blocking(move || {
        let source = BundleSource::parse(&op.source)?;
        tracing::info!(actor = %actor.name, "installing an update bundle");
        let mut log = |line: &str| tracing::info!(rauc = line, "update");
        Ok(install(&data_dir, is_live(), &source, false, &mut log)?)
    })
    .await
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
    fn the_live_system_is_not_updated() {
        let Ok(source) = BundleSource::parse("http://10.0.2.2/u.raucb") else {
            return;
        };
        let result = install(&std::env::temp_dir(), true, &source, true, &mut |_| {});
        assert!(matches!(result, Err(UpdateError::LiveSystem)));
    }

    #[test]
    fn a_dry_run_says_what_it_would_run() {
        let Ok(source) = BundleSource::parse("https://updates.example/s.raucb") else {
            return;
        };
        let mut lines = Vec::new();
        let result = install(&std::env::temp_dir(), false, &source, true, &mut |l| {
            lines.push(l.to_owned())
        });
        assert!(result.is_ok());
        assert_eq!(
            lines,
            ["dry run: would run `rauc install https://updates.example/s.raucb`"]
        );
    }

    #[test]
    fn rauc_failures_are_told_apart() {
        let refused = classify("signature verification failed: certificate unknown".into());
        assert!(matches!(refused, UpdateError::Refused { .. }));
        assert!(!refused.is_temporary());
        let download = classify("Failed to download bundle http://x/u.raucb: timeout".into());
        assert!(download.is_temporary());
        let down =
            classify("Error creating proxy: The name de.pengutronix.rauc was not provided".into());
        assert!(matches!(down, UpdateError::Unavailable { .. }));
        assert!(matches!(
            ServiceError::from(refused),
            ServiceError::Failed { .. }
        ));
    }
}
