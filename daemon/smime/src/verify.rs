//! Verifying signed messages: detached `multipart/signed` and opaque
//! SignedData, with a verdict that is data, not an error.
//!
//! Checks, in order: the signature over the signed attributes (or the
//! content) with the signer's key and the messageDigest and contentType
//! attributes; a certificate path from the signer to one of the configured
//! trust anchors (each signature, validity at signing time and now, CA and
//! keyCertSign for issuers, path length, emailProtection EKU and a signing
//! key usage for the signer, and revocation by the issuers' CRLs when the
//! caller gives a [`CrlSource`]: see [`crate::trust`]); and the signer's
//! address against the `From` address. A signature that covers only part of the message is
//! [`Verdict::NotFullySigned`]. The signer's chain and SMIMECapabilities
//! are returned for the certificate directory (harvesting).
//!
//! Trusts: the trust anchors the caller passes, nothing in the message.
//! Must never: report Valid for a signature it did not check over the exact
//! bytes received.

use crate::cert::{self, Certificate};
use crate::der::{self, Tlv, tag};
use crate::error::Error;
use crate::mime;
use crate::oid;
use crate::signed::{self, Capability, Digest};
use crate::trust::{self, CrlSource, PathVerdict, Purpose};

/// The verdict on a signed message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The signature is good, the signer chains to a trust anchor, and the
    /// signer's certificate names the From address.
    Valid,
    /// The signature is good but the signer's certificate does not chain to
    /// a trust anchor (or the chain is expired or misused); the reason.
    ValidButUntrusted(String),
    /// The signature is good but the certificate names other addresses than From.
    SignerMismatch,
    /// The signature is good but the signer's certificate (or one on its
    /// path) was revoked by its issuer; what and when.
    Revoked(String),
    /// The signature does not verify over the received content; the reason.
    Invalid(String),
    /// Only a part of the message is signed.
    NotFullySigned,
}

/// The outcome of [`verify_message`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Verification {
    /// The verdict.
    pub verdict: Verdict,
    /// The signer's certificate followed by the rest of the chain found in
    /// the message (for harvesting), if the signer was found.
    pub signer_chain: Vec<Certificate>,
    /// The signer's SMIMECapabilities, if announced.
    pub capabilities: Vec<Capability>,
    /// The signing time attribute, if present (Unix seconds).
    pub signing_time: Option<i64>,
    /// The signed content (the inner MIME entity), for opaque and detached
    /// signatures alike.
    pub content: Vec<u8>,
}

/// The address in a From header value (`Name <a@b>` or `a@b`).
pub fn from_address(value: &str) -> Option<String> {
    let addr = match (value.rfind('<'), value.rfind('>')) {
        (Some(a), Some(b)) if a < b => value.get(a + 1..b)?,
        _ => value,
    };
    let addr = addr.trim();
    addr.contains('@').then(|| addr.to_ascii_lowercase())
}

/// Verifies a signed message against `anchors` at time `now` (Unix
/// seconds), without revocation checks.
pub fn verify_message(
    input: &[u8],
    anchors: &[Certificate],
    now: i64,
) -> Result<Verification, Error> {
    verify_message_checked(
        input,
        &Checks {
            anchors,
            pool: &[],
            crls: &trust::NoCrls,
        },
        now,
    )
}

/// What a signer's certificate is checked against.
pub struct Checks<'a> {
    /// Trust anchors.
    pub anchors: &'a [Certificate],
    /// Issuers to build paths with besides the message's (the directory's).
    pub pool: &'a [Certificate],
    /// Revocation lists.
    pub crls: &'a dyn CrlSource,
}

/// Verifies a signed message with anchors, extra issuers and CRLs.
pub fn verify_message_checked(
    input: &[u8],
    checks: &Checks<'_>,
    now: i64,
) -> Result<Verification, Error> {
    let outer = mime::parse(input)?;
    let from = outer.header("From").and_then(from_address);
    let ct = outer.content_type();
    let (content, sig_der, detached) = match ct.mime_type.as_str() {
        "multipart/signed" => {
            let boundary = ct
                .param("boundary")
                .ok_or_else(|| Error::Malformed("multipart/signed without boundary".to_owned()))?;
            let (signed, sig) = mime::split_signed(outer.body, boundary)?;
            (mime::to_crlf(signed), sig.decoded_body()?, true)
        }
        "application/pkcs7-mime" | "application/x-pkcs7-mime" => {
            (Vec::new(), outer.decoded_body()?, false)
        }
        t if t.starts_with("multipart/") => {
            return Ok(partial(&outer));
        }
        other => {
            return Err(Error::WrongType(format!("{other} is not a signed message")));
        }
    };
    verify_cms_checked(
        &sig_der,
        detached.then_some(content.as_slice()),
        from.as_deref(),
        checks,
        now,
    )
}

