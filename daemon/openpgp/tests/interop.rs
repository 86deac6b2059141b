//! The OpenPGP engine against real peers, both ways: GnuPG 2.2 (`gpg`) and
//! Sequoia's `sq` (0.27, Debian 12), with the gateway's keys on a SoftHSM2
//! token. Run by `scripts/test-openpgp`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cloned_ref_to_slice_refs
)]

mod common;

use common::*;
use sealgate_openpgp::{
    EncryptOptions, Error, Format, GatewayIdentity, Limits, Verdict, decrypt, encrypt, sign, verify,
};

#[test]
fn gateway_certificate_persists_and_exports() {
    let hsm = hsm();
    for id in gateways_all() {
        let fpr = id.cert().fingerprint();
        // Reloading from disk and the token gives the same identity.
        let dir = scratch_dir().join(match id.cert().primary_key().key().pk_algo() {
            sequoia_openpgp::types::PublicKeyAlgorithm::RSAEncryptSign => "rsa",
            _ if id.cert().primary_key().key().mpis().bits() == Some(256) => "p256",
            _ => "p384",
        });
        let again = GatewayIdentity::load(&hsm, &dir).unwrap();
        assert_eq!(again.cert().fingerprint(), fpr);
        // gpg imports the export and sees a certify/sign primary and an encryption subkey.
        let imported = gpg_import_gateway(id);
        let listing =
            String::from_utf8(gpg_ok(&["--with-colons", "--list-keys", &imported], b"")).unwrap();
        // Field 12 holds the key's own capabilities in lower case.
        let caps = |prefix: &str| -> Vec<String> {
            listing
                .lines()
                .filter(|l| l.starts_with(prefix))
                .map(|l| {
                    l.split(':')
                        .nth(11)
                        .unwrap_or("")
                        .chars()
                        .filter(|c| c.is_lowercase())
                        .collect()
                })
                .collect()
        };
        assert!(
            caps("pub:")
                .iter()
                .any(|c| c.contains('s') && c.contains('c')),
            "{listing}"
        );
        assert!(caps("sub:").iter().any(|c| c == "e"), "{listing}");
        // sq reads the binary export too.
        let f = file("gw.pgp", &id.export_binary().unwrap());
        let inspect = String::from_utf8(sq_ok(&["inspect", s(&f)], b"")).unwrap();
        assert!(inspect.contains("gateway@gateway.test"), "{inspect}");
    }
}

#[test]
fn rotation_keeps_old_subkey_for_decryption() {
    let hsm = hsm();
    let dir = scratch_dir().join("rotate");
    let tag = scratch_dir()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let mut id = GatewayIdentity::create(
        &hsm,
        &dir,
        &sealgate_openpgp::GatewaySpec {
            user_id: "Rotate <rotate@gateway.test>".into(),
            algorithm: sealgate_openpgp::GatewayAlgorithm::P256,
            label_prefix: format!("{tag}-rotate"),
        },
    )
    .unwrap();
    let fpr = id.cert().fingerprint();
    let old = encrypt(
        INNER,
        &[id.cert().clone()],
        None,
        EncryptOptions::new(),
        &Limits::default(),
    )
    .unwrap();
    // Stay in another second so the new subkey is the newer one.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    id.rotate(&hsm).unwrap();
    assert_eq!(
        id.cert().fingerprint(),
        fpr,
        "rotation must keep the primary"
    );
    assert_eq!(id.cert().keys().subkeys().count(), 2);
    let id = GatewayIdentity::load(&hsm, &dir).unwrap();
    let new = encrypt(
        INNER,
        &[id.cert().clone()],
        None,
        EncryptOptions::new(),
        &Limits::default(),
    )
    .unwrap();
    for m in [old, new] {
        let d = decrypt(&id, &m, &[], &Limits::default()).unwrap();
        assert!(find(&d.message, b"Second line.").is_some());
    }
}

