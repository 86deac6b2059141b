"""S/MIME ciphers by capability and integrity of mail for the gateway,
against OpenSSL as the peer on both sides:

- `smime.cipher.<domain> = "gcm"`: the recipient's copy is
  AuthEnvelopedData with AES-256-GCM, which `openssl cms -decrypt` opens;
  without the setting (and without announced GCM capabilities) it stays
  EnvelopedData with AES-256-CBC, which every client reads.
- `smime.refuse_unprotected`: mail encrypted for the gateway with CBC and
  not signed inside is refused with a failure notice naming the setting;
  the same content signed inside, or sealed with AES-GCM, is delivered."""

import re
import subprocess

from smtp_conftest import send_message, wait_outbox
from test_directory import decrypt_cms, make_cert
from test_policy import SENDER, envelope_to
from test_unwrap import provisioned_gateway


def cms_print(tmp_path, raw: bytes) -> str:
    """`openssl cms -cmsout -print` of an S/MIME message: its structure as
    OpenSSL reads it."""
    src = tmp_path / "print.eml"
    src.write_bytes(raw)
    return subprocess.run(["openssl", "cms", "-cmsout", "-print", "-in", str(src)],
                          capture_output=True, check=True, text=True).stdout


def secure_mail(subject: str, body: str) -> str:
    return f"From: {SENDER}\r\nTo: bob@ext.example\r\nSubject: [secure] {subject}\r\n\r\n{body}\r\n"


def copy_for(gw, rcpt: str, marker: bytes) -> bytes:
    got = wait_outbox(gw, lambda m: any(rcpt in envelope_to(x) and marker in x for x in m))
    return [x for x in got if rcpt in envelope_to(x) and marker in x][0]


def test_a_domain_set_to_gcm_gets_auth_enveloped_data_openssl_opens(tmp_path):
    gw = provisioned_gateway(tmp_path, {"smime": {"cipher": {"ext.example": "gcm"}}})
    gw.start()
    try:
        gw.cli("directory", "import", make_cert(tmp_path, "bob", "bob@ext.example"))
        gw.cli("directory", "import", make_cert(tmp_path, "dora", "dora@other.example"))
        send_message(gw.port, SENDER, ["bob@ext.example"], secure_mail("gcm", "sealed with gcm"))
        bob = copy_for(gw, "bob@ext.example", b"Subject: gcm")
        assert re.search(rb"(?im)^Content-Type: application/pkcs7-mime;.*smime-type=authEnveloped-data", bob), bob[:400]
        printed = cms_print(tmp_path, bob)
        assert "id-smime-ct-authEnvelopedData" in printed and "aes-256-gcm" in printed, printed[:800]
        assert b"sealed with gcm" in decrypt_cms(tmp_path, bob, "bob")
        # Another domain, no setting, no announced capabilities: CBC.
        send_message(gw.port, SENDER, ["dora@other.example"],
                     f"From: {SENDER}\r\nTo: dora@other.example\r\nSubject: [secure] cbc\r\n\r\nsealed with cbc\r\n")
        dora = copy_for(gw, "dora@other.example", b"Subject: cbc")
        printed = cms_print(tmp_path, dora)
        assert "pkcs7-envelopedData" in printed and "aes-256-cbc" in printed, printed[:800]
        assert b"sealed with cbc" in decrypt_cms(tmp_path, dora, "dora")
        # The setting is shown as it is in force.
        assert "gcm" in gw.cli("settings", "get", "smime.cipher").stdout
    finally:
        gw.stop()


def encrypt_for_gateway(tmp_path, entity: bytes, cipher: str, subject: str) -> bytes:
    src = tmp_path / f"{subject}.in"
    src.write_bytes(entity)
    out = subprocess.run(["openssl", "cms", "-encrypt", f"-{cipher}", "-in", str(src), "-from", SENDER,
                          "-to", "carol@example.org", "-subject", subject, str(tmp_path / "gateway.pem")],
                         capture_output=True, check=True).stdout
    return out.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_refuse_unprotected_refuses_unsigned_cbc_and_takes_signed_or_gcm(tmp_path):
    gw = provisioned_gateway(tmp_path, {"smime": {"refuse_unprotected": True}})
    gw.start()
    try:
        plain = b"Content-Type: text/plain; charset=utf-8\r\n\r\nunprotected words\r\n"
        send_message(gw.port, SENDER, ["carol@example.org"],
                     encrypt_for_gateway(tmp_path, plain, "aes256", "unprotected-cbc"))
        got = wait_outbox(gw, lambda m: any(b"Action: failed" in x and b"unprotected-cbc" in x for x in m))
        notice = [x for x in got if b"Action: failed" in x][0]
        assert b"refuse_unprotected" in notice, notice[:1500]
        assert b"5.7.1" in notice
        assert not any("carol@example.org" in envelope_to(x) for x in got)
        assert b"unprotected words" not in notice  # the notice quotes no plaintext

        # Signed inside (sign, then encrypt: what S/MIME clients do): delivered.
        make_cert(tmp_path, "alice", SENDER, usage="digitalSignature,keyEncipherment")
        inner = tmp_path / "signed-inner.txt"
        inner.write_bytes(b"Content-Type: text/plain; charset=utf-8\r\n\r\nsigned words\r\n")
        signed = subprocess.run(["openssl", "cms", "-sign", "-in", str(inner), "-signer", str(tmp_path / "alice.pem"),
                                 "-inkey", str(tmp_path / "alice.key")], capture_output=True, check=True).stdout
        send_message(gw.port, SENDER, ["carol@example.org"],
                     encrypt_for_gateway(tmp_path, signed, "aes256", "signed-cbc"))
        carol = copy_for(gw, "carol@example.org", b"signed-cbc")
        assert b"signed words" in carol
        assert re.search(rb"(?m)^X-Sealgate-Verdict: decrypted=smime; .*signature=valid-untrusted", carol), carol[:600]

        # AES-GCM (AuthEnvelopedData) carries its own integrity: delivered unsigned.
        send_message(gw.port, SENDER, ["carol@example.org"],
                     encrypt_for_gateway(tmp_path, plain.replace(b"unprotected", b"gcm"), "aes-256-gcm", "gcm-in"))
        carol = copy_for(gw, "carol@example.org", b"gcm-in")
        assert b"gcm words" in carol
        assert re.search(rb"(?m)^X-Sealgate-Verdict: decrypted=smime; .*integrity=aead", carol), carol[:600]
    finally:
        gw.stop()
