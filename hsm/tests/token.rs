//! Key store against a real SoftHSM2 token, with openssl as the other side.
//! Run through `scripts/test-hsm`, which provisions a fresh token.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::HashSet;

use common::{fresh_label, hsm, openssl, p, random_bytes, scratch};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use sealgate_hsm::certs::{CertFormat, CertRequest};
use sealgate_hsm::{
    Error, KeyAgreement, KeyAlgorithm, KeyUsage, KeyWrapper, OaepHash, PublicKey, RsaDecryptor,
    SignatureScheme, Signer,
};

fn write_pub(label: &str, key: &PublicKey) -> std::path::PathBuf {
    let path = scratch(&format!("{label}.pub.pem"));
    std::fs::write(&path, key.spki_pem()).unwrap();
    path
}

#[test]
fn keys_are_single_purpose_and_unreadable() {
    let hsm = hsm();
    for (alg, usage) in [
        (KeyAlgorithm::Rsa2048, KeyUsage::Decrypt),
        (KeyAlgorithm::Rsa4096, KeyUsage::Sign),
        (KeyAlgorithm::P384, KeyUsage::Derive),
        (KeyAlgorithm::Aes256, KeyUsage::Wrap),
    ] {
        let label = fresh_label("kind");
        let info = hsm.generate(&label, alg, usage).unwrap();
        assert_eq!(hsm.key_info(&label).unwrap(), info);
        assert!(matches!(
            hsm.generate(&label, alg, usage),
            Err(Error::KeyExists(_))
        ));
    }
    assert!(matches!(
        hsm.generate("t-bad", KeyAlgorithm::Aes256, KeyUsage::Sign),
        Err(Error::InvalidInput(_))
    ));
    // The API refuses to use a decryption key for signing ...
    assert!(matches!(
        hsm.signer("gateway-decrypt"),
        Err(Error::WrongKey { .. })
    ));
    assert!(matches!(
        hsm.decryptor("gateway-sign"),
        Err(Error::WrongKey { .. })
    ));
    // ... and so does the token, and it never reveals a private value.
    let session = common::raw_session(true);
    let dec = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(b"gateway-decrypt".to_vec()),
        ])
        .unwrap()[0];
    let not_permitted = |r: cryptoki::error::Result<Vec<u8>>| {
        matches!(
            r,
            Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::KeyFunctionNotPermitted,
                _
            ))
        )
    };
    let find = |label: &str| {
        session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .unwrap()[0]
    };
    assert!(not_permitted(session.sign(
        &Mechanism::RsaPkcs,
        dec,
        &[1u8; 32]
    )));
    assert!(not_permitted(session.decrypt(
        &Mechanism::RsaX509,
        find("gateway-sign"),
        &[1u8; 384]
    )));
    assert!(not_permitted(session.sign(
        &Mechanism::Ecdsa,
        find("gateway-ec-derive"),
        &[1u8; 32]
    )));
    let aes = session
        .find_objects(&[Attribute::Label(b"at-rest-wrap".to_vec())])
        .unwrap()[0];
    assert!(not_permitted(session.sign(
        &Mechanism::Sha256Hmac,
        aes,
        &[1u8; 32]
    )));
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::SECRET_KEY] {
        for h in session.find_objects(&[Attribute::Class(class)]).unwrap() {
            let attrs = session
                .get_attributes(
                    h,
                    &[
                        AttributeType::Sensitive,
                        AttributeType::Extractable,
                        AttributeType::AlwaysSensitive,
                        AttributeType::NeverExtractable,
                        AttributeType::Private,
                    ],
                )
                .unwrap();
            for want in [
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::AlwaysSensitive(true),
                Attribute::NeverExtractable(true),
                Attribute::Private(true),
            ] {
                assert!(attrs.contains(&want), "{want:?} missing in {attrs:?}");
            }
            // SoftHSM answers "sensitive" (not an empty value) for a sensitive attribute.
            let value = session.get_attributes(h, &[AttributeType::Value]);
            if let Ok(v) = value {
                assert!(
                    v.iter()
                        .all(|a| !matches!(a, Attribute::Value(x) if !x.is_empty())),
                    "key value readable"
                );
            }
        }
    }
}

