//! The gateway's own OpenPGP identity: a v4 certificate whose primary key
//! (certify + sign) and encryption subkeys are keys on the token.
//!
//! The public key packets are rebuilt from the token's public keys and the
//! creation times persisted in `gateway.toml` (a v4 fingerprint hashes the
//! creation time, so losing it would change the gateway's identity). The
//! self-signed certificate (user ID and subkey bindings, made by the token)
//! is kept beside it as `gateway.pgp`. Loading checks that both agree with
//! the token. [`GatewayIdentity::rotate`] adds a new encryption subkey; the
//! old ones stay bound so mail encrypted to them still decrypts.
//!
//! Supported: RSA-3072 (RSA sign + RSA encrypt) and NIST P-256/P-384
//! (ECDSA + ECDH). Preferences advertised: AES-256, AES-128; SHA-256/512;
//! SEIPD v1 and v2 with AES-OCB.
//!
//! Trusts: the token and the identity directory (operator-owned, written
//! atomically). Must never: hold a private key, or rewrite a creation time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sealgate_hsm::{Hsm, KeyAlgorithm, KeyUsage, PublicKey};
use sequoia_openpgp as openpgp;

use openpgp::Cert;
use openpgp::Packet;
use openpgp::crypto::mpi::{self, MPI};
use openpgp::packet::UserID;
use openpgp::packet::key::{Key4, PrimaryRole, PublicParts, SubordinateRole};
use openpgp::packet::signature::SignatureBuilder;
use openpgp::parse::Parse;
use openpgp::serialize::{Serialize, SerializeInto};
use openpgp::types::{
    AEADAlgorithm, CompressionAlgorithm, Curve, Features, HashAlgorithm, KeyFlags,
    PublicKeyAlgorithm, SignatureType, SymmetricAlgorithm,
};

use crate::error::{Error, Result};
use crate::token::{PublicKeyPacket, TokenDecryptor, TokenKeyOp, TokenSigner};

/// Key type of the gateway certificate.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum GatewayAlgorithm {
    /// RSA-3072 primary and encryption subkey.
    Rsa3072,
    /// ECDSA P-256 primary, ECDH P-256 encryption subkey.
    P256,
    /// ECDSA P-384 primary, ECDH P-384 encryption subkey.
    P384,
}

impl GatewayAlgorithm {
    fn token_algorithm(self) -> KeyAlgorithm {
        match self {
            GatewayAlgorithm::Rsa3072 => KeyAlgorithm::Rsa3072,
            GatewayAlgorithm::P256 => KeyAlgorithm::P256,
            GatewayAlgorithm::P384 => KeyAlgorithm::P384,
        }
    }

    fn encryption_usage(self) -> KeyUsage {
        match self {
            GatewayAlgorithm::Rsa3072 => KeyUsage::Decrypt,
            GatewayAlgorithm::P256 | GatewayAlgorithm::P384 => KeyUsage::Derive,
        }
    }
}