/// A multipart whose parts include a signed one: the signature covers only
/// part of the message.
fn partial(outer: &mime::Entity<'_>) -> Verification {
    let ct = outer.content_type();
    let signed_inside = ct
        .param("boundary")
        .and_then(|b| mime::split_multipart(outer.body, b).ok())
        .is_some_and(|parts| {
            parts.iter().any(|p| {
                mime::parse(p).is_ok_and(|e| {
                    let t = e.content_type();
                    t.mime_type == "multipart/signed"
                        || (t.mime_type.ends_with("pkcs7-mime")
                            && t.param("smime-type")
                                .is_some_and(|s| s.eq_ignore_ascii_case("signed-data")))
                })
            })
        });
    Verification {
        verdict: if signed_inside {
            Verdict::NotFullySigned
        } else {
            Verdict::Invalid("the message is not signed".to_owned())
        },
        signer_chain: Vec::new(),
        capabilities: Vec::new(),
        signing_time: None,
        content: Vec::new(),
    }
}

fn invalid(reason: &str, content: Vec<u8>) -> Verification {
    Verification {
        verdict: Verdict::Invalid(reason.to_owned()),
        signer_chain: Vec::new(),
        capabilities: Vec::new(),
        signing_time: None,
        content,
    }
}

/// Verifies a DER/BER SignedData; `detached` is the content when it is not
/// embedded. No revocation checks.
pub fn verify_cms(
    sig_der: &[u8],
    detached: Option<&[u8]>,
    from: Option<&str>,
    anchors: &[Certificate],
    now: i64,
) -> Result<Verification, Error> {
    verify_cms_checked(
        sig_der,
        detached,
        from,
        &Checks {
            anchors,
            pool: &[],
            crls: &trust::NoCrls,
        },
        now,
    )
}

/// [`verify_cms`] with extra issuers and CRLs.
pub fn verify_cms_checked(
    sig_der: &[u8],
    detached: Option<&[u8]>,
    from: Option<&str>,
    checks: &Checks<'_>,
    now: i64,
) -> Result<Verification, Error> {
    let ci = der::read(sig_der)?.0.expect(tag::SEQUENCE, "ContentInfo")?;
    let mut f = ci.children();
    let ct = f.need("content type")?.expect(tag::OID, "content type")?;
    if ct.body != oid::SIGNED_DATA {
        return Err(Error::WrongType("not SignedData".to_owned()));
    }
    let sd = f
        .need("content")?
        .expect(tag::ctx(0), "content")?
        .children()
        .need("SignedData")?
        .expect(tag::SEQUENCE, "SignedData")?;
    let mut s = sd.children();
    s.need("version")?.expect(tag::INTEGER, "version")?;
    s.need("digestAlgorithms")?
        .expect(tag::SET, "digestAlgorithms")?;
    let encap = s
        .need("encapContentInfo")?
        .expect(tag::SEQUENCE, "encapContentInfo")?;
    let mut e = encap.children();
    let e_type = e.need("eContentType")?.expect(tag::OID, "eContentType")?;
    let embedded = match e.next().transpose()? {
        Some(t) => Some(
            t.expect(tag::ctx(0), "eContent")?
                .children()
                .need("eContent")?
                .octets(mime::MAX_MESSAGE_SIZE)?,
        ),
        None => None,
    };
    let content = match (embedded, detached) {
        (Some(c), None) => c,
        (None, Some(d)) => d.to_vec(),
        (Some(_), Some(_)) => {
            return Err(Error::Malformed(
                "content both embedded and detached".to_owned(),
            ));
        }
        (None, None) => return Err(Error::Malformed("no signed content".to_owned())),
    };
    let certs = cert::certs_of_signed_data(sd)?;
    let mut signer_infos = None;
    for field in s {
        let field = field?;
        if field.tag == tag::SET {
            signer_infos = Some(field);
        }
    }
    let signer_infos = signer_infos.ok_or_else(|| Error::Malformed("no signerInfos".to_owned()))?;
    let mut infos = Vec::new();
    for si in signer_infos.children() {
        if infos.len() >= signed::MAX_SIGNERS {
            return Err(Error::Limit("signer count"));
        }
        infos.push(si?);
    }
    // Every signer must verify: a failing one decides the verdict; otherwise
    // the first signer's identity is reported.
    let mut result = None;
    for si in &infos {
        let r = check_signer(si, &content, e_type.body, &certs, from, checks, now)?;
        if !matches!(r.verdict, Verdict::Valid) || result.is_none() {
            let stop = matches!(r.verdict, Verdict::Invalid(_));
            result = Some(r);
            if stop {
                break;
            }
        }
    }
    Ok(result.unwrap_or_else(|| invalid("no signer", content)))
}

