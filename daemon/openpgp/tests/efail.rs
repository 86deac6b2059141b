//! Efail and integrity (RFC 9580 §13.7): messages built packet by packet
//! for the gateway's token keys — SED, SEIPD v1 without or with a broken
//! MDC, SEIPD v2 with a flipped tag or chunk — are all refused with the one
//! uniform error and no plaintext, while the same construction with a
//! correct MDC decrypts (so the refusals are about integrity, not about a
//! malformed test). Run by `scripts/test-openpgp`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Write;

use common::*;
use sealgate_openpgp::{EncryptOptions, GatewayIdentity, Limits, decrypt, encrypt};
use sequoia_openpgp as openpgp;

use openpgp::Packet;
use openpgp::crypto::SessionKey;
use openpgp::crypto::symmetric::{BlockCipherMode, Encryptor, PaddingMode};
use openpgp::packet::PKESK;
use openpgp::packet::pkesk::PKESK3;
use openpgp::parse::{PacketParserResult, Parse};
use openpgp::serialize::Serialize;
use openpgp::types::{HashAlgorithm, SymmetricAlgorithm};

const SECRET: &[u8] = b"Content-Type: text/plain\r\n\r\nEFAIL-CANARY attack at dawn\r\n";

fn random(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut b).unwrap();
    b
}

/// New-format packet with a five-octet length.
fn packet(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0xC0 | tag, 0xFF];
    p.extend_from_slice(&(body.len() as u32).to_be_bytes());
    p.extend_from_slice(body);
    p
}

fn literal(data: &[u8]) -> Vec<u8> {
    let mut body = vec![b'b', 0, 0, 0, 0, 0];
    body.extend_from_slice(data);
    packet(11, &body)
}

fn cfb(sk: &SessionKey, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = Encryptor::new(
        SymmetricAlgorithm::AES256,
        BlockCipherMode::CFB,
        PaddingMode::None,
        sk,
        None,
        &mut out,
    )
    .unwrap();
    e.write_all(plain).unwrap();
    e.finalize().unwrap();
    out
}

enum Mdc {
    Good,
    Missing,
    Broken,
}

/// PKESK v3 for the gateway's newest subkey, then the given data packet.
fn message(id: &GatewayIdentity, sk: &SessionKey, data_packet: &[u8]) -> Vec<u8> {
    let subkey = id.cert().keys().subkeys().last().unwrap().key().clone();
    let pkesk = PKESK3::for_recipient(SymmetricAlgorithm::AES256, sk, &subkey).unwrap();
    let mut out = Vec::new();
    Packet::PKESK(PKESK::V3(pkesk)).serialize(&mut out).unwrap();
    out.extend_from_slice(data_packet);
    out
}

fn seipd_v1(id: &GatewayIdentity, mdc: Mdc) -> Vec<u8> {
    let sk = SessionKey::from(&random(32)[..]);
    let mut prefix = random(16);
    prefix.extend_from_within(14..16);
    let mut plain = prefix;
    plain.extend_from_slice(&literal(SECRET));
    match mdc {
        Mdc::Missing => {}
        Mdc::Good | Mdc::Broken => {
            plain.extend_from_slice(&[0xD3, 0x14]);
            let mut h = HashAlgorithm::SHA1.context().unwrap().for_digest();
            h.update(&plain);
            let mut digest = h.into_digest().unwrap();
            if matches!(mdc, Mdc::Broken) {
                digest[7] ^= 0x01;
            }
            plain.extend_from_slice(&digest);
        }
    }
    let mut body = vec![1u8];
    body.extend_from_slice(&cfb(&sk, &plain));
    message(id, &sk, &packet(18, &body))
}

fn sed(id: &GatewayIdentity) -> Vec<u8> {
    let sk = SessionKey::from(&random(32)[..]);
    let mut plain = random(16);
    plain.extend_from_within(14..16);
    plain.extend_from_slice(&literal(SECRET));
    message(id, &sk, &packet(9, &cfb(&sk, &plain)))
}