#[test]
fn gpg_encrypts_to_gateway_pgp_mime_and_inline() {
    for id in gateways_all() {
        let fpr = gpg_import_gateway(id);
        let armored = gpg_ok(&["--armor", "--encrypt", "--recipient", &fpr], INNER);
        let d = decrypt(
            id,
            &pgp_mime("alice@example.org", &armored),
            &[],
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(d.format, Format::PgpMime);
        assert_inner(&d.message);
        assert_eq!(d.verdict, Verdict::Unsigned);

        let armored = gpg_ok(
            &["--armor", "--encrypt", "--recipient", &fpr],
            b"inline secret\n",
        );
        let d = decrypt(
            id,
            &inline("alice@example.org", &armored),
            &[],
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(d.format, Format::Inline);
        let text = String::from_utf8_lossy(&d.message).to_string();
        assert!(!text.contains("BEGIN PGP MESSAGE"), "{text}");
        let parsed = mail_parser::MessageParser::default()
            .parse(&d.message[..])
            .unwrap();
        let body = parsed.body_text(0).unwrap();
        assert!(body.contains("inline secret"), "{body}");
        assert!(body.contains("Hello,") && body.contains("Bye"), "{body}");
    }
}

#[test]
fn gpg_sign_and_encrypt_is_verified_on_decrypt() {
    let p = peers();
    let id = &gateways().rsa;
    let fpr = gpg_import_gateway(id);
    let armored = gpg_ok(
        &[
            "--armor",
            "--sign",
            "--local-user",
            &p.alice_fpr,
            "--encrypt",
            "--recipient",
            &fpr,
        ],
        INNER,
    );
    let m = pgp_mime("Alice <alice@example.org>", &armored);
    let d = decrypt(id, &m, &[p.alice.clone()], &Limits::default()).unwrap();
    assert_inner(&d.message);
    assert!(
        matches!(d.verdict, Verdict::Valid { .. }),
        "{:?}",
        d.verdict
    );
    // Someone else's From: the signature does not bind.
    let m = pgp_mime("mallory@example.org", &armored);
    let d = decrypt(id, &m, &[p.alice.clone()], &Limits::default()).unwrap();
    assert!(
        matches!(d.verdict, Verdict::SignerMismatch { .. }),
        "{:?}",
        d.verdict
    );
}

#[test]
fn gateway_encrypts_for_gpg_rsa_and_ec() {
    let p = peers();
    let gw = &gateways().rsa;
    let msg = message("gateway@gateway.test", INNER);
    // One recipient each, then both at once, then signed by the gateway.
    for recipients in [
        vec![p.alice.clone()],
        vec![p.carol.clone()],
        vec![p.alice.clone(), p.carol.clone()],
    ] {
        let out = encrypt(
            &msg,
            &recipients,
            None,
            EncryptOptions::new(),
            &Limits::default(),
        )
        .unwrap();
        assert!(find(&out, b"multipart/encrypted").is_some());
        let block = armored_block(&out, "MESSAGE");
        let plain = gpg_ok(&["--decrypt"], &block);
        assert_eq!(plain, INNER);
    }
    gpg_import_gateway(gw);
    let out = encrypt(
        &msg,
        &[p.alice.clone()],
        Some(gw),
        EncryptOptions::new().sign(true),
        &Limits::default(),
    )
    .unwrap();
    let block = armored_block(&out, "MESSAGE");
    let status = gpg(&["--status-fd", "2", "--decrypt"], &block);
    assert!(status.status.success());
    let err = String::from_utf8_lossy(&status.stderr);
    assert!(err.contains("GOODSIG"), "{err}");
    assert_eq!(status.stdout, INNER);
    // Inline, per recipient.
    let text = message(
        "gateway@gateway.test",
        b"Content-Type: text/plain\r\n\r\nplain text body\r\n",
    );
    let out = encrypt(
        &text,
        &[p.carol.clone()],
        None,
        EncryptOptions::new().inline(true),
        &Limits::default(),
    )
    .unwrap();
    let plain = gpg_ok(&["--decrypt"], &armored_block(&out, "MESSAGE"));
    assert_eq!(plain, b"plain text body\r\n");
}

/// gpg and sq both verify the gateway's `multipart/signed` message.
fn peers_verify(id: &GatewayIdentity, signed: &[u8]) {
    let data = file("signed", &part(signed, 0));
    let sig = file("sig.asc", &armored_block(signed, "SIGNATURE"));
    let out = gpg(&["--verify", s(&sig), s(&data)], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert = file("gw.cert", &id.export_binary().unwrap());
    sq_ok(
        &[
            "verify",
            "--signer-cert",
            s(&cert),
            "--detached",
            s(&sig),
            s(&data),
        ],
        b"",
    );
}

#[test]
fn gateway_signatures_verify_in_gpg_and_sq() {
    for id in gateways_all() {
        gpg_import_gateway(id);
        let msg = message("gateway@gateway.test", INNER);
        let signed = sign(id, &msg, &Limits::default()).unwrap();
        let text = String::from_utf8_lossy(&signed).to_string();
        let want_micalg = if id.cert().primary_key().key().mpis().bits() == Some(384) {
            "micalg=pgp-sha384"
        } else {
            "micalg=pgp-sha256"
        };
        assert!(text.contains(want_micalg), "{text}");
        peers_verify(id, &signed);
        // The 8-bit body went out 7-bit.
        assert!(part(&signed, 0).iter().all(|b| *b < 0x80));
        // And we accept our own.
        let v = verify(&signed, &[id.cert().clone()], &Limits::default()).unwrap();
        assert!(matches!(v, Verdict::Valid { .. }), "{v:?}");
    }
}

/// A multipart/mixed body with an 8-bit UTF-8 text part and an 8-bit
/// attachment is re-encoded to 7-bit before signing (RFC 3156 §3): gpg and
/// sq accept the signature, and every part decodes to what was sent.
#[test]
fn gateway_signs_multipart_with_8bit_parts() {
    use mail_parser::MimeHeaders as _;
    let text = "Grüße aus Köln — ünïcödé\r\nFrom the gateway\r\n.\r\nline with trailing space \r\n";
    let attachment: Vec<u8> = (1u8..=255)
        .filter(|b| *b != b'\r' && *b != b'\n')
        .cycle()
        .take(3000)
        .enumerate()
        .flat_map(|(i, b)| {
            if i % 500 == 499 {
                vec![b, b'\r', b'\n']
            } else {
                vec![b]
            }
        })
        .collect();
    let mut body = format!(
        "Content-Type: multipart/mixed; boundary=\"mm\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         --mm\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         {text}\r\n--mm\r\nContent-Type: application/octet-stream; name=\"blob.bin\"\r\n\
         Content-Disposition: attachment; filename=\"blob.bin\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&attachment);
    body.extend_from_slice(b"\r\n--mm--\r\n");
    let msg = message("gateway@gateway.test", &body);
    for id in [&gateways().rsa, &gateways().p256] {
        gpg_import_gateway(id);
        let signed = sign(id, &msg, &Limits::default()).unwrap();
        let entity = part(&signed, 0);
        assert!(entity.iter().all(|b| *b < 0x80), "signed part is not 7-bit");
        peers_verify(id, &signed);
        let v = verify(&signed, &[id.cert().clone()], &Limits::default()).unwrap();
        assert!(matches!(v, Verdict::Valid { .. }), "{v:?}");
        // The decoded content is unchanged.
        let parsed = mail_parser::MessageParser::default()
            .parse(&entity)
            .unwrap();
        let leaves: Vec<_> = parsed
            .parts
            .iter()
            .filter(|p| p.sub_parts().is_none())
            .collect();
        assert_eq!(leaves.len(), 2);
        assert_eq!(leaves[0].text_contents(), Some(text));
        assert_eq!(leaves[1].contents(), &attachment[..]);
        assert_eq!(leaves[1].attachment_name(), Some("blob.bin"));
    }
}

#[test]
fn gpg_signatures_verify_with_verdicts() {
    let p = peers();
    let entity = b"Content-Type: text/plain\r\n\r\nsigned by alice\r\n";
    let sig = gpg_ok(
        &["--armor", "--detach-sign", "--local-user", &p.alice_fpr],
        entity,
    );
    let lim = Limits::default();
    let m = signed_message("Alice <alice@example.org>", entity, &sig, "pgp-sha256");
    let v = verify(&m, &[p.alice.clone()], &lim).unwrap();
    assert!(matches!(v, Verdict::Valid { .. }), "{v:?}");
    // Unknown key, not in the mail: cannot be checked, which is not "bad".
    let v = verify(&m, &[], &lim).unwrap();
    assert!(
        matches!(&v, Verdict::UnknownSigner { issuer } if !issuer.is_empty()),
        "{v:?}"
    );
    // Wrong sender.
    let m2 = signed_message("bob@example.org", entity, &sig, "pgp-sha256");
    let v = verify(&m2, &[p.alice.clone()], &lim).unwrap();
    assert!(matches!(v, Verdict::SignerMismatch { .. }), "{v:?}");
    // Tampered content.
    let m3 = signed_message(
        "alice@example.org",
        b"Content-Type: text/plain\r\n\r\nsigned by alicf\r\n",
        &sig,
        "pgp-sha256",
    );
    let v = verify(&m3, &[p.alice.clone()], &lim).unwrap();
    assert!(matches!(v, Verdict::Invalid { .. }), "{v:?}");
    // Inline cleartext signature, EC key.
    let clear = gpg_ok(
        &["--clearsign", "--local-user", &p.carol_fpr],
        b"inline signed text\n",
    );
    let m4 = inline("carol@example.org", &clear);
    let v = verify(&m4, &[p.carol.clone()], &lim).unwrap();
    // The message has text around the block: not fully signed.
    assert_eq!(v, Verdict::NotFullySigned);
    let mut only = b"From: carol@example.org\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    only.extend_from_slice(&clear);
    let v = verify(&only, &[p.carol.clone()], &lim).unwrap();
    assert!(matches!(v, Verdict::Valid { .. }), "{v:?}");
}

#[test]
fn key_material_from_mail() {
    let p = peers();
    let entity = b"Content-Type: text/plain\r\n\r\nwith autocrypt\r\n";
    let sig = gpg_ok(
        &["--armor", "--detach-sign", "--local-user", &p.alice_fpr],
        entity,
    );
    let keydata = {
        use base64::Engine as _;
        let raw = gpg_ok(&["--export", &p.alice_fpr], b"");
        base64::engine::general_purpose::STANDARD.encode(raw)
    };
    let mut m =
        format!("Autocrypt: addr=alice@example.org; prefer-encrypt=mutual; keydata={keydata}\r\n")
            .into_bytes();
    m.extend_from_slice(&signed_message(
        "alice@example.org",
        entity,
        &sig,
        "pgp-sha256",
    ));
    let certs = sealgate_openpgp::harvest(&m, &Limits::default()).unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].fingerprint(), p.alice.fingerprint());
    // Signed by a key that came with the mail only.
    let v = verify(&m, &[], &Limits::default()).unwrap();
    assert!(matches!(v, Verdict::ValidUnknownKey { .. }), "{v:?}");
    // Attached application/pgp-keys part from sq.
    let bob = std::fs::read(&p.bob_cert_file).unwrap();
    let mut m = b"From: bob@example.org\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"kk\"\r\n\r\n--kk\r\nContent-Type: text/plain\r\n\r\nmy key\r\n\
        --kk\r\nContent-Type: application/pgp-keys\r\n\r\n"
        .to_vec();
    m.extend_from_slice(&bob);
    m.extend_from_slice(b"\r\n--kk--\r\n");
    let certs = sealgate_openpgp::harvest(&m, &Limits::default()).unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].fingerprint(), p.bob.fingerprint());
}