#[test]
fn openssl_encrypts_token_decrypts() {
    let hsm = hsm();
    let key = hsm.decryptor("gateway-decrypt").unwrap();
    let pubfile = write_pub("gateway-decrypt", RsaDecryptor::public_key(&key));
    let secret = random_bytes(32);
    let mut oaep_sha1_ct = None;
    for (name, opts) in [
        ("pkcs1", vec!["-pkeyopt", "rsa_padding_mode:pkcs1"]),
        (
            "oaep-sha1",
            vec![
                "-pkeyopt",
                "rsa_padding_mode:oaep",
                "-pkeyopt",
                "rsa_oaep_md:sha1",
            ],
        ),
        (
            "oaep-sha256",
            vec![
                "-pkeyopt",
                "rsa_padding_mode:oaep",
                "-pkeyopt",
                "rsa_oaep_md:sha256",
                "-pkeyopt",
                "rsa_mgf1_md:sha256",
            ],
        ),
    ] {
        let ct = common::openssl_encrypt(&pubfile, &secret, name, &opts);
        if name == "oaep-sha1" {
            oaep_sha1_ct = Some(ct.clone());
        }
        let pt = match name {
            "pkcs1" => key.decrypt_pkcs1v15(&ct, 32).unwrap(),
            "oaep-sha1" => key.decrypt_oaep(OaepHash::Sha1, &ct).unwrap(),
            _ => key.decrypt_oaep(OaepHash::Sha256, &ct).unwrap(),
        };
        assert_eq!(&pt[..], &secret[..], "{name}");
        // OpenPGP strips leading zero bytes of the ciphertext: still decrypts.
        if ct[0] == 0 {
            assert_eq!(
                &key.decrypt_oaep(OaepHash::Sha1, &ct[1..]).is_ok(),
                &(name == "oaep-sha1")
            );
        }
    }
    // Wrong hash: one error class.
    let ct = oaep_sha1_ct.expect("the OAEP-SHA1 case ran");
    assert!(matches!(
        key.decrypt_oaep(OaepHash::Sha256, &ct),
        Err(Error::Decrypt)
    ));
}

#[test]
fn token_signs_openssl_verifies() {
    let hsm = hsm();
    let msg = scratch("msg.txt");
    std::fs::write(&msg, b"Sealgate signs this message.\n").unwrap();
    let data = std::fs::read(&msg).unwrap();
    let rsa_label = fresh_label("rsa2048-sign");
    hsm.generate(&rsa_label, KeyAlgorithm::Rsa2048, KeyUsage::Sign)
        .unwrap();
    let p384_label = fresh_label("p384-sign");
    hsm.generate(&p384_label, KeyAlgorithm::P384, KeyUsage::Sign)
        .unwrap();
    let mut checked = 0;
    for label in ["gateway-sign", "gateway-ec-sign", &rsa_label, &p384_label] {
        let key = hsm.signer(label).unwrap();
        let public = Signer::public_key(&key).clone();
        let pubfile = write_pub(label, &public);
        for scheme in SignatureScheme::for_key(&public) {
            let sig = key.sign(*scheme, &data).unwrap();
            let sigfile = scratch(&format!("{label}-{scheme:?}.sig"));
            std::fs::write(&sigfile, &sig).unwrap();
            let md = match scheme {
                SignatureScheme::RsaPkcs1Sha256
                | SignatureScheme::RsaPssSha256
                | SignatureScheme::EcdsaP256Sha256 => "-sha256",
                SignatureScheme::RsaPkcs1Sha384
                | SignatureScheme::RsaPssSha384
                | SignatureScheme::EcdsaP384Sha384 => "-sha384",
                _ => "-sha512",
            };
            let mut args = vec![
                "dgst",
                md,
                "-verify",
                p(&pubfile),
                "-signature",
                p(&sigfile),
            ];
            if matches!(
                scheme,
                SignatureScheme::RsaPssSha256
                    | SignatureScheme::RsaPssSha384
                    | SignatureScheme::RsaPssSha512
            ) {
                args.extend([
                    "-sigopt",
                    "rsa_padding_mode:pss",
                    "-sigopt",
                    "rsa_pss_saltlen:digest",
                ]);
            }
            args.push(p(&msg));
            let out = openssl(&args);
            assert_eq!(
                String::from_utf8_lossy(&out).trim(),
                "Verified OK",
                "{label} {scheme:?}"
            );
            // A different message must not verify.
            let other = scratch("other.txt");
            std::fs::write(&other, b"something else").unwrap();
            let status = std::process::Command::new("openssl")
                .args(&args[..args.len() - 1])
                .arg(p(&other))
                .output()
                .unwrap()
                .status;
            assert!(!status.success());
            checked += 1;
        }
        // ECDSA raw form for OpenPGP.
        if let PublicKey::Ec { curve, .. } = &public {
            let sig = key
                .sign(SignatureScheme::for_key(&public)[0], &data)
                .unwrap();
            let raw = sealgate_hsm::ecdsa_der_to_raw(&sig, curve.field_len()).unwrap();
            assert_eq!(sealgate_hsm::ecdsa_raw_to_der(&raw).unwrap(), sig);
        }
    }
    assert_eq!(checked, 6 + 1 + 6 + 1);
}

