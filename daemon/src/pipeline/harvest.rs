//! Harvest stage: certificates and keys that arrive with mail are offered
//! to the directory (through the trust model, `crate::trust`), so the next
//! message to their owner can be encrypted, and mail held for them is
//! released where they are trusted enough.
//!
//! Taken: the signer's certificate of a good S/MIME signature whose
//! certificate names the `From` address (the usual way a correspondent
//! "sends their certificate": a signed reply), with the capabilities the
//! signature announced (so AES-GCM is used where the holder reads it), and
//! OpenPGP certificates from `Autocrypt:` headers, attached keys, and the
//! Key Block subpacket of OpenPGP signatures (GnuPG's
//! `--include-key-block`; for signatures inside mail encrypted for the
//! gateway the unwrap stage hands them over, as the decrypted MIME no
//! longer shows them) whose user IDs name the `From` address.
//!
//! How much they are believed: a key taken from mail is trust on first
//! use (`harvested`: anyone on the path can send mail under the
//! recipient's address); mail whose `From` domain passed DKIM (aligned,
//! verified here through the gateway's DNS) was at least sent by that
//! domain's mail system (`harvested-dkim`); an S/MIME certificate that
//! chains to a configured anchor, revocation checked, is `anchored`. A key
//! that differs from the one the directory has for the address goes to
//! the review queue unless the old key vouches for it (the mail is signed
//! by it) or it is stronger on its own; see `crate::trust::judge_change`.
//! Held mail is released only where the key's level meets the policy's
//! `required_trust` for the address.
//!
//! Trusts nothing in the message: the engines parse it within their limits
//! and check the signature; the `From` binding and the DKIM alignment are
//! checked here. Best effort: a failure to harvest never stops the message.

use crate::directory::{Entry, Trust};

/// What harvesting did, for the plan.
#[derive(Debug, Default)]
pub struct Harvested {
    /// Addresses (or `@domain`s) whose held mail may be released now.
    pub release: Vec<String>,
    /// For tracking: what was taken, how it was judged, DKIM.
    pub note: Option<String>,
    /// The verdict on a top-level S/MIME signature (`signature=valid;
    /// signer=…; trust=…`), for internal recipients of signed mail from
    /// outside; `None` when the message is not S/MIME-signed.
    pub signature: Option<String>,
}