/// GnuPG's `--include-key-block` (Key Block subpacket, tag 38): the signer's
/// certificate is harvested from a detached and from a cleartext signature,
/// and verification finds the signer as an unknown key; a key block holding
/// an expired or SHA-1 self-signed certificate yields nothing.
#[test]
fn key_block_in_gpg_signatures_is_harvested() {
    let p = peers();
    let lim = Limits::default();
    let entity = b"Content-Type: text/plain\r\n\r\nwith a key block\r\n";
    let detached = gpg_ok(
        &[
            "--armor",
            "--detach-sign",
            "--include-key-block",
            "--local-user",
            &p.alice_fpr,
        ],
        entity,
    );
    let m = signed_message("alice@example.org", entity, &detached, "pgp-sha256");
    let certs = sealgate_openpgp::harvest(&m, &lim).unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].fingerprint(), p.alice.fingerprint());
    let v = verify(&m, &[], &lim).unwrap();
    assert!(matches!(v, Verdict::ValidUnknownKey { .. }), "{v:?}");
    // Without the option there is nothing to harvest.
    let plain = gpg_ok(
        &["--armor", "--detach-sign", "--local-user", &p.alice_fpr],
        entity,
    );
    let m = signed_message("alice@example.org", entity, &plain, "pgp-sha256");
    assert!(sealgate_openpgp::harvest(&m, &lim).unwrap().is_empty());
    // Cleartext signature inline.
    let clear = gpg_ok(
        &[
            "--clearsign",
            "--include-key-block",
            "--local-user",
            &p.alice_fpr,
        ],
        b"inline text\n",
    );
    let certs = sealgate_openpgp::harvest(&inline("alice@example.org", &clear), &lim).unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].fingerprint(), p.alice.fingerprint());
    // Keys the standard policy refuses, made and used in 2020.
    let then = ["--faked-system-time", "20200101T000000!"];
    for (uid, extra, expires) in [
        ("Expired <kb-expired@example.org>", None, "1d"),
        (
            "Sha1 <kb-sha1@example.org>",
            Some(["--cert-digest-algo", "SHA1"]),
            "never",
        ),
    ] {
        let mut args = then.to_vec();
        args.extend(extra.iter().flatten());
        args.extend(["--quick-gen-key", uid, "rsa2048", "default", expires]);
        gpg_ok(&args, b"");
        let fpr = gpg_fpr(uid);
        let mut args = then.to_vec();
        args.extend([
            "--armor",
            "--detach-sign",
            "--include-key-block",
            "--local-user",
            &fpr,
        ]);
        let sig = gpg_ok(&args, entity);
        let m = signed_message("x@example.org", entity, &sig, "pgp-sha256");
        assert!(
            sealgate_openpgp::harvest(&m, &lim).unwrap().is_empty(),
            "{uid}"
        );
    }
}

