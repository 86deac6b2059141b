//! Harvest stage: certificates and keys that arrive with mail go into the
//! directory, so the next message to their owner can be encrypted, and mail
//! held for them is released.
//!
//! Taken: the signer's certificate of a good S/MIME signature whose
//! certificate names the `From` address (the usual way a correspondent
//! "sends their certificate": a signed reply), and OpenPGP certificates
//! from `Autocrypt:` headers, attached keys, and the Key Block subpacket of
//! OpenPGP signatures (GnuPG's `--include-key-block`; for signatures inside
//! mail encrypted for the gateway the unwrap stage hands them over, as the
//! decrypted MIME no longer shows them) whose user IDs name the `From`
//! address. Entries are stored as `harvested` with the queue ID as
//! source (no trust anchors are configured yet, so nothing is `verified`);
//! the directory never lowers the trust of what an administrator imported,
//! and resolution prefers higher trust, so harvested material cannot
//! displace a certificate an administrator put in. A harvested key is
//! trust on first use (anyone on the path can send mail under the
//! recipient's address): it serves encrypt-if-possible, and serves
//! encrypt-required mail (and releases held mail) only where the policy's
//! `trust_harvested_keys` says so.
//!
//! Trusts nothing in the message: the engines parse it within their limits
//! and check the signature; the `From` binding is checked here. Best
//! effort: a failure to harvest never stops the message.

use crate::directory::{Directory, Entry, Trust};

/// The addresses (or `@domain`s) whose keys were stored while harvesting
/// `content` and `carried` (the OpenPGP certificates the signatures inside
/// an opened message carried, [`super::unwrap::Unwrapped::Opened`]), for
/// releasing mail held for them.
pub fn harvest(
    content: &[u8],
    carried: &[sealgate_openpgp::Cert],
    directory: &Directory,
    queue_id: &str,
    now_ms: u64,
) -> Vec<String> {
    // One parse decides whether the engines need to look at all: most mail
    // carries no signature and no key, and this runs for every message.
    let Some(parsed) = mail_parser::MessageParser::default().parse(content) else {
        return Vec::new();
    };
    let Some(from) = parsed
        .header_raw("From")
        .and_then(sealgate_smime::verify::from_address)
    else {
        return Vec::new();
    };
    let carries = Carries::of(&parsed);
    let source = format!("harvested:{queue_id}");
    let mut stored = Vec::new();
    if carries.smime_signature {
        stored.extend(smime_signer(content, &from, directory, &source, now_ms));
    }
    if carries.openpgp_material {
        stored.extend(openpgp_keys(content, &from, directory, &source, now_ms));
    }
    stored.extend(store_openpgp(carried, &from, directory, &source, now_ms));
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

/// What a message may carry for the directory, judged from its structure.
#[derive(Debug, Default, PartialEq, Eq)]
struct Carries {
    /// A top-level S/MIME signature (detached or opaque).
    smime_signature: bool,
    /// An Autocrypt header, an attached key, or an OpenPGP signature (which
    /// may hold the signer's key) or armored block in a text part.
    openpgp_material: bool,
}

impl Carries {
    fn of(message: &mail_parser::Message<'_>) -> Carries {
        use mail_parser::MimeHeaders;
        let mut carries = Carries {
            openpgp_material: message.header_raw("Autocrypt").is_some(),
            ..Carries::default()
        };
        if let Some(ct) = message.root_part().content_type() {
            let protocol = ct.attribute("protocol").unwrap_or("").to_ascii_lowercase();
            match (
                ct.ctype().to_ascii_lowercase().as_str(),
                ct.subtype().unwrap_or("").to_ascii_lowercase().as_str(),
            ) {
                ("multipart", "signed") if protocol.contains("pgp") => {
                    carries.openpgp_material = true;
                }
                ("multipart", "signed") | ("application", "pkcs7-mime" | "x-pkcs7-mime") => {
                    carries.smime_signature = true;
                }
                _ => {}
            }
        }
        carries.openpgp_material |= message.parts.iter().any(|part| {
            let keys = part.content_type().is_some_and(|ct| {
                ct.ctype().eq_ignore_ascii_case("application")
                    && ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("pgp-keys"))
            });
            keys || part
                .text_contents()
                .is_some_and(|text| text.contains("-----BEGIN PGP"))
        });
        carries
    }
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
    store_openpgp(&certs, from, directory, source, now_ms)
}

/// Stores those of `certs` (found by the engine, valid under its policy)
/// whose user IDs name the `From` address, as harvested.
fn store_openpgp(
    certs: &[sealgate_openpgp::Cert],
    from: &str,
    directory: &Directory,
    source: &str,
    now_ms: u64,
) -> Vec<Entry> {
    let mut stored = Vec::new();
    for cert in certs {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn carries(raw: &str) -> Carries {
        Carries::of(
            &mail_parser::MessageParser::default()
                .parse(raw.as_bytes())
                .unwrap(),
        )
    }

    #[test]
    fn plain_mail_carries_nothing() {
        let plain = carries("From: a@b.test\r\nSubject: hi\r\n\r\nhello\r\n");
        assert_eq!(plain, Carries::default());
    }

    #[test]
    fn signatures_keys_and_autocrypt_are_noticed() {
        let signed = |protocol: &str| {
            carries(&format!(
                "From: a@b.test\r\nContent-Type: multipart/signed; protocol=\"{protocol}\"; \
                 boundary=x\r\n\r\n--x\r\n\r\nhi\r\n--x--\r\n"
            ))
        };
        let smime = signed("application/pkcs7-signature");
        assert!(smime.smime_signature && !smime.openpgp_material);
        let pgp = signed("application/pgp-signature");
        assert!(pgp.openpgp_material && !pgp.smime_signature);
        let autocrypt =
            carries("From: a@b.test\r\nAutocrypt: addr=a@b.test; keydata=AAAA\r\n\r\nhi\r\n");
        assert!(autocrypt.openpgp_material);
        let inline = carries("From: a@b.test\r\n\r\n-----BEGIN PGP SIGNED MESSAGE-----\r\n");
        assert!(inline.openpgp_material);
    }
}
