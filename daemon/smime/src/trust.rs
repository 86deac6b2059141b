//! Whether a certificate is trusted: a path from it to one of the
//! configured trust anchors, through issuers found in the message, the
//! directory or the anchors themselves (RFC 5280 §6, the parts S/MIME
//! needs), every certificate valid now, issuers allowed to issue (CA flag,
//! keyCertSign, path length), the end entity fit for the purpose, and no
//! certificate on the path revoked by its issuer's CRL.
//!
//! Revocation: the caller's [`CrlSource`] hands out the CRL for a
//! certificate (the daemon fetches them from the distribution points,
//! caches and refreshes them); the CRL is checked here against the issuer
//! on the path before it counts. A certificate that names distribution
//! points but whose CRL is not at hand, or only stale, makes the path
//! [`PathVerdict::RevocationUnknown`]: not trusted yet (the caller may try
//! again once the CRL arrives), never trusted anyway.
//!
//! Trusts: the anchors the caller passes and the CRLs only as verified
//! here. Pure: no I/O.

use std::sync::Arc;

use crate::cert::Certificate;
use crate::crl::Crl;
use crate::signed;

/// What the certificate is to be trusted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Encrypting to it (the end entity must allow key transport or agreement).
    Encrypt,
    /// Its signature at `signing_time` (if stated) is checked.
    Sign { signing_time: Option<i64> },
}

/// A CRL lookup's answer.
#[derive(Debug, Clone)]
pub enum CrlAnswer {
    /// The issuer's current CRL (not yet verified: [`check`] does that).
    Found(Arc<Crl>),
    /// The certificate names no distribution point the source can use.
    NotPublished,
    /// It names one, but the CRL is not at hand (not fetched yet, fetch
    /// failed, stale): why.
    Unavailable(String),
}

/// Where CRLs come from.
pub trait CrlSource {
    fn crl(&self, cert: &Certificate, issuer: &Certificate) -> CrlAnswer;
}

/// No revocation checking: every certificate is [`CrlAnswer::NotPublished`].
pub struct NoCrls;

impl CrlSource for NoCrls {
    fn crl(&self, _cert: &Certificate, _issuer: &Certificate) -> CrlAnswer {
        CrlAnswer::NotPublished
    }
}

/// The outcome for a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathVerdict {
    /// A valid path to an anchor; `revocation_checked` says whether a CRL
    /// covered every certificate on it (false: none published one).
    Anchored { revocation_checked: bool },
    /// A certificate on the path (0: the end entity) is revoked.
    Revoked { depth: usize, at: i64 },
    /// No valid path (no anchor reached, expired, not allowed to issue or
    /// for the purpose): why.
    Untrusted(String),
    /// The path is valid, but a CRL that should be checked is not at hand.
    RevocationUnknown(String),
}

/// A path and its verdict.
#[derive(Debug, Clone)]
pub struct PathCheck {
    /// The certificate followed by the issuers found, up to an anchor or
    /// the last issuer found.
    pub chain: Vec<Certificate>,
    pub verdict: PathVerdict,
}

/// Most certificates in a path.
pub const MAX_PATH: usize = 8;

/// Checks `cert` for `purpose` at `now` against `anchors`, with issuers
/// from `pool` (the message's certificates, the directory's).
pub fn check(
    cert: &Certificate,
    pool: &[Certificate],
    anchors: &[Certificate],
    now: i64,
    purpose: Purpose,
    crls: &dyn CrlSource,
) -> PathCheck {
    let chain = build_chain(cert, pool, anchors);
    let verdict = match check_path(&chain, anchors, now, purpose) {
        Err(why) => PathVerdict::Untrusted(why),
        Ok(()) => revocation(&chain, now, crls),
    };
    PathCheck { chain, verdict }
}

fn revocation(chain: &[Certificate], now: i64, crls: &dyn CrlSource) -> PathVerdict {
    let mut checked_all = true;
    for (depth, pair) in chain.windows(2).enumerate() {
        let [cert, issuer] = pair else { continue };
        match crls.crl(cert, issuer) {
            CrlAnswer::Found(crl) => {
                if let Err(e) = crl.verify_with(issuer) {
                    return PathVerdict::RevocationUnknown(format!(
                        "the CRL for certificate {depth} does not verify: {e}"
                    ));
                }
                if !crl.current_at(now) {
                    return PathVerdict::RevocationUnknown(format!(
                        "the CRL for certificate {depth} is out of date"
                    ));
                }
                if let Some(at) = crl.revoked_at(cert) {
                    return PathVerdict::Revoked { depth, at };
                }
            }
            CrlAnswer::NotPublished => checked_all = false,
            CrlAnswer::Unavailable(why) => {
                return PathVerdict::RevocationUnknown(format!(
                    "no CRL for certificate {depth} yet: {why}"
                ));
            }
        }
    }
    PathVerdict::Anchored {
        revocation_checked: checked_all,
    }
}

