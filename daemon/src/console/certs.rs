//! Menu 10: the gateway's public certificates, for correspondents.
//!
//! First boot makes self-signed S/MIME certificates for the gateway's token
//! keys and an OpenPGP identity, and exports their public halves to
//! `<data>/export/` (`/usr/libexec/sealgate/firstboot`). Senders encrypt to
//! these to reach the gateway, which opens such mail and hands it on. This
//! prints them as they are (PEM and ASCII armor lines fit 80 columns).
//!
//! Trusts: the export directory. Prints public material only.

use std::fs;
use std::io::Write;

use super::{ConsoleError, Context};

/// The exported files, with what each is for, in the order shown.
const EXPORTS: &[(&str, &str)] = &[
    (
        "smime-rsa.pem",
        "S/MIME certificate (RSA), to encrypt mail to the gateway",
    ),
    ("smime-ec.pem", "S/MIME certificate (ECDH P-256)"),
    ("openpgp.asc", "OpenPGP certificate"),
];

/// `certificates`.
pub fn show(ctx: &Context, out: &mut dyn Write) -> Result<(), ConsoleError> {
    let dir = ctx.data_dir.join("export");
    for (file, what) in EXPORTS {
        writeln!(out, "{what}:")?;
        match fs::read_to_string(dir.join(file)) {
            Ok(text) => write!(out, "{text}")?,
            Err(_) => writeln!(out, "  not made yet (first boot has not finished)")?,
        }
        writeln!(out)?;
    }
    Ok(())
}