#[test]
fn ecdh_matches_openssl() {
    let hsm = hsm();
    let p384 = fresh_label("p384-derive");
    hsm.generate(&p384, KeyAlgorithm::P384, KeyUsage::Derive)
        .unwrap();
    for (label, curve) in [("gateway-ec-derive", "P-256"), (p384.as_str(), "P-384")] {
        let key = hsm.key_agreement(label).unwrap();
        let tokenpub = write_pub(label, KeyAgreement::public_key(&key));
        let peer = scratch(&format!("peer-{curve}.pem"));
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            &format!("ec_paramgen_curve:{curve}"),
            "-out",
            p(&peer),
        ]);
        let peer_spki = openssl(&["pkey", "-in", p(&peer), "-pubout", "-outform", "DER"]);
        let point_len = if curve == "P-256" { 65 } else { 97 };
        let point = &peer_spki[peer_spki.len() - point_len..];
        let ours = key.agree(point).unwrap();
        let secret_file = scratch(&format!("ecdh-{curve}.bin"));
        openssl(&[
            "pkeyutl",
            "-derive",
            "-inkey",
            p(&peer),
            "-peerkey",
            p(&tokenpub),
            "-out",
            p(&secret_file),
        ]);
        assert_eq!(
            &ours[..],
            &std::fs::read(&secret_file).unwrap()[..],
            "{curve}"
        );
        assert!(key.agree(&point[1..]).is_err());
        // A point off the curve is the peer's error, not an outage.
        let mut off_curve = point.to_vec();
        let last = off_curve.len() - 1;
        off_curve[last] ^= 1;
        assert!(matches!(key.agree(&off_curve), Err(Error::InvalidInput(_))));
        assert_eq!(&key.agree(point).unwrap()[..], &ours[..]);
    }
    assert!(matches!(
        hsm.key_agreement("gateway-ec-sign"),
        Err(Error::WrongKey { .. })
    ));
}

#[test]
fn data_keys_wrap_and_unwrap() {
    let hsm = hsm();
    let wrapper = hsm.wrapper("at-rest-wrap").unwrap();
    let dk = random_bytes(32);
    let wrapped = wrapper.wrap(&dk, b"mailbox:42").unwrap();
    assert_eq!(wrapped.len(), 1 + 12 + 32 + 16);
    assert_eq!(
        &wrapper.unwrap(&wrapped, b"mailbox:42").unwrap()[..],
        &dk[..]
    );
    assert_ne!(
        wrapper.wrap(&dk, b"mailbox:42").unwrap(),
        wrapped,
        "fresh IV"
    );
    assert!(matches!(
        wrapper.unwrap(&wrapped, b"mailbox:43"),
        Err(Error::Decrypt)
    ));
    let mut tampered = wrapped.clone();
    tampered[20] ^= 1;
    assert!(matches!(
        wrapper.unwrap(&tampered, b"mailbox:42"),
        Err(Error::Decrypt)
    ));
    assert!(matches!(
        wrapper.unwrap(&wrapped[..10], b""),
        Err(Error::Decrypt)
    ));
}

