//! The `sealgate keys ...` and `sealgate hsm ...` subcommands.
//!
//! The `sealgate` binary embeds [`KeysCommand`] and [`HsmCommand`] in its clap
//! CLI and calls [`run_keys`] / [`run_hsm`] with the `[hsm]` settings; output
//! goes to stdout for humans and scripts. These verbs talk to the token
//! directly (PKCS#11 allows several processes on one SoftHSM token), so they
//! work whether or not the daemon runs.
//!
//! Trusts: the administrator running them (root or the daemon's user).
//! Must never: print a PIN or any private key material.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::certs::{CertFormat, CertRequest};
use crate::error::Error;
use crate::keys::{KeyAlgorithm, KeyInfo, KeyUsage};
use crate::settings::HsmSettings;
use crate::token::Hsm;

/// `sealgate keys ...`: the gateway's keys and certificates.
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum KeysCommand {
    /// List the keys on the token.
    List,
    /// Generate a key inside the token.
    Generate {
        /// Label (unique; letters, digits, '.', '_', '-').
        label: String,
        /// Algorithm and size.
        #[arg(long, value_enum)]
        algorithm: KeyAlgorithm,
        /// The key's single purpose.
        #[arg(long, value_enum)]
        usage: KeyUsage,
    },
    /// Show one key and its public key (PEM).
    Show {
        /// Label of the key.
        label: String,
    },
    /// Make a certificate for a key: self-signed, or issued by another token key.
    SelfSign {
        /// Label of the key to certify.
        label: String,
        #[command(flatten)]
        subject: SubjectArgs,
        /// Signing key that issues the certificate (needed for decryption/ECDH keys).
        #[arg(long)]
        issuer: Option<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 730)]
        days: u32,
    },
    /// Write a certificate signing request (PEM) for a signing key.
    Csr {
        /// Label of the key.
        label: String,
        #[command(flatten)]
        subject: SubjectArgs,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Import the certificate (and chain) a CA issued for a key.
    ImportCert {
        /// Label of the key.
        label: String,
        /// PEM (leaf first, then chain) or DER file.
        file: PathBuf,
    },
    /// Export a key's certificate.
    ExportCert {
        /// Label of the key.
        label: String,
        /// Encoding.
        #[arg(long, value_enum, default_value_t = CertFormat::Pem)]
        format: CertFormat,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Delete a key and its certificate from the token.
    Delete {
        /// Label of the key.
        label: String,
        /// Confirm: the key cannot be recovered.
        #[arg(long)]
        yes: bool,
    },
}

/// Subject of a certificate or CSR.
#[derive(Debug, Clone, Args)]
pub struct SubjectArgs {
    /// Subject common name.
    #[arg(long)]
    pub cn: String,
    /// Subject organisation.
    #[arg(long)]
    pub org: Option<String>,
    /// E-mail address (repeatable).
    #[arg(long = "email")]
    pub emails: Vec<String>,
    /// DNS name (repeatable).
    #[arg(long = "dns")]
    pub dns_names: Vec<String>,
}

impl SubjectArgs {
    fn request(&self, days: u32) -> CertRequest {
        CertRequest {
            common_name: self.cn.clone(),
            organization: self.org.clone(),
            emails: self.emails.clone(),
            dns_names: self.dns_names.clone(),
            days,
        }
    }
}

/// `sealgate hsm ...`: the token itself.
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum HsmCommand {
    /// Create the SoftHSM2 token, its PINs and the default keys in the data directory.
    Init {
        /// Data directory (default: the configured one).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Token present, logged in, mechanisms, key count.
    Status,
}

fn out_err(e: std::io::Error) -> Error {
    Error::io("stdout", e)
}

fn write_out(out: Option<&PathBuf>, bytes: &[u8]) -> Result<(), Error> {
    match out {
        Some(path) => std::fs::write(path, bytes).map_err(|e| Error::io(path, e)),
        None => std::io::stdout().lock().write_all(bytes).map_err(out_err),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn describe(info: &KeyInfo) -> String {
    format!(
        "{:<28} {:<8} {:<8} {}",
        info.label,
        format!("{:?}", info.algorithm).to_lowercase(),
        format!("{:?}", info.usage).to_lowercase(),
        hex(&info.id)
    )
}

/// Runs one `sealgate keys` verb, printing to stdout.
pub fn run_keys(cmd: KeysCommand, settings: &HsmSettings) -> Result<(), Error> {
    let hsm = Hsm::open(settings)?;
    let mut stdout = std::io::stdout().lock();
    match cmd {
        KeysCommand::List => {
            writeln!(stdout, "{:<28} {:<8} {:<8} ID", "LABEL", "ALG", "USAGE").map_err(out_err)?;
            for info in hsm.list()? {
                writeln!(stdout, "{}", describe(&info)).map_err(out_err)?;
            }
        }
        KeysCommand::Generate {
            label,
            algorithm,
            usage,
        } => {
            let info = hsm.generate(&label, algorithm, usage)?;
            writeln!(stdout, "{}", describe(&info)).map_err(out_err)?;
        }
        KeysCommand::Show { label } => {
            let info = hsm.key_info(&label)?;
            writeln!(stdout, "label:     {}", info.label).map_err(out_err)?;
            writeln!(stdout, "algorithm: {:?}", info.algorithm).map_err(out_err)?;
            writeln!(stdout, "usage:     {:?}", info.usage).map_err(out_err)?;
            writeln!(stdout, "id:        {}", hex(&info.id)).map_err(out_err)?;
            if let Some(public) = &info.public {
                write!(stdout, "{}", public.spki_pem()).map_err(out_err)?;
            }
            if let Ok(chain) = hsm.certificate_chain(&label) {
                writeln!(stdout, "certificates: {}", chain.len()).map_err(out_err)?;
            }
        }
        KeysCommand::SelfSign {
            label,
            subject,
            issuer,
            days,
        } => {
            let der = hsm.create_certificate(&label, &subject.request(days), issuer.as_deref())?;
            write!(stdout, "{}", crate::der::pem_lf("CERTIFICATE", &[der])).map_err(out_err)?;
        }
        KeysCommand::Csr {
            label,
            subject,
            out,
        } => {
            let csr = hsm.create_csr(&label, &subject.request(1))?;
            drop(stdout);
            write_out(out.as_ref(), csr.as_bytes())?;
        }
        KeysCommand::ImportCert { label, file } => {
            let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
            hsm.import_certificate(&label, &bytes)?;
            writeln!(stdout, "imported certificate for {label}").map_err(out_err)?;
        }
        KeysCommand::ExportCert { label, format, out } => {
            let bytes = hsm.export_certificate(&label, format)?;
            drop(stdout);
            write_out(out.as_ref(), &bytes)?;
        }
        KeysCommand::Delete { label, yes } => {
            if !yes {
                return Err(Error::InvalidInput(
                    "deleting a key is final; confirm with --yes".to_owned(),
                ));
            }
            hsm.delete(&label)?;
            writeln!(stdout, "deleted {label}").map_err(out_err)?;
        }
    }
    Ok(())
}

/// Runs one `sealgate hsm` verb, printing to stdout.
pub fn run_hsm(cmd: HsmCommand, settings: &HsmSettings) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    match cmd {
        HsmCommand::Init { data_dir } => {
            let mut settings = settings.clone();
            if let Some(dir) = data_dir {
                settings.data_dir = dir;
            }
            let report = crate::provision::init(&settings)?;
            writeln!(stdout, "softhsm2.conf: {}", report.softhsm_conf.display())
                .map_err(out_err)?;
            writeln!(
                stdout,
                "token {:?}: {}",
                settings.token_label,
                if report.created_token {
                    "created"
                } else {
                    "present"
                }
            )
            .map_err(out_err)?;
            writeln!(
                stdout,
                "PIN file {}: {}",
                settings.pin_path().display(),
                if report.created_pin {
                    "created (0600)"
                } else {
                    "present"
                }
            )
            .map_err(out_err)?;
            for info in &report.generated {
                writeln!(stdout, "generated {}", describe(info)).map_err(out_err)?;
            }
        }
        HsmCommand::Status => {
            let status = Hsm::open(settings)?.status();
            writeln!(stdout, "module:        {}", status.module).map_err(out_err)?;
            writeln!(stdout, "token label:   {}", status.token_label).map_err(out_err)?;
            writeln!(stdout, "token present: {}", status.token_present).map_err(out_err)?;
            writeln!(stdout, "logged in:     {}", status.logged_in).map_err(out_err)?;
            writeln!(stdout, "serial:        {}", status.serial).map_err(out_err)?;
            writeln!(stdout, "keys:          {}", status.key_count).map_err(out_err)?;
            writeln!(stdout, "mechanisms:    {}", status.mechanisms.join(" ")).map_err(out_err)?;
            if let Some(e) = &status.error {
                writeln!(stdout, "error:         {e}").map_err(out_err)?;
                return Err(Error::TokenMissing(status.token_label));
            }
        }
    }
    Ok(())
}