/// What to create.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    /// The certificate's user ID, e.g. `Sealgate <gateway@example.org>`.
    pub user_id: String,
    /// Key type.
    pub algorithm: GatewayAlgorithm,
    /// Token label prefix: keys are `<prefix>-primary` and `<prefix>-enc-<n>`.
    pub label_prefix: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct StoredKey {
    label: String,
    /// Creation time, seconds since the Unix epoch (part of the fingerprint).
    created: u64,
    fingerprint: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Stored {
    algorithm: GatewayAlgorithm,
    user_id: String,
    label_prefix: String,
    primary: StoredKey,
    subkeys: Vec<StoredKey>,
}

/// One encryption subkey and its token key.
#[derive(Clone)]
struct Subkey {
    key: PublicKeyPacket,
    op: TokenKeyOp,
}

/// The gateway certificate with its token keys.
#[derive(Clone)]
pub struct GatewayIdentity {
    dir: PathBuf,
    stored: Stored,
    cert: Cert,
    primary: PublicKeyPacket,
    primary_token: Arc<dyn sealgate_hsm::Signer>,
    subkeys: Vec<Subkey>,
}

impl std::fmt::Debug for GatewayIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayIdentity")
            .field("fingerprint", &self.cert.fingerprint().to_hex())
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

const TOML: &str = "gateway.toml";
const CERT: &str = "gateway.pgp";

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// The OpenPGP key for a token public key, created at `created`.
fn key_packet(public: &PublicKey, usage: KeyUsage, created: SystemTime) -> Result<PublicKeyPacket> {
    let key = match (public, usage) {
        (PublicKey::Rsa { n, e }, _) => Key4::import_public_rsa(e, n, Some(created)),
        (PublicKey::Ec { curve, point }, KeyUsage::Sign) => Key4::new(
            created,
            PublicKeyAlgorithm::ECDSA,
            mpi::PublicKey::ECDSA {
                curve: pgp_curve(*curve),
                q: MPI::new(point),
            },
        ),
        (PublicKey::Ec { curve, point }, _) => {
            let (hash, sym) = match curve {
                sealgate_hsm::Curve::P256 => (HashAlgorithm::SHA256, SymmetricAlgorithm::AES128),
                _ => (HashAlgorithm::SHA384, SymmetricAlgorithm::AES256),
            };
            Key4::new(
                created,
                PublicKeyAlgorithm::ECDH,
                mpi::PublicKey::ECDH {
                    curve: pgp_curve(*curve),
                    q: MPI::new(point),
                    hash,
                    sym,
                },
            )
        }
        _ => return Err(Error::Identity("unsupported token key".into())),
    };
    let key: openpgp::packet::Key<PublicParts, PrimaryRole> = key.map_err(Error::pgp)?.into();
    Ok(key.role_into_unspecified())
}

fn pgp_curve(curve: sealgate_hsm::Curve) -> Curve {
    match curve {
        sealgate_hsm::Curve::P256 => Curve::NistP256,
        _ => Curve::NistP384,
    }
}

fn token_op(hsm: &Hsm, label: &str, algorithm: GatewayAlgorithm) -> Result<TokenKeyOp> {
    Ok(match algorithm.encryption_usage() {
        KeyUsage::Decrypt => TokenKeyOp::Rsa(Arc::new(hsm.decryptor(label)?)),
        _ => TokenKeyOp::Ecdh(Arc::new(hsm.key_agreement(label)?)),
    })
}

fn op_public(op: &TokenKeyOp) -> &PublicKey {
    match op {
        TokenKeyOp::Rsa(k) => k.public_key(),
        TokenKeyOp::Ecdh(k) => k.public_key(),
    }
}

/// Creation time for a new key: now, whole seconds.
fn now_secs() -> SystemTime {
    from_unix(unix(SystemTime::now()))
}

impl GatewayIdentity {
    /// Generates the primary key and a first encryption subkey on the token,
    /// self-signs the certificate and writes `gateway.toml` and `gateway.pgp`
    /// under `dir`. Refuses to overwrite an existing identity.
    pub fn create(hsm: &Hsm, dir: &Path, spec: &GatewaySpec) -> Result<GatewayIdentity> {
        if dir.join(TOML).exists() {
            return Err(Error::Identity(format!(
                "{} already exists",
                dir.join(TOML).display()
            )));
        }
        let label = format!("{}-primary", spec.label_prefix);
        let info = hsm.generate(&label, spec.algorithm.token_algorithm(), KeyUsage::Sign)?;
        let public = info
            .public
            .ok_or_else(|| Error::Identity("token returned no public key".into()))?;
        let created = now_secs();
        let primary = key_packet(&public, KeyUsage::Sign, created)?;
        let primary_token: Arc<dyn sealgate_hsm::Signer> = Arc::new(hsm.signer(&label)?);
        let primary_pk: openpgp::packet::Key<PublicParts, PrimaryRole> =
            primary.clone().role_into_primary();
        let cert = Cert::try_from(vec![Packet::from(primary_pk)]).map_err(Error::pgp)?;
        let mut signer = TokenSigner::new(primary.clone(), primary_token.clone());
        let uid = UserID::from(spec.user_id.as_str());
        let builder = SignatureBuilder::new(SignatureType::PositiveCertification)
            .set_hash_algo(signer.hash())
            .set_key_flags(KeyFlags::empty().set_certification().set_signing())
            .and_then(|b| b.set_primary_userid(true))
            .and_then(|b| b.set_features(Features::empty().set_seipdv1().set_seipdv2()))
            .and_then(|b| {
                b.set_preferred_symmetric_algorithms(vec![
                    SymmetricAlgorithm::AES256,
                    SymmetricAlgorithm::AES128,
                ])
            })
            .and_then(|b| {
                b.set_preferred_hash_algorithms(vec![
                    HashAlgorithm::SHA256,
                    HashAlgorithm::SHA512,
                    HashAlgorithm::SHA384,
                ])
            })
            .and_then(|b| {
                b.set_preferred_compression_algorithms(vec![
                    CompressionAlgorithm::Uncompressed,
                    CompressionAlgorithm::Zip,
                ])
            })
            .and_then(|b| {
                b.set_preferred_aead_ciphersuites(vec![
                    (SymmetricAlgorithm::AES256, AEADAlgorithm::OCB),
                    (SymmetricAlgorithm::AES128, AEADAlgorithm::OCB),
                ])
            })
            .map_err(Error::pgp)?;
        let sig = uid.bind(&mut signer, &cert, builder).map_err(Error::pgp)?;
        let (cert, _) = cert
            .insert_packets(vec![Packet::from(uid), sig.into()])
            .map_err(Error::pgp)?;
        let mut identity = GatewayIdentity {
            dir: dir.to_owned(),
            stored: Stored {
                algorithm: spec.algorithm,
                user_id: spec.user_id.clone(),
                label_prefix: spec.label_prefix.clone(),
                primary: StoredKey {
                    label,
                    created: unix(created),
                    fingerprint: primary.fingerprint().to_hex(),
                },
                subkeys: Vec::new(),
            },
            cert,
            primary,
            primary_token,
            subkeys: Vec::new(),
        };
        identity.add_subkey(hsm)?;
        Ok(identity)
    }

    /// Adds a new encryption subkey (rotation); older subkeys stay bound so
    /// mail encrypted to them still decrypts. Peers encrypt to the newest.
    pub fn rotate(&mut self, hsm: &Hsm) -> Result<()> {
        self.add_subkey(hsm)
    }

    fn add_subkey(&mut self, hsm: &Hsm) -> Result<()> {
        let n = self.stored.subkeys.len() + 1;
        let label = format!("{}-enc-{n}", self.stored.label_prefix);
        let algorithm = self.stored.algorithm;
        hsm.generate(
            &label,
            algorithm.token_algorithm(),
            algorithm.encryption_usage(),
        )?;
        let op = token_op(hsm, &label, algorithm)?;
        // A subkey must not predate the signature binding it, and must differ
        // from the previous subkey's second so peers order them.
        let created = now_secs();
        let key: openpgp::packet::Key<PublicParts, SubordinateRole> =
            key_packet(op_public(&op), algorithm.encryption_usage(), created)?
                .role_into_subordinate();
        let mut signer = TokenSigner::new(self.primary.clone(), self.primary_token.clone());
        let builder = SignatureBuilder::new(SignatureType::SubkeyBinding)
            .set_hash_algo(signer.hash())
            .set_key_flags(
                KeyFlags::empty()
                    .set_transport_encryption()
                    .set_storage_encryption(),
            )
            .map_err(Error::pgp)?;
        let sig = key
            .bind(&mut signer, &self.cert, builder)
            .map_err(Error::pgp)?;
        let (cert, _) = self
            .cert
            .clone()
            .insert_packets(vec![Packet::from(key.clone()), sig.into()])
            .map_err(Error::pgp)?;
        self.stored.subkeys.push(StoredKey {
            label,
            created: unix(created),
            fingerprint: key.fingerprint().to_hex(),
        });
        self.cert = cert;
        self.subkeys.push(Subkey {
            key: key.role_into_unspecified(),
            op,
        });
        self.save()
    }

    /// Loads the identity from `dir`, checking it against the token.
    pub fn load(hsm: &Hsm, dir: &Path) -> Result<GatewayIdentity> {
        let text = std::fs::read_to_string(dir.join(TOML))?;
        let stored: Stored =
            toml::from_str(&text).map_err(|e| Error::Identity(format!("{TOML}: {e}")))?;
        let cert = Cert::from_file(dir.join(CERT)).map_err(Error::pgp)?;
        let primary_token: Arc<dyn sealgate_hsm::Signer> =
            Arc::new(hsm.signer(&stored.primary.label)?);
        let primary = key_packet(
            primary_token.public_key(),
            KeyUsage::Sign,
            from_unix(stored.primary.created),
        )?;
        let check = |key: &PublicKeyPacket, want: &str| {
            if key.fingerprint().to_hex() == want {
                Ok(())
            } else {
                Err(Error::Identity(format!(
                    "token key does not match fingerprint {want}"
                )))
            }
        };
        check(&primary, &stored.primary.fingerprint)?;
        if cert.fingerprint() != primary.fingerprint() {
            return Err(Error::Identity(format!("{CERT} is not the primary key's")));
        }
        let mut subkeys = Vec::new();
        for s in &stored.subkeys {
            let op = token_op(hsm, &s.label, stored.algorithm)?;
            let key = key_packet(
                op_public(&op),
                stored.algorithm.encryption_usage(),
                from_unix(s.created),
            )?;
            check(&key, &s.fingerprint)?;
            subkeys.push(Subkey {
                key: key.role_into_unspecified(),
                op,
            });
        }
        Ok(GatewayIdentity {
            dir: dir.to_owned(),
            stored,
            cert,
            primary,
            primary_token,
            subkeys,
        })
    }

    fn save(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let toml = toml::to_string(&self.stored)
            .map_err(|e| Error::Identity(format!("serialising {TOML}: {e}")))?;
        let cert = self.export_binary()?;
        write_atomic(&self.dir.join(CERT), &cert)?;
        write_atomic(&self.dir.join(TOML), toml.as_bytes())
    }

    /// The public certificate.
    pub fn cert(&self) -> &Cert {
        &self.cert
    }

    /// The mail addresses in the certificate's user IDs, primary first.
    pub fn email_addresses(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let policy = openpgp::policy::StandardPolicy::new();
        let primary = self
            .cert
            .with_policy(&policy, None)
            .ok()
            .and_then(|valid| valid.primary_userid().ok())
            .and_then(|u| u.userid().email().ok().flatten());
        let all = self
            .cert
            .userids()
            .filter_map(|u| u.userid().email().ok().flatten());
        for email in primary.into_iter().chain(all) {
            if !out.iter().any(|known| known == email) {
                out.push(email.to_owned());
            }
        }
        out
    }

    /// The certificate, binary (`application/pgp-keys`, WKD).
    pub fn export_binary(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.cert.serialize(&mut out).map_err(Error::pgp)?;
        Ok(out)
    }

    /// The certificate, ASCII-armored.
    pub fn export_armored(&self) -> Result<Vec<u8>> {
        self.cert.armored().to_vec().map_err(Error::pgp)
    }

    /// A signer over the primary key.
    pub(crate) fn signer(&self) -> TokenSigner {
        TokenSigner::new(self.primary.clone(), self.primary_token.clone())
    }

    /// Decryptors for every encryption subkey, newest first.
    pub(crate) fn decryptors(&self) -> Vec<TokenDecryptor> {
        self.subkeys
            .iter()
            .rev()
            .map(|s| TokenDecryptor::new(s.key.clone(), s.op.clone()))
            .collect()
    }
}

/// Writes `path` via a temporary file, fsync and rename.
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}
