//! Settings of the key store: the `[hsm]` table of Sealgate's configuration.
//!
//! Trusts: the configuration file (written by the administrator). Must never:
//! hold the PIN itself. The PIN lives in its own file (mode 0600) so it is
//! never in the configuration, in a configuration backup or in a log.

use std::path::PathBuf;

use serde::Deserialize;

/// Where the PKCS#11 module and token are, and how to log in.
///
/// ```toml
/// [hsm]
/// module = "/usr/lib/softhsm/libsofthsm2.so"
/// token_label = "sealgate"
/// data_dir = "/var/lib/sealgate"
/// # pin_file = "/var/lib/sealgate/hsm/pin"   (default: <data_dir>/hsm/pin)
/// # softhsm_conf = "/var/lib/sealgate/hsm/softhsm2.conf"   (SoftHSM only; this default)
/// # max_sessions = 32
/// ```
///
/// SoftHSM reads its token directory from the file `SOFTHSM2_CONF` names;
/// `sealgate` sets that variable itself from `softhsm_conf` before the
/// module is loaded, so neither the daemon nor a verb needs it in its
/// environment.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HsmSettings {
    /// Path of the PKCS#11 module (shared library).
    pub module: PathBuf,
    /// Label of the token holding Sealgate's keys (slots are found by this label,
    /// never by number: SoftHSM renumbers slots).
    pub token_label: String,
    /// File holding the user PIN; `None` means `<data_dir>/hsm/pin`.
    pub pin_file: Option<PathBuf>,
    /// Sealgate's data directory (SoftHSM's token store and the certificate store
    /// live below it).
    pub data_dir: PathBuf,
    /// Upper bound of concurrently open PKCS#11 sessions (= concurrent operations).
    pub max_sessions: usize,
    /// SoftHSM's configuration file; `None` means `<data_dir>/hsm/softhsm2.conf`.
    pub softhsm_conf: Option<PathBuf>,
}

/// Default module path on Debian.
pub const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

impl Default for HsmSettings {
    fn default() -> Self {
        HsmSettings {
            module: PathBuf::from(DEFAULT_MODULE),
            token_label: "sealgate".to_owned(),
            pin_file: None,
            data_dir: PathBuf::from("/var/lib/sealgate"),
            max_sessions: 32,
            softhsm_conf: None,
        }
    }
}

impl HsmSettings {
    /// Settings with every default except the data directory.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        HsmSettings {
            data_dir: data_dir.into(),
            ..HsmSettings::default()
        }
    }

    /// The PIN file actually used.
    pub fn pin_path(&self) -> PathBuf {
        self.pin_file
            .clone()
            .unwrap_or_else(|| self.hsm_dir().join("pin"))
    }

    /// `<data_dir>/hsm`: SoftHSM configuration, token store and PIN files.
    pub fn hsm_dir(&self) -> PathBuf {
        self.data_dir.join("hsm")
    }

    /// The file `SOFTHSM2_CONF` must name: `softhsm_conf`, or
    /// `<data_dir>/hsm/softhsm2.conf`.
    pub fn softhsm_conf(&self) -> PathBuf {
        self.softhsm_conf
            .clone()
            .unwrap_or_else(|| self.hsm_dir().join("softhsm2.conf"))
    }

    /// Whether the module is SoftHSM (which needs its configuration file).
    pub fn is_softhsm(&self) -> bool {
        self.module
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains("softhsm"))
    }

    /// `<data_dir>/certs`: Sealgate's own copy of the gateway certificates.
    pub fn cert_dir(&self) -> PathBuf {
        self.data_dir.join("certs")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde::de::value::{Error as DeError, MapDeserializer};

    fn parse(pairs: &[(&'static str, &'static str)]) -> Result<HsmSettings, DeError> {
        HsmSettings::deserialize(MapDeserializer::<_, DeError>::new(pairs.iter().copied()))
    }

    #[test]
    fn hsm_table_defaults_and_unknown_keys() {
        let s = parse(&[("data_dir", "/srv/sg")]).unwrap();
        assert_eq!(s.module, PathBuf::from(DEFAULT_MODULE));
        assert_eq!(s.token_label, "sealgate");
        assert_eq!(s.pin_path(), PathBuf::from("/srv/sg/hsm/pin"));
        assert_eq!(s.softhsm_conf(), PathBuf::from("/srv/sg/hsm/softhsm2.conf"));
        assert_eq!(s.max_sessions, 32);
        // A PIN in the configuration is refused, not silently ignored.
        assert!(parse(&[("pin", "1234")]).is_err());
    }
}
