//! The key directory: recipients' certificates and keys, and partner
//! domains' gateway certificates, in the shared store (sled on a single
//! node; shared by every node of a cluster).
//!
//! Each entry keeps the certificate (or key) as received, the addresses or
//! the domain it serves, its validity, whether it may encrypt, where it came
//! from (CLI import, harvested from signed mail) with first/last seen, and a
//! trust level (manual, verified, harvested). The pipeline's resolve stage
//! asks [`Directory::best_for`] which entry encrypts for a recipient.
//!
//! Spaces: `directory` (fingerprint → entry, JSON) and `directory_index`
//! (`address-or-@domain` NUL fingerprint → nothing) for lookups.
//!
//! Trusts: the data directory. Imported certificates are parsed by the
//! S/MIME engine's bounded X.509 reader (`sealgate_smime::cert`) before
//! they are stored.

use serde::{Deserialize, Serialize};

use crate::store::{SharedStore, Space, StoreError};

/// What kind of key material an entry holds.
pub use sealgate_api::settings::policy::KeyKind as Kind;

/// How much the entry is believed (harvested < verified < manual).
pub use sealgate_api::ops::directory::Trust;

/// One certificate or key in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: Kind,
    pub fingerprint: String,
    pub subject: String,
    /// The recipient addresses it serves (lower case); empty for a domain entry.
    pub addresses: Vec<String>,
    /// Set for a partner gateway's certificate: it serves every address in the domain.
    pub domain: Option<String>,
    pub not_before_ms: u64,
    pub not_after_ms: u64,
    pub can_encrypt: bool,
    pub trust: Trust,
    /// `cli`, `harvested:<queue id>`, …
    pub source: String,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    /// The certificate (DER) or key (binary OpenPGP), base64 in storage.
    #[serde(with = "b64")]
    pub data: Vec<u8>,
    /// The content ciphers the holder announced (S/MIME
    /// SMIMECapabilities of its signatures: `aes256-gcm`, `aes256-cbc`, …);
    /// empty when unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Issuers the certificate came with (intermediate CAs, DER), for
    /// building its path to a trust anchor when it is used.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "b64_list")]
    pub issuers: Vec<Vec<u8>>,
}

impl Entry {
    /// Usable to encrypt at `now_ms`.
    pub fn usable(&self, now_ms: u64) -> bool {
        self.can_encrypt && self.not_before_ms <= now_ms && now_ms < self.not_after_ms
    }

    /// The index keys: each address, or `@domain`.
    pub fn index_keys(&self) -> Vec<String> {
        match &self.domain {
            Some(d) => vec![format!("@{d}")],
            None => self.addresses.clone(),
        }
    }
}

mod b64_list {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            data.iter()
                .map(|d| base64::engine::general_purpose::STANDARD.encode(d)),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| {
                base64::engine::general_purpose::STANDARD
                    .decode(t.as_bytes())
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// The directory over the shared store (spaces `directory` and
/// `directory_index`), so every node of a cluster sees the same keys.
#[derive(Clone)]
pub struct Directory {
    shared: std::sync::Arc<dyn SharedStore>,
}

/// Most entries one scan returns (a directory is not a bulk store).
const MAX_SCAN: usize = 1_000_000;

/// Why a directory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("{0}")]
    Certificate(String),
    #[error("the certificate names no e-mail address; import it for a domain (--domain)")]
    NoAddress,
    #[error("the file holds only CA certificates, none to encrypt to")]
    OnlyCa,
    #[error("`{0}` is not a domain name")]
    BadDomain(String),
    #[error("no entry {0}")]
    NotFound(String),
    #[error("directory storage: {0}")]
    Storage(String),
}

impl From<StoreError> for DirectoryError {
    fn from(e: StoreError) -> Self {
        DirectoryError::Storage(e.to_string())
    }
}

impl Directory {
    pub fn open(shared: std::sync::Arc<dyn SharedStore>) -> Directory {
        Directory { shared }
    }