/// A message signed with `signer` (its Key Block subpacket holding
/// `key_block`, a binary certificate) and encrypted for `id`, armored,
/// made with Sequoia: GnuPG cannot put a key block other than the signer's
/// own into a signature.
fn signed_encrypted_with_key_block(
    id: &GatewayIdentity,
    signer: &sealgate_openpgp::Cert,
    key_block: &[u8],
) -> Vec<u8> {
    use sealgate_openpgp::openpgp::packet::signature::SignatureBuilder;
    use sealgate_openpgp::openpgp::packet::signature::subpacket::{
        Subpacket, SubpacketTag, SubpacketValue,
    };
    use sealgate_openpgp::openpgp::policy::StandardPolicy;
    use sealgate_openpgp::openpgp::serialize::stream::{
        Armorer, Encryptor, LiteralWriter, Message, Signer,
    };
    use sealgate_openpgp::openpgp::types::SignatureType;
    use std::io::Write as _;
    let policy = StandardPolicy::new();
    let keypair = signer
        .keys()
        .unencrypted_secret()
        .with_policy(&policy, None)
        .for_signing()
        .next()
        .unwrap()
        .key()
        .clone()
        .into_keypair()
        .unwrap();
    let mut body = vec![0u8];
    body.extend_from_slice(key_block);
    let template = SignatureBuilder::new(SignatureType::Binary)
        .modify_hashed_area(|mut a| {
            a.add(Subpacket::new(
                SubpacketValue::Unknown {
                    tag: SubpacketTag::Reserved(38),
                    body,
                },
                false,
            )?)?;
            Ok(a)
        })
        .unwrap();
    let recipients: Vec<_> = id
        .cert()
        .keys()
        .with_policy(&policy, None)
        .supported()
        .for_transport_encryption()
        .collect();
    let mut out = Vec::new();
    let m = Message::new(&mut out);
    let m = Armorer::new(m).build().unwrap();
    let m = Encryptor::for_recipients(m, recipients).build().unwrap();
    let m = Signer::with_template(m, keypair, template)
        .unwrap()
        .build()
        .unwrap();
    let mut m = LiteralWriter::new(m).build().unwrap();
    m.write_all(INNER).unwrap();
    m.finalize().unwrap();
    out
}

