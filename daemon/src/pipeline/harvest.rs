//! Harvest stage: certificates and keys that arrive with mail go into the
//! directory, so the next message to their owner can be encrypted, and mail
//! held for them is released.
//!
//! Taken: the signer's certificate of a good S/MIME signature whose
//! certificate names the `From` address (the usual way a correspondent
//! "sends their certificate": a signed reply), and OpenPGP certificates
//! from `Autocrypt:` headers and attached keys whose user IDs name the
//! `From` address. Entries are stored as `harvested` with the queue ID as
//! source (no trust anchors are configured yet, so nothing is `verified`);
//! the directory never lowers the trust of what an administrator imported,
//! and resolution prefers higher trust, so harvested material cannot
//! displace a certificate an administrator put in.
//!
//! Trusts nothing in the message: the engines parse it within their limits
//! and check the signature; the `From` binding is checked here. Best
//! effort: a failure to harvest never stops the message.

use crate::directory::{Directory, Entry, Trust};

/// The addresses (or `@domain`s) whose keys were stored while harvesting
/// `content`, for releasing mail held for them.
pub fn harvest(content: &[u8], directory: &Directory, queue_id: &str, now_ms: u64) -> Vec<String> {
    let Some(from) = from_address(content) else {
        return Vec::new();
    };
    let source = format!("harvested:{queue_id}");
    let mut stored = smime_signer(content, &from, directory, &source, now_ms);
    stored.extend(openpgp_keys(content, &from, directory, &source, now_ms));
    let mut addresses: Vec<String> = stored.into_iter().flat_map(|e| e.addresses).collect();
    addresses.sort();
    addresses.dedup();
    if !addresses.is_empty() {
        tracing::info!(
            queue_id,
            ?addresses,
            "certificates harvested from the message"
        );
    }
    addresses
}

/// The `From` address, lower case.
fn from_address(content: &[u8]) -> Option<String> {
    let message = mail_parser::MessageParser::default().parse(content)?;
    let value = message.header_raw("From")?;
    sealgate_smime::verify::from_address(value)
}

/// The signer certificate of a good S/MIME signature by the `From` address.
fn smime_signer(
    content: &[u8],
    from: &str,
    directory: &Directory,
    source: &str,
    now_ms: u64,
) -> Vec<Entry> {
    use sealgate_smime::verify::Verdict;
    let now_secs = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
    let Ok(verification) = sealgate_smime::verify::verify_message(content, &[], now_secs) else {
        return Vec::new();
    };
    if !matches!(
        verification.verdict,
        Verdict::Valid | Verdict::ValidButUntrusted(_)
    ) {
        return Vec::new();
    }
    let Some(signer) = verification.signer_chain.first() else {
        return Vec::new();
    };
    if !signer.emails.iter().any(|a| a.eq_ignore_ascii_case(from)) {
        return Vec::new();
    }
    directory
        .import_x509(signer.der(), None, Trust::Harvested, source, now_ms)
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "harvested S/MIME certificate not stored");
            Vec::new()
        })
}

/// OpenPGP certificates in the message whose user IDs name the `From` address.
fn openpgp_keys(
    content: &[u8],
    from: &str,
    directory: &Directory,
    source: &str,
    now_ms: u64,
) -> Vec<Entry> {
    let limits = sealgate_openpgp::Limits::default();
    let Ok(certs) = sealgate_openpgp::harvest(content, &limits) else {
        return Vec::new();
    };
    let mut stored = Vec::new();
    for cert in &certs {
        let Ok(summary) = sealgate_openpgp::summarize(cert) else {
            continue;
        };
        if !summary.emails.iter().any(|e| e.eq_ignore_ascii_case(from)) {
            continue;
        }
        match directory.import_openpgp(&summary.binary, Trust::Harvested, source, now_ms) {
            Ok(entries) => stored.extend(entries),
            Err(e) => tracing::warn!(error = %e, "harvested OpenPGP certificate not stored"),
        }
    }
    stored
}
