//! `sealgate smime decrypt|encrypt|sign|verify`: the engine for
//! administrators and scripts. Each verb reads one message on stdin and
//! writes one on stdout; diagnostics and the verify verdict go to stderr.
//!
//! Exit codes (stable, for scripts):
//! - 0: done (verify: the signature is valid and trusted);
//! - 2: usage error (clap);
//! - 3: the message was refused (malformed, unsupported, not for our keys,
//!   decryption failed);
//! - 4: configuration error (certificate or key unusable, file unreadable);
//! - 10: verify: valid but untrusted; 11: signer mismatch; 12: not fully
//!   signed; 13: invalid signature;
//! - 75 (EX_TEMPFAIL): the token is unavailable; try again later.
//!
//! Trusts: the administrator who runs it, the token. The message is input.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use sealgate_hsm::{Hsm, HsmSettings};

use crate::cert::{self, CertKey, Certificate};
use crate::mime::MAX_MESSAGE_SIZE;
use crate::{
    EncryptOptions, Error, GatewayKey, RsaTransport, SignOptions, SigningIdentity, Verdict,
};

/// The `smime` verbs.
#[derive(Debug, clap::Subcommand)]
pub enum SmimeCommand {
    /// Decrypt a message encrypted for a gateway key.
    Decrypt {
        /// Token key labels to try (RSA decryption or ECDH keys); their
        /// certificates come from the key store.
        #[arg(long = "key-label", default_values_t = ["gateway-decrypt".to_owned(), "gateway-ec-derive".to_owned()])]
        key_labels: Vec<String>,
    },
    /// Encrypt a message for recipients' certificates.
    Encrypt {
        /// Recipient certificate files (PEM, DER or PKCS#7); repeatable.
        #[arg(long = "cert", required = true)]
        certs: Vec<PathBuf>,
        /// AuthEnvelopedData with AES-256-GCM (only if every recipient reads it).
        #[arg(long)]
        gcm: bool,
        /// RSA-OAEP-SHA256 key transport instead of PKCS#1 v1.5 (the
        /// default, as the pipeline's: every client reads it).
        #[arg(long)]
        oaep: bool,
    },
    /// Sign a message with a gateway or domain key.
    Sign {
        /// Token signing key label.
        #[arg(long = "key-label", default_value = "gateway-sign")]
        key_label: String,
        /// Certificate chain to include (leaf first); default: the key's stored chain.
        #[arg(long = "cert")]
        cert: Option<PathBuf>,
        /// Opaque SignedData instead of multipart/signed.
        #[arg(long)]
        opaque: bool,
    },
    /// Verify a signed message; writes the signed content to stdout.
    Verify {
        /// Trust anchor files (PEM, DER or PKCS#7); repeatable.
        #[arg(long = "cert")]
        trust: Vec<PathBuf>,
    },
}

const EXIT_REFUSED: u8 = 3;
const EXIT_CONFIG: u8 = 4;
const EXIT_TEMPFAIL: u8 = 75;

fn exit_for(e: &Error) -> u8 {
    if e.is_temporary() {
        return EXIT_TEMPFAIL;
    }
    match e {
        Error::Certificate(_) | Error::Hsm(_) => EXIT_CONFIG,
        _ => EXIT_REFUSED,
    }
}