#[test]
fn seipd_v1_needs_a_valid_mdc_and_sed_is_refused() {
    for id in [&gateways().rsa, &gateways().p256] {
        // The construction itself is sound: with a good MDC it decrypts.
        let good = seipd_v1(id, Mdc::Good);
        let d = decrypt(
            id,
            &pgp_mime("a@example.org", &armor(&good)),
            &[],
            &Limits::default(),
        )
        .unwrap();
        assert!(find(&d.message, b"EFAIL-CANARY").is_some());

        assert_refused(id, &seipd_v1(id, Mdc::Missing), "SEIPD v1 without MDC");
        assert_refused(id, &seipd_v1(id, Mdc::Broken), "SEIPD v1 with a broken MDC");
        assert_refused(id, &sed(id), "SED");
        // A flipped ciphertext byte (the CFB malleability Efail uses).
        let mut flipped = good.clone();
        let n = flipped.len();
        flipped[n - 30] ^= 0x40;
        assert_refused(id, &flipped, "SEIPD v1 with a modified ciphertext");
    }
}

fn is_seipd_v2(binary: &[u8]) -> bool {
    let mut ppr = openpgp::parse::PacketParser::from_bytes(binary).unwrap();
    while let PacketParserResult::Some(pp) = ppr {
        if let Packet::SEIP(s) = &pp.packet {
            return s.version() == 2;
        }
        ppr = pp.next().unwrap().1;
    }
    false
}

fn dearmor(armored: &[u8]) -> Vec<u8> {
    let mut r = openpgp::armor::Reader::from_bytes(
        armored,
        openpgp::armor::ReaderMode::Tolerant(Some(openpgp::armor::Kind::Message)),
    );
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut out).unwrap();
    out
}

#[test]
fn seipd_v2_with_flipped_tag_or_chunk_is_refused() {
    for id in [&gateways().rsa, &gateways().p384] {
        // The gateway advertises SEIPD v2, so the engine's encryptor uses it.
        let out = encrypt(
            &[b"Subject: v2\r\n".as_slice(), SECRET].concat(),
            &[id.cert().clone()],
            None,
            EncryptOptions::new(),
            &Limits::default(),
        )
        .unwrap();
        let binary = dearmor(&armored_block(&out, "MESSAGE"));
        assert!(is_seipd_v2(&binary), "expected SEIPD v2");
        let d = decrypt(id, &out, &[], &Limits::default()).unwrap();
        assert!(find(&d.message, b"EFAIL-CANARY").is_some());

        let n = binary.len();
        let mut tag = binary.clone();
        tag[n - 1] ^= 0x01;
        assert_refused(id, &tag, "SEIPD v2 with a flipped final tag");
        let mut chunk = binary.clone();
        chunk[n - 40] ^= 0x01;
        assert_refused(id, &chunk, "SEIPD v2 with a flipped chunk byte");
    }
}

#[test]
fn v6_and_v4_recipients_choose_the_packet_version() {
    use openpgp::Profile;
    use openpgp::cert::{CertBuilder, CipherSuite};
    let (v6, _) = CertBuilder::general_purpose(Some("V6 <v6@example.org>"))
        .set_cipher_suite(CipherSuite::Cv25519)
        .set_profile(Profile::RFC9580)
        .unwrap()
        .generate()
        .unwrap();
    assert_eq!(v6.primary_key().key().version(), 6);
    let v6 = v6.strip_secret_key_material();
    let msg = b"Subject: hi\r\nContent-Type: text/plain\r\n\r\nhi\r\n";
    let lim = Limits::default();
    let both_v2 = encrypt(
        msg,
        &[v6.clone(), gateways().rsa.cert().clone()],
        None,
        EncryptOptions::new(),
        &lim,
    )
    .unwrap();
    assert!(is_seipd_v2(&dearmor(&armored_block(&both_v2, "MESSAGE"))));
    let d = decrypt(&gateways().rsa, &both_v2, &[], &lim).unwrap();
    assert!(find(&d.message, b"hi").is_some());
    // A gpg 2.2 recipient does not advertise SEIPD v2: everyone gets v1 + MDC.
    let mixed = encrypt(
        msg,
        &[v6, peers().alice.clone()],
        None,
        EncryptOptions::new(),
        &lim,
    )
    .unwrap();
    let block = armored_block(&mixed, "MESSAGE");
    assert!(!is_seipd_v2(&dearmor(&block)));
    assert!(find(&gpg_ok(&["--decrypt"], &block), b"hi").is_some());
}
