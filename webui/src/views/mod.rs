//! One module per page; handlers are named `view_<page>_<method>`.

pub mod accounts;
pub mod audit;
pub mod backup;
pub mod cluster;
pub mod dashboard;
pub mod directory;
pub mod home;
pub mod keys;
pub mod login;
pub mod metrics;
pub mod multipart;
pub mod policy;
pub mod queue;
pub mod settings;
pub mod setup;
pub mod tracking;
pub mod trust;
pub mod update;
pub mod wkd;

use sealgate_api::FieldError;

/// Problems with a form, by field key, for showing next to each field.
#[derive(Debug, Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    /// The message for `key` (or a key under it: `relay.domains.2`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|e| {
                e.key == key
                    || e.key
                        .strip_prefix(key)
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
            })
            .map(|e| e.message.as_str())
    }

    /// Problems that belong to no field of the form.
    pub fn others(&self, keys: &[&str]) -> Vec<String> {
        self.0
            .iter()
            .filter(|e| {
                !keys
                    .iter()
                    .any(|k| e.key == *k || e.key.starts_with(&format!("{k}.")))
            })
            .map(ToString::to_string)
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn one(key: &str, message: &str) -> Errors {
        Errors(vec![FieldError::new(key, message)])
    }
}

/// Lines of a textarea, trimmed, without empty ones.
pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn when(ms: impl std::borrow::Borrow<u64>) -> String {
    let ms = *ms.borrow();
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return "?".to_owned();
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The end of a validity: [`when`], or "no expiry" for keys that never
/// expire (stored as the largest time).
pub fn until(ms: impl std::borrow::Borrow<u64>) -> String {
    let ms = *ms.borrow();
    // Past the year 9999: what "never" is stored as.
    if ms >= 253_402_300_800_000 {
        return "no expiry".to_owned();
    }
    when(ms)
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A duration in words (`3 min`, `2 h`, `5 d`).
pub fn ago(ms: impl std::borrow::Borrow<u64>) -> String {
    let s = *ms.borrow() / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86400),
    }
}

/// Octets in words.
pub fn bytes(n: impl std::borrow::Borrow<u64>) -> String {
    let n = *n.borrow();
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS.get(unit).unwrap_or(&"B"))
    }
}

/// Fixed notices after a change, by code (`?done=released`): the page
/// shows words of ours, never text from the address bar.
pub fn notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "released" => "Released: the recipients are being decided again.",
        "retried" => "Retry scheduled: the messages are being tried now.",
        "deleted" => "Deleted.",
        "imported" => "Imported into the directory.",
        "removed" => "Removed from the directory.",
        "saved" => "Saved as a new settings version.",
        "unchanged" => "Nothing changed: no new version was saved.",
        "rolled-back" => "Rolled back: the earlier version is in force as a new version.",
        "created" => "Account created. It enrols its second factor at its first login.",
        "updated" => "Account updated; its sessions were ended.",
        "reset" => "Second factor reset; the account enrols a new one at its next login.",
        "ended" => "Session ended.",
        "password" => "Password changed; your other sessions were ended.",
        "welcome" => "Setup is complete. Welcome to Sealgate.",
        _ => return None,
    })
}