    /// Imports certificates or keys: OpenPGP (armored or binary) or X.509
    /// (see [`Directory::import_x509`]), told apart by their first bytes.
    pub fn import(
        &self,
        input: &[u8],
        domain: Option<&str>,
        trust: Trust,
        source: &str,
        now_ms: u64,
    ) -> Result<Vec<Entry>, DirectoryError> {
        self.store(parse(input, domain, trust, source, now_ms)?)
    }

    /// Imports OpenPGP certificates (public parts only), for the e-mail
    /// addresses of their user IDs.
    pub fn import_openpgp(
        &self,
        input: &[u8],
        trust: Trust,
        source: &str,
        now_ms: u64,
    ) -> Result<Vec<Entry>, DirectoryError> {
        let entries = parse_openpgp(input, trust, source, now_ms)?;
        self.store(entries)
    }

    /// Imports S/MIME certificates (PEM with one or many, or DER). With
    /// `domain`, each becomes the gateway certificate of that partner domain.
    /// CA certificates in a bundle are skipped. Returns the stored entries.
    pub fn import_x509(
        &self,
        input: &[u8],
        domain: Option<&str>,
        trust: Trust,
        source: &str,
        now_ms: u64,
    ) -> Result<Vec<Entry>, DirectoryError> {
        let entries = parse_x509(input, domain, trust, source, now_ms)?;
        self.store(entries)
    }

    /// Stores parsed entries (each merged with what the directory knew of
    /// the same fingerprint) and makes them durable.
    pub fn store(&self, entries: Vec<Entry>) -> Result<Vec<Entry>, DirectoryError> {
        let mut stored = Vec::with_capacity(entries.len());
        for entry in entries {
            stored.push(self.remember(entry)?);
        }
        // Unlike queue state, entries cannot be rebuilt from the spool.
        self.shared.flush()?;
        Ok(stored)
    }