/// GnuPG's `--sign --encrypt --include-key-block` to the gateway: the Key
/// Block of the signature inside the encryption is taken (PGP/MIME and
/// inline), and the signature verifies against it as an unknown key;
/// without the option nothing is carried; a key block holding someone
/// else's certificate is not taken.
#[test]
fn key_block_inside_encrypted_mail_is_carried() {
    let p = peers();
    let lim = Limits::default();
    let id = &gateways().rsa;
    let fpr = gpg_import_gateway(id);
    let sign_encrypt = |key_block: bool, body: &[u8]| {
        let mut args = vec!["--armor", "--sign", "--local-user", &p.alice_fpr];
        if key_block {
            args.push("--include-key-block");
        }
        args.extend(["--encrypt", "--recipient", &fpr]);
        gpg_ok(&args, body)
    };
    let from = "Alice <alice@example.org>";
    let armored = sign_encrypt(true, INNER);
    let inline_armored = sign_encrypt(true, b"inline with a key block\n");
    for (m, format) in [
        (pgp_mime(from, &armored), Format::PgpMime),
        (inline(from, &inline_armored), Format::Inline),
    ] {
        let d = decrypt(id, &m, &[], &lim).unwrap();
        assert_eq!(d.format, format);
        assert_eq!(d.carried_certs.len(), 1, "{format:?}");
        assert_eq!(d.carried_certs[0].fingerprint(), p.alice.fingerprint());
        assert!(
            matches!(&d.verdict, Verdict::ValidUnknownKey { signer } if *signer == p.alice_fpr),
            "{format:?}: {:?}",
            d.verdict
        );
        // Known to the caller: the caller's certificate decides, not the block.
        let d = decrypt(id, &m, &[p.alice.clone()], &lim).unwrap();
        assert!(
            matches!(d.verdict, Verdict::Valid { .. }),
            "{:?}",
            d.verdict
        );
    }
    // Someone else's From: carried, but the signature does not bind.
    let d = decrypt(id, &pgp_mime("mallory@example.org", &armored), &[], &lim).unwrap();
    assert_eq!(d.carried_certs.len(), 1);
    assert!(
        matches!(d.verdict, Verdict::SignerMismatch { .. }),
        "{:?}",
        d.verdict
    );
    // Without --include-key-block: nothing carried, no certificate to
    // check: an unknown signer, not an invalid signature ...
    let plain = sign_encrypt(false, INNER);
    let d = decrypt(id, &pgp_mime(from, &plain), &[], &lim).unwrap();
    assert!(d.carried_certs.is_empty());
    assert!(
        matches!(d.verdict, Verdict::UnknownSigner { .. }),
        "{:?}",
        d.verdict
    );
    // ... and valid when the caller knows the signer (the directory).
    let d = decrypt(id, &pgp_mime(from, &plain), &[p.alice.clone()], &lim).unwrap();
    assert!(
        matches!(d.verdict, Verdict::Valid { .. }),
        "{:?}",
        d.verdict
    );
    // A key block holding a certificate other than the signer's.
    use sealgate_openpgp::openpgp::cert::CertBuilder;
    use sealgate_openpgp::openpgp::serialize::Serialize as _;
    let (mallory, _) = CertBuilder::general_purpose(Some("Mallory <mallory@example.org>"))
        .generate()
        .unwrap();
    let mut own = Vec::new();
    mallory.serialize(&mut own).unwrap();
    let mut alices = Vec::new();
    p.alice.serialize(&mut alices).unwrap();
    let from = "Mallory <mallory@example.org>";
    // The same construction with the signer's own certificate is taken ...
    let m = pgp_mime(from, &signed_encrypted_with_key_block(id, &mallory, &own));
    let d = decrypt(id, &m, &[], &lim).unwrap();
    assert_eq!(d.carried_certs.len(), 1);
    assert_eq!(d.carried_certs[0].fingerprint(), mallory.fingerprint());
    assert!(
        matches!(d.verdict, Verdict::ValidUnknownKey { .. }),
        "{:?}",
        d.verdict
    );
    // ... and with someone else's it is not.
    let m = pgp_mime(
        from,
        &signed_encrypted_with_key_block(id, &mallory, &alices),
    );
    let d = decrypt(id, &m, &[], &lim).unwrap();
    assert!(d.carried_certs.is_empty(), "{:?}", d.carried_certs);
    assert!(
        matches!(d.verdict, Verdict::UnknownSigner { .. }),
        "{:?}",
        d.verdict
    );
}

