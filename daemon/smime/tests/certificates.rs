//! Certificate parsing and recipient-certificate choice on certificates
//! made by openssl (make-peers.sh): PEM bundles, DER, PKCS#7 certs-only,
//! addresses from subjectAltName and the subject's emailAddress, and the
//! capabilities-driven choice between GCM and CBC. Run by
//! `scripts/test-smime` (feature `token-tests`, for the peer directory).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealgate_smime::cert::{self, CertKey, select_for_recipient};
use sealgate_smime::signed::{Capability, now};
use sealgate_smime::{EncryptOptions, RsaTransport, oid};

#[test]
fn parses_pem_der_and_pkcs7_bundles() {
    let names = ["rsa2048", "rsa3072", "p256", "p384", "other"];
    let mut pem = Vec::new();
    for n in names {
        pem.extend(std::fs::read(peer_file(n, "pem")).unwrap());
    }
    let certs = cert::parse_bundle(&pem).unwrap();
    assert_eq!(certs.len(), names.len());
    assert!(matches!(certs[0].key, CertKey::Rsa { modulus_len: 256 }));
    assert!(matches!(
        certs[2].key,
        CertKey::Ec {
            curve: sealgate_hsm::Curve::P256,
            ..
        }
    ));
    assert!(matches!(
        certs[3].key,
        CertKey::Ec {
            curve: sealgate_hsm::Curve::P384,
            ..
        }
    ));
    // Addresses from subjectAltName and the subject's emailAddress (same here), lower-cased.
    assert_eq!(certs[4].emails, vec!["other@elsewhere.test".to_owned()]);
    assert!(certs[0].has_email("RSA2048@Peer.Test"));

    let der = openssl(&[
        "x509",
        "-in",
        p(&peer_file("p384", "pem")),
        "-outform",
        "DER",
    ]);
    let one = cert::parse_bundle(&der).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].der(), certs[3].der());

    let bundle_file = scratch("bundle.pem");
    std::fs::write(&bundle_file, &pem).unwrap();
    for form in ["DER", "PEM"] {
        let p7 = openssl(&[
            "crl2pkcs7",
            "-nocrl",
            "-certfile",
            p(&bundle_file),
            "-outform",
            form,
        ]);
        let from_p7 = cert::parse_bundle(&p7).unwrap();
        assert_eq!(from_p7.len(), names.len(), "{form}");
    }
}

#[test]
fn refuses_garbage_and_oversized_input() {
    assert!(cert::parse_bundle(b"not a certificate").is_err());
    let mut der = openssl(&[
        "x509",
        "-in",
        p(&peer_file("rsa2048", "pem")),
        "-outform",
        "DER",
    ]);
    der.truncate(der.len() - 10);
    assert!(cert::parse_bundle(&der).is_err());
    let mut many = Vec::new();
    let one = std::fs::read(peer_file("p256", "pem")).unwrap();
    for _ in 0..=cert::MAX_CERTS {
        many.extend_from_slice(&one);
    }
    assert!(matches!(
        cert::parse_bundle(&many),
        Err(sealgate_smime::Error::Limit(_))
    ));
}

#[test]
fn chooses_a_valid_encryption_certificate() {
    // The CA certificate names no address; expired certificates are
    // ignored; among valid ones the newest wins.
    let ca = cert::parse_bundle(&std::fs::read(peer_file("ca", "pem")).unwrap()).unwrap();
    assert!(select_for_recipient(&ca, "ca@peer.test", now()).is_none());

    let certs: Vec<_> = ["rsa2048", "p256"].iter().map(|n| peer_cert(n)).collect();
    let chosen = select_for_recipient(&certs, "p256@peer.test", now()).unwrap();
    assert!(chosen.has_email("p256@peer.test"));
    assert!(select_for_recipient(&certs, "p256@peer.test", now() + 400 * 86400).is_none());
    assert!(select_for_recipient(&certs, "nobody@peer.test", now()).is_none());

    let mut older = peer_cert("rsa2048");
    older.not_before -= 1000;
    older.emails = vec!["p256@peer.test".to_owned()];
    let pool = [older, peer_cert("p256")];
    let chosen = select_for_recipient(&pool, "p256@peer.test", now()).unwrap();
    assert!(matches!(chosen.key, CertKey::Ec { .. }));
}

#[test]
fn gcm_only_when_every_recipient_announced_it() {
    let gcm = [Capability {
        oid: oid::AES256_GCM.to_vec(),
    }];
    let cbc = [Capability {
        oid: oid::AES256_CBC.to_vec(),
    }];
    let rsa = RsaTransport::OaepSha256;
    assert!(EncryptOptions::for_capabilities(&[&gcm, &gcm], rsa).gcm);
    assert!(!EncryptOptions::for_capabilities(&[&gcm, &cbc], rsa).gcm);
    assert!(!EncryptOptions::for_capabilities(&[&gcm, &[]], rsa).gcm);
    assert!(!EncryptOptions::for_capabilities(&[], rsa).gcm);
}
