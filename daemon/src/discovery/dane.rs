//! Keys published in the recipient's own DNS zone, trusted because the zone
//! is signed: OPENPGPKEY (RFC 7929) and SMIMEA (RFC 8162) records at
//! `<hash>._openpgpkey.<domain>` and `<hash>._smimecert.<domain>`, the hash
//! being the SHA2-256 of the local part truncated to 28 octets, in hex.
//!
//! Only answers the validating resolver authenticated count (see
//! `dnssec`); an unsigned answer is as good as none. A validation failure
//! (SERVFAIL) is an error, never "no key".
//!
//! Trusts: the DNSSEC chain as the resolver checked it.

use hickory_proto::rr::{RData, RecordType};

use crate::dnssec::{Answer, DnsError, SecureDns, Security};

/// The owner-name label for a local part (RFC 7929 §3, RFC 8162 §3).
pub fn label(local: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, local.as_bytes());
    digest
        .as_ref()
        .iter()
        .take(28)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the zone publishes for an address.
#[derive(Debug, Default)]
pub struct Published {
    /// OpenPGP transferable public keys (binary).
    pub openpgp: Vec<Vec<u8>>,
    /// Certificates (DER) from SMIMEA records that carry a whole
    /// certificate (selector 0, matching 0) for usage DANE-EE(3) or
    /// PKIX-EE(1).
    pub smime: Vec<Vec<u8>>,
}

/// Looks up both record types. `Ok` with nothing found when the zone is
/// unsigned or says there are none.
pub async fn lookup(dns: &SecureDns, local: &str, domain: &str) -> Result<Published, DnsError> {
    let hash = label(local);
    let mut found = Published::default();
    let openpgp = dns
        .query(
            &format!("{hash}._openpgpkey.{domain}"),
            RecordType::OPENPGPKEY,
        )
        .await?;
    if let Answer::Records {
        records,
        security: Security::Secure,
        ..
    } = &openpgp
    {
        found.openpgp.extend(records.iter().filter_map(|r| match r {
            RData::OPENPGPKEY(k) => Some(k.public_key.clone()),
            _ => None,
        }));
    }
    let smimea = dns
        .query(&format!("{hash}._smimecert.{domain}"), RecordType::SMIMEA)
        .await?;
    if let Answer::Records {
        records,
        security: Security::Secure,
        ..
    } = &smimea
    {
        found.smime.extend(records.iter().filter_map(|r| match r {
            RData::SMIMEA(s) => {
                let t = &s.0;
                let usage = u8::from(t.cert_usage);
                (matches!(usage, 1 | 3) && u8::from(t.selector) == 0 && u8::from(t.matching) == 0)
                    .then(|| t.cert_data.clone())
            }
            _ => None,
        }));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7929_example_label() {
        // RFC 7929 §3: "hugh" hashes to c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6.
        assert_eq!(
            label("hugh"),
            "c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6"
        );
    }
}