/// The issuer of `c` among `pool` whose signature over `c` verifies.
fn find_issuer<'a>(c: &Certificate, pool: &'a [Certificate]) -> Option<&'a Certificate> {
    pool.iter()
        .find(|i| i.subject == c.issuer && signed_by(c, i))
}

/// Whether `issuer`'s key signed `c`.
pub fn signed_by(c: &Certificate, issuer: &Certificate) -> bool {
    let Ok(dig) = signed::cert_signature_digest(&c.signature_alg) else {
        return false;
    };
    signed::verify_signature(issuer, &c.signature_alg, dig, &c.tbs, &c.signature).is_ok()
}

/// The certificate followed by issuers found in `pool` or the anchors, up
/// to a self-signed certificate or an anchor.
pub fn build_chain(
    cert: &Certificate,
    pool: &[Certificate],
    anchors: &[Certificate],
) -> Vec<Certificate> {
    let mut chain = vec![cert.clone()];
    while chain.len() < MAX_PATH {
        let Some(last) = chain.last() else { break };
        if anchors.iter().any(|a| a.der() == last.der()) {
            break;
        }
        let next = find_issuer(last, anchors).or_else(|| find_issuer(last, pool));
        match next {
            Some(n) if !chain.iter().any(|c| c.der() == n.der()) => chain.push(n.clone()),
            _ => break,
        }
    }
    chain
}