    /// Replaces an entry as it is (an administrator's decision: no merge).
    pub fn replace(&self, entry: &Entry) -> Result<(), DirectoryError> {
        self.put(entry)?;
        self.shared.flush()?;
        Ok(())
    }
}

/// Parses certificates or keys without storing them: OpenPGP (armored or
/// binary) or X.509 ([`parse_x509`]), told apart by their first bytes.
pub fn parse(
    input: &[u8],
    domain: Option<&str>,
    trust: Trust,
    source: &str,
    now_ms: u64,
) -> Result<Vec<Entry>, DirectoryError> {
    let text = String::from_utf8_lossy(input.get(..input.len().min(4096)).unwrap_or(&[]));
    let armored_pgp = text.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----");
    let binary_pgp = input.first().is_some_and(|b| b & 0x80 != 0);
    if armored_pgp || binary_pgp {
        if domain.is_some() {
            return Err(DirectoryError::Certificate(
                "partner domains take an S/MIME gateway certificate, not an OpenPGP key".into(),
            ));
        }
        parse_openpgp(input, trust, source, now_ms)
    } else {
        parse_x509(input, domain, trust, source, now_ms)
    }
}

/// Parses OpenPGP certificates (public parts only) into entries for the
/// e-mail addresses of their user IDs, without storing them.
pub fn parse_openpgp(
    input: &[u8],
    trust: Trust,
    source: &str,
    now_ms: u64,
) -> Result<Vec<Entry>, DirectoryError> {
    {
        let limits = sealgate_openpgp::Limits::default();
        let certs = sealgate_openpgp::parse_certs(input, &limits)
            .map_err(|e| DirectoryError::Certificate(e.to_string()))?;
        let mut stored = Vec::new();
        for cert in &certs {
            let s = sealgate_openpgp::summarize(cert)
                .map_err(|e| DirectoryError::Certificate(e.to_string()))?;
            if s.emails.is_empty() {
                return Err(DirectoryError::NoAddress);
            }
            let entry = Entry {
                kind: Kind::Openpgp,
                fingerprint: s.fingerprint.to_ascii_lowercase(),
                subject: s.user_id,
                addresses: s.emails,
                domain: None,
                not_before_ms: s.created_secs.saturating_mul(1000),
                not_after_ms: s.expires_secs.map_or(u64::MAX, |e| e.saturating_mul(1000)),
                can_encrypt: s.can_encrypt,
                trust,
                source: source.to_owned(),
                first_seen_ms: now_ms,
                last_seen_ms: now_ms,
                data: s.binary,
                capabilities: Vec::new(),
                issuers: Vec::new(),
            };
            stored.push(entry);
        }
        if stored.is_empty() {
            return Err(DirectoryError::Certificate(
                "no OpenPGP certificate found".into(),
            ));
        }
        Ok(stored)
    }
}

/// Parses S/MIME certificates (PEM with one or many, or DER) into
/// entries, without storing them. With `domain`, each becomes the gateway
/// certificate of that partner domain. CA certificates are skipped.
pub fn parse_x509(
    input: &[u8],
    domain: Option<&str>,
    trust: Trust,
    source: &str,
    now_ms: u64,
) -> Result<Vec<Entry>, DirectoryError> {
    {
        let domain = domain
            .map(|d| {
                let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
                if d.is_empty() || d.contains(['@', ' ', '/', '\0']) || !d.contains('.') {
                    Err(DirectoryError::BadDomain(d))
                } else {
                    Ok(d)
                }
            })
            .transpose()?;
        let mut stored = Vec::new();
        let certs = sealgate_smime::cert::parse_bundle(input)
            .map_err(|e| DirectoryError::Certificate(e.to_string()))?;
        if certs.is_empty() {
            return Err(DirectoryError::Certificate(
                "no certificate found (expected PEM, DER or PKCS#7)".to_owned(),
            ));
        }
        for cert in certs {
            if cert.ca.is_some_and(|(ca, _)| ca) {
                continue;
            }
            let facts = Facts::of(&cert);
            if domain.is_none() && facts.addresses.is_empty() {
                return Err(DirectoryError::NoAddress);
            }
            let entry = Entry {
                kind: Kind::Smime,
                fingerprint: facts.fingerprint,
                subject: facts.subject,
                addresses: if domain.is_some() {
                    Vec::new()
                } else {
                    facts.addresses
                },
                domain: domain.clone(),
                not_before_ms: facts.not_before_ms,
                not_after_ms: facts.not_after_ms,
                can_encrypt: facts.can_encrypt,
                trust,
                source: source.to_owned(),
                first_seen_ms: now_ms,
                last_seen_ms: now_ms,
                data: facts.der,
                capabilities: Vec::new(),
                issuers: Vec::new(),
            };
            stored.push(entry);
        }
        if stored.is_empty() {
            return Err(DirectoryError::OnlyCa);
        }
        Ok(stored)
    }
}

impl Directory {
    /// Stores `entry`, keeping what an earlier import of the same
    /// fingerprint knew: its source, when it was first seen, and its trust
    /// if higher (never lower what an administrator put in).
    fn remember(&self, mut entry: Entry) -> Result<Entry, DirectoryError> {
        if let Some(previous) = self.get(&entry.fingerprint)? {
            if previous.trust > entry.trust {
                entry.source = previous.source;
            }
            entry.trust = entry.trust.max(previous.trust);
            entry.first_seen_ms = previous.first_seen_ms;
            if entry.capabilities.is_empty() {
                entry.capabilities = previous.capabilities;
            }
        }
        self.put(&entry)?;
        Ok(entry)
    }

    fn put(&self, entry: &Entry) -> Result<(), DirectoryError> {
        let value =
            serde_json::to_vec(entry).map_err(|e| DirectoryError::Storage(e.to_string()))?;
        self.shared
            .put(Space::Directory, entry.fingerprint.as_bytes(), &value)?;
        for key in entry.index_keys() {
            self.shared.put(
                Space::DirectoryIndex,
                &index_key(&key, &entry.fingerprint),
                &[],
            )?;
        }
        Ok(())
    }