/// Harvests `content` (and `carried`: the OpenPGP certificates the
/// signatures inside an opened message carried,
/// [`super::unwrap::Unwrapped::Opened`]).
pub fn harvest(
    content: &[u8],
    carried: &[sealgate_openpgp::Cert],
    context: &super::Context<'_>,
    queue_id: &str,
    now_ms: u64,
) -> Harvested {
    // One parse decides whether the engines need to look at all: most mail
    // carries no signature and no key, and this runs for every message.
    let Some(parsed) = mail_parser::MessageParser::default().parse(content) else {
        return Harvested::default();
    };
    let Some(from) = parsed
        .header_raw("From")
        .and_then(sealgate_smime::verify::from_address)
    else {
        return Harvested::default();
    };
    let carries = Carries::of(&parsed);
    if !carries.smime_signature && !carries.openpgp_material && carried.is_empty() {
        return Harvested::default();
    }
    let smime = carries
        .smime_signature
        .then(|| context.trust.smime(context.config).ok())
        .flatten();
    let verification = if carries.smime_signature {
        let anchors = smime.as_ref().map_or(&[][..], |s| s.anchors());
        let now_secs = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        sealgate_smime::verify::verify_message(content, anchors, now_secs).ok()
    } else {
        None
    };
    let signature = verification
        .as_ref()
        .map(|v| smime_verdict(v, &from, smime.as_deref()));
    let dkim = dkim_of(content, &from, context);
    let level = if dkim.aligned() {
        Trust::HarvestedDkim
    } else {
        Trust::Harvested
    };
    let source = format!("harvested:{queue_id} dkim={}", dkim.describe());
    let mut candidates = Vec::new();
    if let Some(verification) = &verification {
        candidates.extend(smime_signer(
            verification,
            &from,
            level,
            &source,
            smime.as_deref(),
            now_ms,
        ));
    }
    let mut vouched_by = None;
    let mut signature = signature;
    if carries.openpgp_material {
        candidates.extend(openpgp_keys(content, &from, level, &source, now_ms));
        let checked = openpgp_signature(content, &from, context, carries.openpgp_signed);
        if let Some(sealgate_openpgp::Verdict::Valid { signer }) = &checked {
            vouched_by = Some(signer.to_ascii_lowercase());
        }
        if let (true, Some(verdict)) = (carries.openpgp_signed, &checked) {
            signature = Some(format!(
                "signature={}",
                super::unwrap::signature_verdict(verdict, context.directory)
            ));
        }
    }
    candidates.extend(store_openpgp(carried, &from, level, &source, now_ms));
    if candidates.is_empty() {
        return Harvested {
            signature,
            ..Harvested::default()
        };
    }
    let policy = context.policy;
    let pins = |address: &str| crate::policy::decide::pinned_keys(policy, address);
    let offered = match crate::trust::offer::offer(
        context.directory,
        &context.trust.reviews,
        candidates,
        &pins,
        vouched_by.as_deref(),
        now_ms,
    ) {
        Ok(offered) => offered,
        Err(e) => {
            tracing::warn!(queue_id, error = %e, "harvested keys not stored");
            return Harvested {
                signature,
                ..Harvested::default()
            };
        }
    };
    let mut release = Vec::new();
    for entry in &offered.stored {
        for key in entry.index_keys() {
            let needs = crate::policy::decide::required_trust(policy, key.trim_start_matches('@'));
            if entry.trust >= needs {
                release.push(key);
            }
        }
    }
    release.sort();
    release.dedup();
    let mut said = Vec::new();
    for e in &offered.stored {
        said.push(format!(
            "{} {} for {} stored as {}",
            match e.kind {
                crate::directory::Kind::Smime => "certificate",
                crate::directory::Kind::Openpgp => "OpenPGP key",
            },
            crate::trust::short(&e.fingerprint),
            e.addresses.join(", "),
            e.trust
        ));
    }
    for p in &offered.set_aside {
        said.push(format!(
            "key {} for {} set aside for review ({})",
            crate::trust::short(&p.candidate.fingerprint),
            p.address,
            p.why
        ));
    }
    let note = format!(
        "keys taken from this message (From {from}, DKIM {}): {}",
        dkim.describe(),
        said.join("; ")
    );
    tracing::info!(queue_id, %note, "harvest");
    Harvested {
        release,
        note: Some(note),
        signature,
    }
}

/// What DKIM says about the message's `From` domain (a few seconds at
/// most: the signers' keys are asked through the gateway's DNS).
fn dkim_of(content: &[u8], from: &str, context: &super::Context<'_>) -> crate::dkim::Dkim {
    let domain = from.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    let Ok(verifier) = context.trust.dkim(context.config) else {
        return crate::dkim::Dkim::TempError {
            reason: "no DKIM verifier".into(),
        };
    };
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return crate::dkim::Dkim::TempError {
            reason: "no runtime".into(),
        };
    };
    // The pipeline runs on a blocking thread (block_in_place): waiting here is allowed.
    handle
        .block_on(tokio::time::timeout(
            std::time::Duration::from_secs(5),
            verifier.verify(content, domain),
        ))
        .unwrap_or_else(|_| crate::dkim::Dkim::TempError {
            reason: "no answer in 5 s".into(),
        })
}