/// Runs a verb with stdin and stdout.
pub fn run(cmd: SmimeCommand, settings: &HsmSettings) -> ExitCode {
    let mut input = Vec::new();
    let read = std::io::stdin()
        .lock()
        .take(MAX_MESSAGE_SIZE as u64 + 1)
        .read_to_end(&mut input);
    if let Err(e) = read {
        eprintln!("sealgate smime: reading stdin: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match run_on(cmd, settings, &input) {
        Ok((output, code, note)) => {
            if let Some(n) = note {
                eprintln!("{n}");
            }
            let mut out = std::io::stdout().lock();
            if out.write_all(&output).and_then(|()| out.flush()).is_err() {
                return ExitCode::from(EXIT_CONFIG);
            }
            ExitCode::from(code)
        }
        Err((code, msg)) => {
            eprintln!("sealgate smime: {msg}");
            ExitCode::from(code)
        }
    }
}

type Outcome = Result<(Vec<u8>, u8, Option<String>), (u8, String)>;

fn fail(e: Error) -> (u8, String) {
    (exit_for(&e), e.to_string())
}

fn read_certs(path: &PathBuf) -> Result<Vec<Certificate>, (u8, String)> {
    let bytes =
        std::fs::read(path).map_err(|e| (EXIT_CONFIG, format!("{}: {e}", path.display())))?;
    cert::parse_bundle(&bytes).map_err(|e| (EXIT_CONFIG, format!("{}: {e}", path.display())))
}

fn stored_chain(hsm: &Hsm, label: &str) -> Result<Vec<Certificate>, (u8, String)> {
    let ders = hsm
        .certificate_chain(label)
        .map_err(|e| fail(Error::Hsm(e)))?;
    ders.iter()
        .map(|d| Certificate::from_der(d).map_err(|e| (EXIT_CONFIG, format!("{label}: {e}"))))
        .collect()
}

/// Runs a verb on `input`; returns the output, exit code and a note for
/// stderr, or an exit code and message.
pub fn run_on(cmd: SmimeCommand, settings: &HsmSettings, input: &[u8]) -> Outcome {
    if input.len() > MAX_MESSAGE_SIZE {
        return Err(fail(Error::Limit("message size")));
    }
    match cmd {
        SmimeCommand::Decrypt { key_labels } => {
            let hsm = Hsm::open(settings).map_err(|e| fail(Error::Hsm(e)))?;
            let mut loaded = Vec::new();
            for label in &key_labels {
                let chain = stored_chain(&hsm, label)?;
                let cert = chain
                    .into_iter()
                    .next()
                    .ok_or((EXIT_CONFIG, format!("{label}: no certificate")))?;
                let key = match cert.key {
                    CertKey::Ec { .. } => hsm.key_agreement(label),
                    _ => hsm.decryptor(label),
                }
                .map_err(|e| fail(Error::Hsm(e)))?;
                loaded.push((cert, key));
            }
            let keys: Vec<GatewayKey<'_>> = loaded
                .iter()
                .map(|(cert, key)| match cert.key {
                    CertKey::Ec { .. } => GatewayKey::Ec { cert, key },
                    _ => GatewayKey::Rsa { cert, key },
                })
                .collect();
            let out = crate::decrypt_message(input, &keys).map_err(fail)?;
            let r = &out.report;
            let note = format!(
                "decrypted: recipient info {}, {:?}, {:?}, integrity {}{}{}",
                r.recipient_index,
                r.key_protection,
                r.content_algorithm,
                if r.integrity_protected { "yes" } else { "no" },
                if r.weak { ", WEAK cipher" } else { "" },
                r.cbc_check
                    .as_ref()
                    .map(|c| format!(", CBC check {c:?}"))
                    .unwrap_or_default(),
            );
            Ok((out.message.to_vec(), 0, Some(note)))
        }
        SmimeCommand::Encrypt { certs, gcm, oaep } => {
            let mut all = Vec::new();
            for p in &certs {
                all.extend(read_certs(p)?.into_iter().next());
            }
            let refs: Vec<&Certificate> = all.iter().collect();
            let rsa = if oaep {
                RsaTransport::OaepSha256
            } else {
                RsaTransport::default()
            };
            let out =
                crate::encrypt_message(input, &refs, EncryptOptions { gcm, rsa }).map_err(fail)?;
            Ok((out, 0, None))
        }
        SmimeCommand::Sign {
            key_label,
            cert,
            opaque,
        } => {
            let hsm = Hsm::open(settings).map_err(|e| fail(Error::Hsm(e)))?;
            let key = hsm.signer(&key_label).map_err(|e| fail(Error::Hsm(e)))?;
            let chain = match &cert {
                Some(p) => read_certs(p)?,
                None => stored_chain(&hsm, &key_label)?,
            };
            let id = SigningIdentity {
                key: &key,
                chain: &chain,
                encryption_cert: None,
            };
            let out = crate::sign_message(input, &id, SignOptions { opaque }).map_err(fail)?;
            Ok((out, 0, None))
        }
        SmimeCommand::Verify { trust } => {
            let mut anchors = Vec::new();
            for p in &trust {
                anchors.extend(read_certs(p)?);
            }
            let v = crate::verify_message(input, &anchors, crate::signed::now()).map_err(fail)?;
            let signer = v
                .signer_chain
                .first()
                .map(|c| c.emails.join(", "))
                .unwrap_or_default();
            let (code, text) = match &v.verdict {
                Verdict::Valid => (0, "valid".to_owned()),
                Verdict::ValidButUntrusted(r) => (10, format!("valid-but-untrusted: {r}")),
                Verdict::SignerMismatch => (11, "signer-mismatch".to_owned()),
                Verdict::NotFullySigned => (12, "not-fully-signed".to_owned()),
                Verdict::Invalid(r) => (13, format!("invalid: {r}")),
            };
            Ok((
                v.content,
                code,
                Some(format!("verdict: {text} (signer {signer})")),
            ))
        }
    }
}