#[test]
fn sq_both_ways() {
    let p = peers();
    for id in gateways_all() {
        let gw = file("gw.cert", &id.export_binary().unwrap());
        let armored = sq_ok(&["encrypt", "--recipient-cert", s(&gw)], INNER);
        let d = decrypt(
            id,
            &pgp_mime("bob@example.org", &armored),
            &[],
            &Limits::default(),
        )
        .unwrap();
        assert_inner(&d.message);
        // Signed by bob's sq key.
        let armored = sq_ok(
            &[
                "encrypt",
                "--recipient-cert",
                s(&gw),
                "--signer-key",
                s(&p.bob_key),
            ],
            b"inline from sq\n",
        );
        let d = decrypt(
            id,
            &inline("bob@example.org", &armored),
            &[p.bob.clone()],
            &Limits::default(),
        )
        .unwrap();
        assert!(
            matches!(d.verdict, Verdict::Valid { .. }),
            "{:?}",
            d.verdict
        );
        // Our signature, sq verifies.
        let signed = sign(
            id,
            &message("gateway@gateway.test", INNER),
            &Limits::default(),
        )
        .unwrap();
        let data = file("signed", &part(&signed, 0));
        let sig = file("sig.asc", &armored_block(&signed, "SIGNATURE"));
        sq_ok(
            &[
                "verify",
                "--signer-cert",
                s(&gw),
                "--detached",
                s(&sig),
                s(&data),
            ],
            b"",
        );
    }
    // We encrypt (and sign) to bob's Cv25519 key; sq decrypts and checks.
    let gw = &gateways().p256;
    let gw_cert = file("gw.cert", &gw.export_binary().unwrap());
    let out = encrypt(
        &message("gateway@gateway.test", INNER),
        &[p.bob.clone()],
        Some(gw),
        EncryptOptions::new().sign(true),
        &Limits::default(),
    )
    .unwrap();
    let ct = file("ct.asc", &armored_block(&out, "MESSAGE"));
    let plain = sq_ok(
        &[
            "decrypt",
            "--recipient-key",
            s(&p.bob_key),
            "--signer-cert",
            s(&gw_cert),
            s(&ct),
        ],
        b"",
    );
    assert_eq!(plain, INNER);
    // sq's detached signature, we verify.
    let entity = b"Content-Type: text/plain\r\n\r\nsigned by bob with sq\r\n";
    let sig = sq_ok(
        &["sign", "--detached", "--signer-key", s(&p.bob_key)],
        entity,
    );
    let m = signed_message("bob@example.org", entity, &sig, "pgp-sha512");
    let v = verify(&m, &[p.bob.clone()], &Limits::default()).unwrap();
    assert!(matches!(v, Verdict::Valid { .. }), "{v:?}");
}