/// Checks a built chain: ends at an anchor, each issuer may issue, times
/// and the end entity's usages are right for `purpose`.
pub fn check_path(
    chain: &[Certificate],
    anchors: &[Certificate],
    now: i64,
    purpose: Purpose,
) -> Result<(), String> {
    let last = chain.last().ok_or("empty chain")?;
    if !anchors.iter().any(|a| a.der() == last.der()) {
        return Err("no path to a trust anchor".to_owned());
    }
    let signing_time = match purpose {
        Purpose::Sign { signing_time } => signing_time,
        Purpose::Encrypt => None,
    };
    for (depth, c) in chain.iter().enumerate() {
        if !c.valid_at(now) {
            return Err(format!(
                "certificate {depth} is not valid now{}",
                if now > c.not_after { " (expired)" } else { "" }
            ));
        }
        if signing_time.is_some_and(|t| !c.valid_at(t)) {
            return Err(format!("certificate {depth} was not valid at signing time"));
        }
        if depth > 0 {
            let is_ca = matches!(c.ca, Some((true, _)));
            let may_sign = c.key_usage.is_none_or(|k| k.key_cert_sign);
            if !is_ca || !may_sign {
                return Err(format!("certificate {depth} may not issue certificates"));
            }
            if let Some((_, Some(max))) = c.ca {
                // Intermediates below this CA (not counting the end entity).
                if (depth - 1) as u32 > max {
                    return Err(format!("path length exceeded at certificate {depth}"));
                }
            }
        }
    }
    let end = chain.first().ok_or("empty chain")?;
    if end.eku_email == Some(false) {
        return Err("the certificate is not for e-mail protection".to_owned());
    }
    match purpose {
        Purpose::Sign { .. } => {
            if end
                .key_usage
                .is_some_and(|k| !k.digital_signature && !k.non_repudiation)
            {
                return Err("the signer's key usage does not allow signing".to_owned());
            }
        }
        Purpose::Encrypt => {
            if !end.can_encrypt() {
                return Err("the certificate's key usage does not allow encryption".to_owned());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    struct Ca {
        key: rcgen::KeyPair,
        params: rcgen::CertificateParams,
        cert: Certificate,
    }

    fn ca(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let c = params.clone().self_signed(&key).unwrap();
        Ca {
            cert: Certificate::from_der(c.der()).unwrap(),
            key,
            params,
        }
    }

    fn person(ca: &Ca, serial: u64, crl_url: Option<&str>) -> Certificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.serial_number = Some(rcgen::SerialNumber::from(serial));
        let today = time::OffsetDateTime::now_utc();
        p.not_before = today - time::Duration::days(1);
        p.not_after = today + time::Duration::days(30);
        p.subject_alt_names = vec![rcgen::SanType::Rfc822Name(
            "bob@example.org".try_into().unwrap(),
        )];
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyAgreement,
        ];
        if let Some(url) = crl_url {
            p.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: vec![url.to_owned()],
            }];
        }
        let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
        Certificate::from_der(p.signed_by(&key, &issuer).unwrap().der()).unwrap()
    }

    fn crl(ca: &Ca, serials: &[u64]) -> Arc<Crl> {
        let now = time::OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(*s),
                    revocation_time: now - time::Duration::minutes(5),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
        Arc::new(Crl::from_der(params.signed_by(&issuer).unwrap().der()).unwrap())
    }

    struct Fixed(CrlAnswer);
    impl CrlSource for Fixed {
        fn crl(&self, _: &Certificate, _: &Certificate) -> CrlAnswer {
            self.0.clone()
        }
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    #[test]
    fn anchored_revoked_unknown_and_untrusted() {
        let root = ca("Root");
        let anchors = [root.cert.clone()];
        let url = "http://crl.example/root.crl";
        let good = person(&root, 10, Some(url));
        let bad = person(&root, 11, Some(url));
        let list = Fixed(CrlAnswer::Found(crl(&root, &[11])));
        let enc = Purpose::Encrypt;
        assert_eq!(
            check(&good, &[], &anchors, now(), enc, &list).verdict,
            PathVerdict::Anchored {
                revocation_checked: true
            }
        );
        assert!(matches!(
            check(&bad, &[], &anchors, now(), enc, &list).verdict,
            PathVerdict::Revoked { depth: 0, .. }
        ));
        // The CRL is not at hand: not trusted (yet).
        let missing = Fixed(CrlAnswer::Unavailable("not fetched".into()));
        assert!(matches!(
            check(&good, &[], &anchors, now(), enc, &missing).verdict,
            PathVerdict::RevocationUnknown(_)
        ));
        // A CRL signed by another CA does not count.
        let other = ca("Other");
        let forged = Fixed(CrlAnswer::Found(crl(&other, &[])));
        assert!(matches!(
            check(&bad, &[], &anchors, now(), enc, &forged).verdict,
            PathVerdict::RevocationUnknown(_)
        ));
        // No anchor for it: untrusted whatever the CRL says.
        assert!(matches!(
            check(
                &good,
                &[],
                std::slice::from_ref(&other.cert),
                now(),
                enc,
                &NoCrls
            )
            .verdict,
            PathVerdict::Untrusted(_)
        ));
        // Expired by now: untrusted.
        let later = now() + 60 * 86_400;
        assert!(matches!(
            check(&good, &[], &anchors, later, enc, &NoCrls).verdict,
            PathVerdict::Untrusted(why) if why.contains("expired")
        ));
        // Without published CRLs the path is anchored, unchecked.
        let plain = person(&root, 12, None);
        assert_eq!(
            check(&plain, &[], &anchors, now(), enc, &NoCrls).verdict,
            PathVerdict::Anchored {
                revocation_checked: false
            }
        );
    }

    #[test]
    fn intermediates_come_from_the_pool() {
        let root = ca("Root");
        let mid_key = rcgen::KeyPair::generate().unwrap();
        let mut mid_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        mid_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Intermediate");
        mid_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        mid_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let issuer = rcgen::Issuer::from_params(&root.params, &root.key);
        let mid_cert = mid_params.signed_by(&mid_key, &issuer).unwrap();
        let mid = Ca {
            cert: Certificate::from_der(mid_cert.der()).unwrap(),
            key: mid_key,
            params: mid_params,
        };
        let leaf = person(&mid, 5, None);
        let anchors = [root.cert.clone()];
        let without = check(&leaf, &[], &anchors, now(), Purpose::Encrypt, &NoCrls);
        assert!(matches!(without.verdict, PathVerdict::Untrusted(_)));
        let with = check(
            &leaf,
            std::slice::from_ref(&mid.cert),
            &anchors,
            now(),
            Purpose::Encrypt,
            &NoCrls,
        );
        assert!(matches!(with.verdict, PathVerdict::Anchored { .. }));
        assert_eq!(with.chain.len(), 3);
    }
}