/// Checks one SignerInfo.
fn check_signer(
    si: &Tlv<'_>,
    content: &[u8],
    e_type: &[u8],
    certs: &[Certificate],
    from: Option<&str>,
    checks: &Checks<'_>,
    now: i64,
) -> Result<Verification, Error> {
    let mut f = si.expect(tag::SEQUENCE, "SignerInfo")?.children();
    f.need("version")?.expect(tag::INTEGER, "version")?;
    let sid = f.need("sid")?;
    let dig_alg = f
        .need("digestAlgorithm")?
        .expect(tag::SEQUENCE, "digestAlgorithm")?;
    let dig = Digest::from_oid(
        dig_alg
            .children()
            .need("digest OID")?
            .expect(tag::OID, "OID")?
            .body,
    )?;
    let signed_attrs = f.optional(tag::ctx(0))?;
    let sig_alg = f
        .need("signatureAlgorithm")?
        .expect(tag::SEQUENCE, "signatureAlgorithm")?;
    let sig_oid = sig_alg
        .children()
        .need("signature OID")?
        .expect(tag::OID, "OID")?;
    let sig = f
        .need("signature")?
        .expect(tag::OCTET_STRING, "signature")?;

    let signer = certs.iter().find(|c| match sid.tag {
        tag::SEQUENCE => {
            let mut k = sid.children();
            match (k.next(), k.next()) {
                (Some(Ok(issuer)), Some(Ok(serial))) => {
                    c.matches_issuer_serial(issuer.raw, serial.body)
                }
                _ => false,
            }
        }
        t if t == tag::ctx_prim(0) => c.matches_key_id(sid.body),
        _ => false,
    });
    let Some(signer) = signer else {
        return Ok(invalid(
            "the signer's certificate is not in the message",
            content.to_vec(),
        ));
    };

    let mut capabilities = Vec::new();
    let mut signing_time = None;
    let message: Vec<u8> = match &signed_attrs {
        Some(attrs) => {
            let md = signed::attribute(attrs, oid::MESSAGE_DIGEST)?
                .ok_or_else(|| Error::Malformed("no messageDigest attribute".to_owned()))?;
            if md.tag != tag::OCTET_STRING || md.body != dig.hash(content).as_slice() {
                return Ok(invalid(
                    "the content does not match the signed digest",
                    content.to_vec(),
                ));
            }
            let ct = signed::attribute(attrs, oid::CONTENT_TYPE)?
                .ok_or_else(|| Error::Malformed("no contentType attribute".to_owned()))?;
            if ct.body != e_type {
                return Ok(invalid("contentType attribute mismatch", content.to_vec()));
            }
            if let Some(t) = signed::attribute(attrs, oid::SIGNING_TIME)? {
                signing_time = Some(signed::parse_time(&t)?);
            }
            if let Some(c) = signed::attribute(attrs, oid::SMIME_CAPABILITIES)? {
                capabilities = signed::parse_capabilities(&c)?;
            }
            // The signature covers the DER SET OF, i.e. the received bytes with the SET tag.
            let mut m = attrs.raw.to_vec();
            if let Some(t) = m.first_mut() {
                *t = tag::SET;
            }
            m
        }
        None => content.to_vec(),
    };
    let checked = if sig_oid.body == oid::RSASSA_PSS {
        let params = sig_alg.children().nth(1).transpose()?;
        signed::verify_pss_signature(signer, params, dig, &message, sig.body)
    } else {
        signed::verify_signature(signer, sig_oid.body, dig, &message, sig.body)
    };
    if checked.is_err() {
        return Ok(invalid("the signature does not verify", content.to_vec()));
    }

    let mut pool = certs.to_vec();
    pool.extend(checks.pool.iter().take(cert::MAX_CERTS).cloned());
    let path = trust::check(
        signer,
        &pool,
        checks.anchors,
        now,
        Purpose::Sign { signing_time },
        checks.crls,
    );
    let from_ok = from.is_some_and(|a| signer.has_email(a));
    let verdict = match (from_ok, path.verdict) {
        (false, _) => Verdict::SignerMismatch,
        (true, PathVerdict::Revoked { depth, at }) => Verdict::Revoked(format!(
            "certificate {depth} of the signer's path was revoked at {at} (Unix time)"
        )),
        (true, PathVerdict::Untrusted(reason)) => Verdict::ValidButUntrusted(reason),
        (true, PathVerdict::RevocationUnknown(reason)) => {
            Verdict::ValidButUntrusted(format!("revocation not checked: {reason}"))
        }
        (true, PathVerdict::Anchored { .. }) => Verdict::Valid,
    };
    Ok(Verification {
        verdict,
        signer_chain: path.chain,
        capabilities,
        signing_time,
        content: content.to_vec(),
    })
}