#[test]
fn unusable_recipients_are_refused() {
    let p = peers();
    // A revoked gpg key.
    let (_, fpr) = {
        gpg_ok(
            &[
                "--quick-gen-key",
                "Rev <rev@example.org>",
                "rsa2048",
                "default",
                "never",
            ],
            b"",
        );
        let l = String::from_utf8(gpg_ok(
            &["--with-colons", "--list-keys", "rev@example.org"],
            b"",
        ))
        .unwrap();
        let f = l
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .unwrap()
            .split(':')
            .nth(9)
            .unwrap()
            .to_owned();
        ((), f)
    };
    let home = gnupghome();
    let rev = std::fs::read(home.join("openpgp-revocs.d").join(format!("{fpr}.rev"))).unwrap();
    // gpg prefixes the certificate with a colon to prevent accidental import.
    let rev = String::from_utf8(rev)
        .unwrap()
        .replace(":-----BEGIN", "-----BEGIN");
    gpg_ok(&["--import"], rev.as_bytes());
    use sequoia_openpgp::parse::Parse as _;
    let revoked = sealgate_openpgp::Cert::from_bytes(&gpg_ok(&["--export", &fpr], b"")).unwrap();
    let e = encrypt(
        b"Subject: x\r\n\r\nx\r\n",
        &[revoked],
        None,
        EncryptOptions::new(),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::UnusableCert { .. }), "{e}");
    // A sign-only certificate (alice without her subkey).
    let sign_only = p.alice.clone().retain_subkeys(|_| false);
    let e = encrypt(
        b"Subject: x\r\n\r\nx\r\n",
        &[sign_only],
        None,
        EncryptOptions::new(),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::UnusableCert { .. }), "{e}");
}