#[test]
fn concurrent_decryptions_from_tokio_tasks() {
    let hsm = hsm();
    let label = fresh_label("rsa2048-conc");
    hsm.generate(&label, KeyAlgorithm::Rsa2048, KeyUsage::Decrypt)
        .unwrap();
    let key = hsm.decryptor(&label).unwrap();
    let pubfile = write_pub(&label, RsaDecryptor::public_key(&key));
    let secret = random_bytes(32);
    let ct = common::openssl_encrypt(
        &pubfile,
        &secret,
        "conc",
        &["-pkeyopt", "rsa_padding_mode:oaep"],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .max_blocking_threads(64)
        .build()
        .unwrap();
    let results = rt.block_on(async {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(32));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let key = key.clone();
            let ct = ct.clone();
            let barrier = barrier.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                barrier.wait();
                (0..10)
                    .map(|_| key.decrypt_oaep(OaepHash::Sha1, &ct).map(|v| v.to_vec()))
                    .collect::<Vec<_>>()
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    assert_eq!(results.len(), 320);
    for r in results {
        assert_eq!(r.unwrap(), secret);
    }
}

/// Builds the PKCS#1 type-2 block for `msg` and lets the token raw-encrypt it
/// with the public key (so defects can be planted in the padding).
fn raw_encrypt(
    session: &cryptoki::session::Session,
    pubh: cryptoki::object::ObjectHandle,
    em: &[u8],
) -> Vec<u8> {
    session.encrypt(&Mechanism::RsaX509, pubh, em).unwrap()
}

/// A fresh RSA-2048 decryption key on the token, with a raw session and the
/// handle of its public key there (to plant defects in PKCS#1 blocks).
fn fresh_rsa_decryptor(
    name: &str,
) -> (
    sealgate_hsm::TokenKey,
    cryptoki::session::Session,
    cryptoki::object::ObjectHandle,
) {
    let hsm = hsm();
    let label = fresh_label(name);
    hsm.generate(&label, KeyAlgorithm::Rsa2048, KeyUsage::Decrypt)
        .unwrap();
    let key = hsm.decryptor(&label).unwrap();
    let session = common::raw_session(false);
    let pubh = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap()[0];
    (key, session, pubh)
}

#[test]
fn pkcs1_oracle_gives_one_answer_class() {
    let (key, session, pubh) = fresh_rsa_decryptor("rsa2048-oracle");
    let k = RsaDecryptor::public_key(&key).rsa_len();
    assert_eq!(k, 256);
    let PublicKey::Rsa { n, .. } = RsaDecryptor::public_key(&key) else {
        panic!("not RSA")
    };
    let n0 = n[0];

    let msg = random_bytes(32);
    // Random non-zero padding: every block (and ciphertext) below is different.
    let good = |ps_len: usize, m: &[u8]| {
        let mut em = vec![0u8, 2];
        em.extend(random_bytes(ps_len).into_iter().map(|b| b | 1));
        em.push(0);
        em.extend_from_slice(m);
        em
    };
    let valid_em = good(k - 3 - 32, &msg);
    let valid_ct = raw_encrypt(&session, pubh, &valid_em);
    assert_eq!(&key.decrypt_pkcs1v15(&valid_ct, 32).unwrap()[..], &msg[..]);

    let mut outputs = HashSet::new();
    let mut ciphertexts = HashSet::new();
    let mut n = 0;
    for i in 0..10_000usize {
        let ct = match i % 8 {
            // Random numbers below the modulus (top byte zero).
            0 => {
                let mut c = random_bytes(k);
                c[0] = 0;
                c
            }
            // Not below the modulus, or too long: rejected before the token.
            1 => {
                if i % 16 == 1 {
                    vec![0xffu8; k]
                } else {
                    random_bytes(k + 1)
                }
            }
            _ => {
                let mut em = good(k - 3 - 32, &msg);
                match i % 8 {
                    // Leading byte non-zero but still below the modulus.
                    2 => em[0] = 1 + (i % usize::from(n0 - 1)) as u8,
                    3 => em[1] = if i % 2 == 0 { 1 } else { 3 },
                    4 => em[2 + i % 8] = 0, // zero inside the first 8 PS bytes
                    5 => em[k - 33] = 0x42, // no separator before the message
                    6 => em = good(k - 3 - 24, &random_bytes(24)), // wrong key length
                    _ => {
                        // Separator too early: message longer than expected.
                        em = good(k - 3 - 48, &random_bytes(48));
                    }
                }
                raw_encrypt(&session, pubh, &em)
            }
        };
        let out = key
            .decrypt_pkcs1v15(&ct, 32)
            .expect("malformed ciphertext must not produce an error");
        assert_eq!(out.len(), 32);
        assert_ne!(&out[..], &msg[..]);
        // Deterministic: the same ciphertext gives the same answer.
        if i % 500 == 0 {
            assert_eq!(key.decrypt_pkcs1v15(&ct, 32).unwrap(), out);
        }
        outputs.insert(out.to_vec());
        ciphertexts.insert(ct);
        n += 1;
    }
    assert_eq!(n, 10_000);
    // Pseudo-random: every distinct ciphertext maps to its own key.
    assert!(
        ciphertexts.len() > 9_000,
        "{} distinct ciphertexts",
        ciphertexts.len()
    );
    assert_eq!(outputs.len(), ciphertexts.len());
}

/// Several lengths in one call (OpenPGP v3 PKESK): the message only at its own
/// length, the synthetic value of each length otherwise, the same answers as
/// one call per length, and requests no block can answer refused.
#[test]
fn pkcs1_several_lengths_in_one_call() {
    let (key, session, pubh) = fresh_rsa_decryptor("pkcs1-lengths");
    let k = RsaDecryptor::public_key(&key).rsa_len();
    let lengths = [35usize, 27, 19];
    for (i, len) in lengths.iter().enumerate() {
        let msg = random_bytes(*len);
        let mut em = vec![0u8, 2];
        em.extend(random_bytes(k - 3 - len).into_iter().map(|b| b | 1));
        em.push(0);
        em.extend_from_slice(&msg);
        let ct = raw_encrypt(&session, pubh, &em);
        let all = key.decrypt_pkcs1v15_lengths(&ct, &lengths).unwrap();
        assert_eq!(all.len(), lengths.len());
        for (j, (answer, l)) in all.iter().zip(lengths).enumerate() {
            assert_eq!(answer.len(), l);
            assert_eq!(answer[..] == msg[..], i == j);
        }
        let single: Vec<_> = lengths
            .iter()
            .map(|l| key.decrypt_pkcs1v15(&ct, *l).unwrap())
            .collect();
        assert_eq!(&single[i], &all[i]);
        assert_eq!(
            key.decrypt_pkcs1v15_lengths(&ct, &[*len]).unwrap()[0],
            single[i]
        );
    }
    let garbage = random_bytes(k - 1);
    let a = key.decrypt_pkcs1v15_lengths(&garbage, &lengths).unwrap();
    assert_eq!(a, key.decrypt_pkcs1v15_lengths(&garbage, &lengths).unwrap());
    assert_ne!(a[0][..19], a[2][..]);
    assert!(key.decrypt_pkcs1v15_lengths(&garbage, &[]).is_err());
    assert!(key.decrypt_pkcs1v15_lengths(&garbage, &[k - 10]).is_err());
    assert!(key.decrypt_pkcs1v15_lengths(&garbage, &[19; 9]).is_err());
}

#[test]
fn certificates_self_signed_issued_csr_import_export() {
    let hsm = hsm();
    let signer = fresh_label("cert-sign");
    hsm.generate(&signer, KeyAlgorithm::P256, KeyUsage::Sign)
        .unwrap();
    let req = CertRequest {
        common_name: "gateway.example.test".to_owned(),
        organization: Some("Sealgate Test".to_owned()),
        emails: vec!["gateway@example.test".to_owned()],
        dns_names: vec!["gateway.example.test".to_owned()],
        days: 30,
    };
    // Self-signed (signing key).
    let der = hsm.create_certificate(&signer, &req, None).unwrap();
    let certfile = scratch(&format!("{signer}.pem"));
    std::fs::write(
        &certfile,
        hsm.export_certificate(&signer, CertFormat::Pem).unwrap(),
    )
    .unwrap();
    assert_eq!(
        hsm.export_certificate(&signer, CertFormat::Der).unwrap(),
        der
    );
    let out = openssl(&[
        "verify",
        "-partial_chain",
        "-check_ss_sig",
        "-CAfile",
        p(&certfile),
        p(&certfile),
    ]);
    assert!(String::from_utf8_lossy(&out).contains("OK"));
    let cert_pub = openssl(&["x509", "-in", p(&certfile), "-noout", "-pubkey"]);
    let info = hsm.key_info(&signer).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&cert_pub).trim(),
        info.public.as_ref().unwrap().spki_pem().trim()
    );
    assert!(std::fs::metadata(common::settings().cert_dir().join(format!("{signer}.pem"))).is_ok());

    // A decryption key cannot sign its own certificate or a CSR: the signing key issues it.
    let dec = fresh_label("cert-dec");
    hsm.generate(&dec, KeyAlgorithm::Rsa2048, KeyUsage::Decrypt)
        .unwrap();
    assert!(hsm.create_certificate(&dec, &req, None).is_err());
    assert!(hsm.create_csr(&dec, &req).is_err());
    hsm.create_certificate(&dec, &req, Some(&signer)).unwrap();
    // Stored and exported with the issuer's chain, not the leaf alone.
    assert_eq!(hsm.certificate_chain(&dec).unwrap().len(), 2);
    let decfile = scratch(&format!("{dec}.pem"));
    std::fs::write(
        &decfile,
        hsm.export_certificate(&dec, CertFormat::Pem).unwrap(),
    )
    .unwrap();
    let text = openssl(&["x509", "-in", p(&decfile), "-noout", "-text"]);
    assert!(String::from_utf8_lossy(&text).contains("Key Encipherment"));
    let out = openssl(&[
        "verify",
        "-partial_chain",
        "-CAfile",
        p(&certfile),
        p(&decfile),
    ]);
    assert!(String::from_utf8_lossy(&out).contains("OK"));

    // CSR for an external CA, then import of the issued certificate and chain.
    let rsa_signer = fresh_label("cert-rsa");
    hsm.generate(&rsa_signer, KeyAlgorithm::Rsa3072, KeyUsage::Sign)
        .unwrap();
    let csr = hsm.create_csr(&rsa_signer, &req).unwrap();
    let csrfile = scratch("req.csr");
    std::fs::write(&csrfile, &csr).unwrap();
    openssl(&["req", "-verify", "-noout", "-in", p(&csrfile)]);
    let cakey = scratch("ca.key");
    let cacert = scratch("ca.pem");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        p(&cakey),
        "-out",
        p(&cacert),
        "-subj",
        "/CN=Test CA",
        "-days",
        "2",
    ]);
    let issued = scratch("issued.pem");
    openssl(&[
        "x509",
        "-req",
        "-in",
        p(&csrfile),
        "-CA",
        p(&cacert),
        "-CAkey",
        p(&cakey),
        "-CAcreateserial",
        "-out",
        p(&issued),
        "-days",
        "2",
    ]);
    let mut chain = std::fs::read(&issued).unwrap();
    chain.extend(std::fs::read(&cacert).unwrap());
    hsm.import_certificate(&rsa_signer, &chain).unwrap();
    assert_eq!(hsm.certificate_chain(&rsa_signer).unwrap().len(), 2);
    // Someone else's certificate is refused.
    assert!(hsm.import_certificate(&signer, &chain).is_err());
    let exported = scratch("exported.pem");
    std::fs::write(
        &exported,
        hsm.export_certificate(&rsa_signer, CertFormat::Pem)
            .unwrap(),
    )
    .unwrap();
    let out = openssl(&["verify", "-CAfile", p(&cacert), p(&exported)]);
    assert!(String::from_utf8_lossy(&out).contains("OK"));
}