/// The verdict on the message's OpenPGP signature against the directory's
/// keys for `From` (`None`: not signed, or not checkable at all; not
/// looked at when the directory has no key for `From`, unless `signed`
/// says the verdict is wanted anyway). A good signature by a key the
/// directory has for `From` vouches for a new key the mail carries (a key
/// change signed by the old key).
fn openpgp_signature(
    content: &[u8],
    from: &str,
    context: &super::Context<'_>,
    signed: bool,
) -> Option<sealgate_openpgp::Verdict> {
    let limits = sealgate_openpgp::Limits::default();
    let known: Vec<sealgate_openpgp::Cert> = context
        .directory
        .lookup(from)
        .ok()?
        .iter()
        .filter(|e| e.kind == crate::directory::Kind::Openpgp)
        .filter_map(|e| sealgate_openpgp::parse_certs(&e.data, &limits).ok())
        .flatten()
        .collect();
    if known.is_empty() && !signed {
        return None;
    }
    sealgate_openpgp::verify(content, &known, &limits).ok()
}

/// What a message may carry for the directory, judged from its structure.
#[derive(Debug, Default, PartialEq, Eq)]
struct Carries {
    /// A top-level S/MIME signature (detached or opaque).
    smime_signature: bool,
    /// An Autocrypt header, an attached key, or an OpenPGP signature (which
    /// may hold the signer's key) or armored block in a text part.
    openpgp_material: bool,
    /// A top-level PGP/MIME signature (`multipart/signed`, protocol PGP).
    openpgp_signed: bool,
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
                    carries.openpgp_signed = true;
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

/// What internal recipients are told about a top-level S/MIME signature:
/// whether it verifies over the content, who signed, whether the signer's
/// certificate names `From`, and the signer's standing (a path to a trust
/// anchor for signing at the signing time, revocation).
fn smime_verdict(
    verification: &sealgate_smime::verify::Verification,
    from: &str,
    smime: Option<&crate::smime_trust::SmimeTrust>,
) -> String {
    use sealgate_smime::trust::PathVerdict;
    use sealgate_smime::verify::Verdict;
    let word = match &verification.verdict {
        Verdict::Valid => "valid",
        Verdict::ValidButUntrusted(_) => "valid-untrusted",
        Verdict::SignerMismatch => "signer-mismatch",
        Verdict::Revoked(_) => "revoked",
        Verdict::Invalid(_) => "invalid",
        Verdict::NotFullySigned => "not-fully-signed",
        _ => "unknown",
    };
    let Some(signer) = verification.signer_chain.first() else {
        return format!("signature={word}");
    };
    let signer_names = if signer.emails.is_empty() {
        "no address".to_owned()
    } else {
        signer.emails.join(", ")
    };
    let binding = if signer.emails.iter().any(|a| a.eq_ignore_ascii_case(from)) {
        "matches"
    } else {
        "differs"
    };
    if matches!(
        verification.verdict,
        Verdict::Invalid(_) | Verdict::NotFullySigned
    ) {
        return format!("signature={word}; signer={signer_names}; from={binding}");
    }
    let trust = match smime {
        None => "unknown (trust settings unusable)".to_owned(),
        Some(smime) => {
            let issuers: Vec<sealgate_smime::Certificate> =
                verification.signer_chain.iter().skip(1).cloned().collect();
            let purpose = sealgate_smime::trust::Purpose::Sign {
                signing_time: verification.signing_time,
            };
            match smime.check(signer, &issuers, purpose).verdict {
                PathVerdict::Anchored {
                    revocation_checked: true,
                } => "anchored, revocation checked".to_owned(),
                PathVerdict::Anchored {
                    revocation_checked: false,
                } => "anchored, no CRL published".to_owned(),
                PathVerdict::Revoked { depth, .. } => {
                    format!("revoked (certificate {depth} on the path)")
                }
                PathVerdict::RevocationUnknown(why) => format!("revocation unknown ({why})"),
                PathVerdict::Untrusted(why) => format!("untrusted ({why})"),
            }
        }
    };
    // The header is one line: nothing from the certificate may break it.
    format!("signature={word}; signer={signer_names}; from={binding}; trust={trust}")
        .replace(['\r', '\n'], " ")
}

/// The signer certificate of a good S/MIME signature by the `From`
/// address, with its announced capabilities and the issuers that came
/// with it; `anchored` when it chains to a configured anchor.
fn smime_signer(
    verification: &sealgate_smime::verify::Verification,
    from: &str,
    level: Trust,
    source: &str,
    smime: Option<&crate::smime_trust::SmimeTrust>,
    now_ms: u64,
) -> Vec<Entry> {
    use sealgate_smime::verify::Verdict;
    let anchors = smime.map_or(&[][..], |s| s.anchors());
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
    let issuers: Vec<sealgate_smime::Certificate> =
        verification.signer_chain.iter().skip(1).cloned().collect();
    let anchored = smime.is_some_and(|s| {
        matches!(
            s.check(signer, &issuers, sealgate_smime::trust::Purpose::Encrypt)
                .verdict,
            sealgate_smime::trust::PathVerdict::Anchored { .. }
        )
    });
    let level = if anchored {
        level.max(Trust::Anchored)
    } else {
        level
    };
    let capabilities = capability_names(&verification.capabilities);
    match crate::directory::parse_x509(signer.der(), None, level, source, now_ms) {
        Ok(entries) => entries
            .into_iter()
            .map(|mut e| {
                e.capabilities = capabilities.clone();
                e.issuers = issuers
                    .iter()
                    .filter(|c| !anchors.iter().any(|a| a.der() == c.der()))
                    .map(|c| c.der().to_vec())
                    .collect();
                e
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "harvested S/MIME certificate not usable");
            Vec::new()
        }
    }
}

/// The announced content ciphers by name (`aes256-gcm`, `aes256-cbc`, …).
pub fn capability_names(caps: &[sealgate_smime::signed::Capability]) -> Vec<String> {
    use sealgate_smime::oid;
    caps.iter()
        .filter_map(|c| {
            let name = match c.oid.as_slice() {
                o if o == oid::AES256_GCM => "aes256-gcm",
                o if o == oid::AES192_GCM => "aes192-gcm",
                o if o == oid::AES128_GCM => "aes128-gcm",
                o if o == oid::AES256_CBC => "aes256-cbc",
                o if o == oid::AES192_CBC => "aes192-cbc",
                o if o == oid::AES128_CBC => "aes128-cbc",
                o if o == oid::DES_EDE3_CBC => "des-ede3-cbc",
                _ => return None,
            };
            Some(name.to_owned())
        })
        .collect()
}

/// OpenPGP certificates in the message whose user IDs name the `From` address.
fn openpgp_keys(content: &[u8], from: &str, level: Trust, source: &str, now_ms: u64) -> Vec<Entry> {
    let limits = sealgate_openpgp::Limits::default();
    let Ok(certs) = sealgate_openpgp::harvest(content, &limits) else {
        return Vec::new();
    };
    store_openpgp(&certs, from, level, source, now_ms)
}

/// Entries for those of `certs` (found by the engine, valid under its
/// policy) whose user IDs name the `From` address.
fn store_openpgp(
    certs: &[sealgate_openpgp::Cert],
    from: &str,
    level: Trust,
    source: &str,
    now_ms: u64,
) -> Vec<Entry> {
    let mut out = Vec::new();
    for cert in certs {
        let Ok(summary) = sealgate_openpgp::summarize(cert) else {
            continue;
        };
        if !summary.emails.iter().any(|e| e.eq_ignore_ascii_case(from)) {
            continue;
        }
        match crate::directory::parse_openpgp(&summary.binary, level, source, now_ms) {
            Ok(entries) => out.extend(entries),
            Err(e) => tracing::warn!(error = %e, "harvested OpenPGP certificate not usable"),
        }
    }
    out
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
