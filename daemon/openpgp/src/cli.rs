//! The `sealgate pgp` verbs: create, rotate and export the gateway's
//! OpenPGP certificate, and decrypt, encrypt, sign and verify one message
//! (a file or stdin, result on stdout) — for operators and for tests.
//!
//! Identity files live in `<data dir>/openpgp/`. Trusts the operator's
//! arguments; messages and certificates read are handled as untrusted.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sealgate_hsm::{Hsm, HsmSettings};
use sequoia_openpgp::Cert;

use crate::error::{Error, Result};
use crate::gateway::{GatewayAlgorithm, GatewayIdentity, GatewaySpec};
use crate::limits::Limits;

/// `sealgate pgp …`
#[derive(Debug, clap::Subcommand)]
#[non_exhaustive]
pub enum PgpCommand {
    /// Create the gateway's OpenPGP certificate with keys on the token.
    Init {
        /// User ID, e.g. "Sealgate <gateway@example.org>".
        #[arg(long)]
        user_id: String,
        #[arg(long, value_enum, default_value = "rsa3072")]
        algorithm: GatewayAlgorithm,
        /// Token label prefix for the keys.
        #[arg(long, default_value = "openpgp")]
        label_prefix: String,
    },
    /// Add a new encryption subkey; older ones keep decrypting.
    Rotate,
    /// Print the gateway's public certificate (armored unless --binary).
    ExportGatewayCert {
        #[arg(long)]
        binary: bool,
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Decrypt a message encrypted for the gateway (PGP/MIME or inline).
    Decrypt {
        /// Certificates to check signatures inside against.
        #[arg(long = "cert", value_name = "FILE")]
        certs: Vec<PathBuf>,
        /// The message (default: stdin).
        file: Option<PathBuf>,
    },
    /// Encrypt a message for recipient certificates (PGP/MIME or inline).
    Encrypt {
        #[arg(long = "recipient-cert", value_name = "FILE", required = true)]
        recipients: Vec<PathBuf>,
        /// Inline PGP instead of PGP/MIME (single text/plain body).
        #[arg(long)]
        inline: bool,
        /// Sign with the gateway key inside the encryption.
        #[arg(long)]
        sign: bool,
        file: Option<PathBuf>,
    },
    /// Sign a message with the gateway key (multipart/signed).
    Sign { file: Option<PathBuf> },
    /// Verify a signed message; prints the verdict.
    Verify {
        #[arg(long = "cert", value_name = "FILE")]
        certs: Vec<PathBuf>,
        file: Option<PathBuf>,
    },
}

fn read_input(file: Option<&Path>) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    match file {
        Some(p) => buf = std::fs::read(p)?,
        None => {
            std::io::stdin().read_to_end(&mut buf)?;
        }
    }
    Ok(buf)
}

fn read_certs(files: &[PathBuf], limits: &Limits) -> Result<Vec<Cert>> {
    let mut out = Vec::new();
    for f in files {
        let certs = crate::harvest::parse_certs(&std::fs::read(f)?, limits)?;
        if certs.is_empty() {
            return Err(Error::Malformed(format!(
                "{}: no valid certificate",
                f.display()
            )));
        }
        out.extend(certs);
    }
    Ok(out)
}

fn write_stdout(data: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(data)?;
    out.flush()?;
    Ok(())
}

/// Runs one `sealgate pgp` verb against the token and `<data_dir>/openpgp`.
///
/// The token is opened only by verbs that use the gateway's keys: encrypting
/// to recipients' public keys (without `--sign`) and verifying need none.
pub fn run_pgp(cmd: PgpCommand, settings: &HsmSettings, data_dir: &Path) -> Result<()> {
    let hsm = || Hsm::open(settings);
    let dir = data_dir.join("openpgp");
    let limits = Limits::default();
    match cmd {
        PgpCommand::Init {
            user_id,
            algorithm,
            label_prefix,
        } => {
            let id = GatewayIdentity::create(
                &hsm()?,
                &dir,
                &GatewaySpec {
                    user_id,
                    algorithm,
                    label_prefix,
                },
            )?;
            println!("{}", id.cert().fingerprint().to_hex());
        }
        PgpCommand::Rotate => {
            let hsm = hsm()?;
            let mut id = GatewayIdentity::load(&hsm, &dir)?;
            id.rotate(&hsm)?;
            println!("{}", id.cert().fingerprint().to_hex());
        }
        PgpCommand::ExportGatewayCert { binary, out } => {
            let id = GatewayIdentity::load(&hsm()?, &dir)?;
            let bytes = if binary {
                id.export_binary()?
            } else {
                id.export_armored()?
            };
            match out {
                Some(p) => std::fs::write(p, bytes)?,
                None => write_stdout(&bytes)?,
            }
        }
        PgpCommand::Decrypt { certs, file } => {
            let id = GatewayIdentity::load(&hsm()?, &dir)?;
            let known = read_certs(&certs, &limits)?;
            let d = crate::decrypt::decrypt(&id, &read_input(file.as_deref())?, &known, &limits)?;
            eprintln!("format: {:?}; signature: {:?}", d.format, d.verdict);
            write_stdout(&d.message)?;
        }
        PgpCommand::Encrypt {
            recipients,
            inline,
            sign,
            file,
        } => {
            let certs = read_certs(&recipients, &limits)?;
            let id = if sign {
                Some(GatewayIdentity::load(&hsm()?, &dir)?)
            } else {
                None
            };
            let opts = crate::encrypt::EncryptOptions::new()
                .inline(inline)
                .sign(sign);
            let out = crate::encrypt::encrypt(
                &read_input(file.as_deref())?,
                &certs,
                id.as_ref(),
                opts,
                &limits,
            )?;
            write_stdout(&out)?;
        }
        PgpCommand::Sign { file } => {
            let id = GatewayIdentity::load(&hsm()?, &dir)?;
            write_stdout(&crate::sign::sign(
                &id,
                &read_input(file.as_deref())?,
                &limits,
            )?)?;
        }
        PgpCommand::Verify { certs, file } => {
            let known = read_certs(&certs, &limits)?;
            let v = crate::verify::verify(&read_input(file.as_deref())?, &known, &limits)?;
            println!("{v:?}");
            if !matches!(v, crate::verify::Verdict::Valid { .. }) {
                return Err(Error::Malformed(format!("signature not valid: {v:?}")));
            }
        }
    }
    Ok(())
}