    pub fn get(&self, fingerprint: &str) -> Result<Option<Entry>, DirectoryError> {
        Ok(self
            .shared
            .get(Space::Directory, fingerprint.as_bytes())?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// Removes an entry by fingerprint (a unique prefix of at least 8 hex digits works).
    pub fn remove(&self, fingerprint: &str) -> Result<Entry, DirectoryError> {
        let entry = self.find(fingerprint)?;
        for key in entry.index_keys() {
            self.shared
                .remove(Space::DirectoryIndex, &index_key(&key, &entry.fingerprint))?;
        }
        self.shared
            .remove(Space::Directory, entry.fingerprint.as_bytes())?;
        self.shared.flush()?;
        Ok(entry)
    }

    /// An entry by fingerprint or unique fingerprint prefix (8+ hex digits).
    pub fn find(&self, fingerprint: &str) -> Result<Entry, DirectoryError> {
        let wanted = fingerprint.to_ascii_lowercase();
        if wanted.len() < 8 {
            return Err(DirectoryError::NotFound(fingerprint.to_owned()));
        }
        let hits = self
            .shared
            .scan_prefix(Space::Directory, wanted.as_bytes(), 2)?;
        match hits.as_slice() {
            [(_, v)] => {
                serde_json::from_slice(v).map_err(|e| DirectoryError::Storage(e.to_string()))
            }
            _ => Err(DirectoryError::NotFound(fingerprint.to_owned())),
        }
    }

    /// Every entry, by fingerprint.
    pub fn all(&self) -> Result<Vec<Entry>, DirectoryError> {
        Ok(self
            .shared
            .range(Space::Directory, &[], None, false, MAX_SCAN)?
            .into_iter()
            .filter_map(|(_, value)| serde_json::from_slice(&value).ok())
            .collect())
    }

    /// Entries indexed under an address or `@domain`.
    pub fn lookup(&self, key: &str) -> Result<Vec<Entry>, DirectoryError> {
        let prefix = index_key(&key.to_ascii_lowercase(), "");
        let mut entries = Vec::new();
        for (k, _) in self
            .shared
            .scan_prefix(Space::DirectoryIndex, &prefix, MAX_SCAN)?
        {
            let Some(fingerprint) = k
                .get(prefix.len()..)
                .and_then(|f| std::str::from_utf8(f).ok())
            else {
                continue;
            };
            entries.extend(self.get(fingerprint)?);
        }
        Ok(entries)
    }

    /// The entry to encrypt to for `address` at `now_ms`, in the order of
    /// `kinds`, trusted at least `min_trust`; the recipient's own
    /// certificate or key before its domain's gateway certificate; among
    /// candidates the highest trust, then the newest.
    pub fn best_for(
        &self,
        address: &str,
        kinds: &[Kind],
        now_ms: u64,
        min_trust: Trust,
    ) -> Result<Option<Entry>, DirectoryError> {
        let address = address.to_ascii_lowercase();
        let Some((_, domain)) = address.rsplit_once('@') else {
            return Ok(None);
        };
        let pick = |candidates: Vec<Entry>| {
            kinds.iter().find_map(|kind| {
                candidates
                    .iter()
                    .filter(|e| e.kind == *kind && e.trust >= min_trust && e.usable(now_ms))
                    .max_by_key(|e| (e.trust, e.not_before_ms))
                    .cloned()
            })
        };
        match pick(self.lookup(&address)?) {
            Some(entry) => Ok(Some(entry)),
            None => Ok(pick(self.lookup(&format!("@{domain}"))?)),
        }
    }
}

/// What the directory keeps about one certificate.
struct Facts {
    der: Vec<u8>,
    fingerprint: String,
    subject: String,
    addresses: Vec<String>,
    not_before_ms: u64,
    not_after_ms: u64,
    can_encrypt: bool,
}

impl Facts {
    fn of(cert: &sealgate_smime::Certificate) -> Facts {
        let der = cert.der().to_vec();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
        let subject = x509_parser::parse_x509_certificate(&der)
            .map(|(_, c)| c.subject().to_string())
            .unwrap_or_default();
        let ms = |secs: i64| u64::try_from(secs).unwrap_or(0).saturating_mul(1000);
        Facts {
            fingerprint: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
            subject,
            addresses: cert.emails.clone(),
            not_before_ms: ms(cert.not_before),
            not_after_ms: ms(cert.not_after),
            can_encrypt: cert.can_encrypt(),
            der,
        }
    }
}

fn index_key(key: &str, fingerprint: &str) -> Vec<u8> {
    let mut out = key.as_bytes().to_vec();
    out.push(0);
    out.extend_from_slice(fingerprint.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn cert(email: Option<&str>, days_valid: i64) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        if let Some(e) = email {
            params.subject_alt_names = vec![rcgen::SanType::Rfc822Name(e.try_into().unwrap())];
        }
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(days_valid);
        // rcgen makes P-256 keys: an EC certificate encrypts by key agreement.
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyAgreement];
        params.self_signed(&key).unwrap().pem()
    }

    fn dir() -> Directory {
        let dir = std::env::temp_dir().join(format!(
            "sealgate-directory-{}",
            crate::util::new_session_id()
        ));
        Directory::open(std::sync::Arc::new(crate::store::SledStore::new(
            &crate::db::Db::open(&dir).unwrap(),
        )))
    }

    #[test]
    fn import_lookup_best_and_remove() {
        let d = dir();
        let now = crate::envelope::now_ms();
        let old = d
            .import_x509(
                cert(Some("bob@ext.example"), 10).as_bytes(),
                None,
                Trust::Manual,
                "cli",
                now,
            )
            .unwrap();
        let newer = d
            .import_x509(
                cert(Some("Bob@ext.example"), 20).as_bytes(),
                None,
                Trust::Harvested,
                "harvested:q1",
                now,
            )
            .unwrap();
        let partner = d
            .import_x509(
                cert(None, 30).as_bytes(),
                Some("Partner.Example"),
                Trust::Manual,
                "cli",
                now,
            )
            .unwrap();
        assert_eq!(d.all().unwrap().len(), 3);
        // Manual trust beats a newer harvested certificate.
        let best = d
            .best_for("BOB@ext.example", &[Kind::Smime], now, Trust::Harvested)
            .unwrap()
            .unwrap();
        assert_eq!(best.fingerprint, old[0].fingerprint);
        // The partner domain's gateway certificate serves any of its addresses.
        let p = d
            .best_for(
                "anyone@partner.example",
                &[Kind::Smime],
                now,
                Trust::Harvested,
            )
            .unwrap()
            .unwrap();
        assert_eq!(p.fingerprint, partner[0].fingerprint);
        assert!(
            d.best_for("nobody@else.example", &[Kind::Smime], now, Trust::Harvested)
                .unwrap()
                .is_none()
        );
        assert!(
            d.best_for("bob@ext.example", &[Kind::Openpgp], now, Trust::Harvested)
                .unwrap()
                .is_none()
        );
        // Expired certificates are never chosen.
        let later = now + 15 * 86_400_000;
        let best = d
            .best_for("bob@ext.example", &[Kind::Smime], later, Trust::Harvested)
            .unwrap()
            .unwrap();
        assert_eq!(best.fingerprint, newer[0].fingerprint);
        // A harvested certificate is not enough where more trust is asked.
        assert!(
            d.best_for("bob@ext.example", &[Kind::Smime], later, Trust::Anchored)
                .unwrap()
                .is_none()
        );
        assert!(
            d.best_for(
                "bob@ext.example",
                &[Kind::Smime],
                now + 25 * 86_400_000,
                Trust::Harvested
            )
            .unwrap()
            .is_none()
        );
        // Removal by prefix takes it out of the index too.
        d.remove(&old[0].fingerprint[..12]).unwrap();
        assert_eq!(d.lookup("bob@ext.example").unwrap().len(), 1);
        assert!(d.remove("abc").is_err());
    }

    #[test]
    fn refuses_certificates_without_a_target() {
        let d = dir();
        let now = crate::envelope::now_ms();
        assert!(matches!(
            d.import_x509(cert(None, 10).as_bytes(), None, Trust::Manual, "cli", now),
            Err(DirectoryError::NoAddress)
        ));
        assert!(matches!(
            d.import_x509(
                cert(None, 10).as_bytes(),
                Some("no domain"),
                Trust::Manual,
                "cli",
                now
            ),
            Err(DirectoryError::BadDomain(_))
        ));
        assert!(
            d.import_x509(b"junk", None, Trust::Manual, "cli", now)
                .is_err()
        );
    }
}