#[test]
fn sha1_self_signatures_are_refused_whatever_their_date() {
    // gpg makes a key dated 2020 with SHA-1 self-signatures; harvesting and
    // encryption refuse it (and say what the plain standard policy thinks).
    gpg_ok(
        &[
            "--faked-system-time",
            "20200101T000000!",
            "--cert-digest-algo",
            "SHA1",
            "--quick-gen-key",
            "Old <old@example.org>",
            "rsa2048",
            "default",
            "never",
        ],
        b"",
    );
    let fpr = gpg_fpr("old@example.org");
    let old = gpg_ok(&["--export", &fpr], b"");
    use sequoia_openpgp::parse::Parse as _;
    let cert = sealgate_openpgp::Cert::from_bytes(&old).unwrap();
    let plain = sequoia_openpgp::policy::StandardPolicy::new();
    eprintln!(
        "SHA-1 self-signed 2020 key under the plain standard policy: {:?}",
        cert.with_policy(&plain, None).map(|_| ())
    );
    assert!(
        sealgate_openpgp::parse_certs(&old, &Limits::default())
            .unwrap()
            .is_empty()
    );
    let e = encrypt(
        b"Subject: x\r\n\r\nx\r\n",
        &[cert],
        None,
        EncryptOptions::new(),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::UnusableCert { .. }), "{e}");
}

#[test]
fn inline_block_inside_multipart_is_decrypted_in_place() {
    let id = &gateways().p256;
    let fpr = gpg_import_gateway(id);
    let armored = gpg_ok(
        &["--armor", "--encrypt", "--recipient", &fpr],
        b"part secret\n",
    );
    let mut m = b"From: alice@example.org\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"mm\"\r\n\r\n\
        --mm\r\nContent-Type: text/plain\r\n\r\n"
        .to_vec();
    m.extend_from_slice(&armored);
    m.extend_from_slice(
        b"\r\n--mm\r\nContent-Type: application/octet-stream\r\n\
          Content-Transfer-Encoding: base64\r\n\r\nAAECAwQF\r\n--mm--\r\n",
    );
    let d = decrypt(id, &m, &[], &Limits::default()).unwrap();
    assert_eq!(d.format, Format::Inline);
    let parsed = mail_parser::MessageParser::default()
        .parse(&d.message[..])
        .unwrap();
    let body = parsed.body_text(0).unwrap();
    assert!(body.contains("part secret"), "{body}");
    let attachment = parsed.attachment(0).unwrap();
    assert_eq!(attachment.contents(), &[0u8, 1, 2, 3, 4, 5]);
}
