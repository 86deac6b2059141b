"""OpenPGP unwrap end to end: an internal sender encrypts for the gateway's
OpenPGP certificate with GnuPG (the certificate created on the SoftHSM2
token by `sealgate pgp init`, exported, imported into gpg); the gateway
opens the PGP/MIME message on the token, the external recipient gets it
S/MIME-encrypted to their own certificate (openssl decrypts it), the
internal recipient gets the plaintext with the gateway's verdict header,
and OpenPGP mail encrypted for somebody else passes through untouched."""

import email
import email.policy
import re
import signal
import time

import pytest

from smtp_conftest import send_message, wait_outbox
from test_directory import decrypt_cms, make_cert
from test_policy import SENDER, envelope_to
from test_unwrap import provisioned_gateway, send_to_bob_and_carol

GATEWAY_UID = "Sealgate gateway <gateway@example.org>"


@pytest.fixture
def gw_with_openpgp(tmp_path, gnupg):
    gw = provisioned_gateway(tmp_path)
    gw.cli("pgp", "init", "--user-id", GATEWAY_UID)
    cert = tmp_path / "gateway.asc"
    gw.cli("pgp", "export-gateway-cert", "--out", str(cert))
    gnupg("--import", str(cert))
    gw.start()
    yield gw
    gw.stop()


def pgp_mime(gnupg, recipient: str, to: str, subject: str, body: str, inner: bytes | None = None,
             sender: str = SENDER) -> bytes:
    """A PGP/MIME message (RFC 3156) from `sender` as a mail client builds
    it, encrypted by gpg for `recipient`; the encrypted entity is a
    text/plain part with `body`, or `inner` as given."""
    if inner is None:
        inner = f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n".encode()
    armored = gnupg("--armor", "--trust-model", "always", "--encrypt", "--recipient", recipient,
                    input=inner).stdout.decode().replace("\r\n", "\n").replace("\n", "\r\n")
    b = "sealgate-test-boundary"
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="{b}"\r\n'
            f"\r\n--{b}\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
            f'\r\n--{b}\r\nContent-Type: application/octet-stream; name="encrypted.asc"\r\n\r\n'
            f"{armored}\r\n--{b}--\r\n").encode()


def test_openpgp_for_the_gateway_is_reencrypted_per_recipient(gw_with_openpgp, gnupg, tmp_path):
    gw = gw_with_openpgp
    gw.cli("directory", "import", make_cert(tmp_path, "bob", "bob@ext.example"))
    message = pgp_mime(gnupg, "gateway@example.org", "bob@ext.example, carol@example.org", "plan",
                       "the openpgp plan")
    assert b"openpgp plan" not in message
    bob, carol = send_to_bob_and_carol(gw, message)
    # External: opened on the token, then S/MIME-encrypted to bob's certificate.
    assert b"openpgp plan" not in bob
    assert b"application/pkcs7-mime" in bob
    assert b"the openpgp plan" in decrypt_cms(tmp_path, bob, "bob")
    # Internal: the plaintext, with the gateway's verdict.
    assert b"the openpgp plan" in carol
    assert re.search(rb"(?m)^X-Sealgate-Verdict: decrypted=openpgp; format=pgp-mime;", carol), carol[:600]
    track = gw.cli("track", "--to", "bob@ext.example").stdout
    assert "encrypted the message for the gateway" in track


def test_openpgp_for_someone_else_passes_through(gw_with_openpgp, gnupg, tmp_path):
    gw = gw_with_openpgp
    gnupg("--quick-gen-key", "Dora <dora@ext.example>", "future-default", "default", "never")
    message = pgp_mime(gnupg, "dora@ext.example", "dora@ext.example", "e2e", "only for dora")
    send_message(gw.port, SENDER, ["dora@ext.example"], message)
    got = wait_outbox(gw, lambda m: any("dora@ext.example" in envelope_to(x) for x in m))
    dora = [x for x in got if "dora@ext.example" in envelope_to(x)][0]
    parsed = email.message_from_bytes(dora, policy=email.policy.compat32)
    assert parsed.get_content_type() == "multipart/encrypted"
    armored = parsed.get_payload()[1].get_payload(decode=False)
    assert b"only for dora" in gnupg("--decrypt", input=armored.encode()).stdout
    assert b"X-Sealgate-Verdict" not in dora


def test_identity_created_while_running_is_used_after_sighup(tmp_path, gnupg):
    """`sealgate pgp init` on a running gateway, then SIGHUP (what
    `systemctl reload sealgate` sends): the new identity opens mail without
    a restart."""
    gw = provisioned_gateway(tmp_path)
    gw.start()
    try:
        gw.cli("pgp", "init", "--user-id", GATEWAY_UID)
        cert = tmp_path / "gateway.asc"
        gw.cli("pgp", "export-gateway-cert", "--out", str(cert))
        gnupg("--import", str(cert))
        gw.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while b"gateway keys reloaded" not in gw.log_path.read_bytes():
            assert time.monotonic() < deadline, "the keys were not loaded again after SIGHUP"
            time.sleep(0.2)
        message = pgp_mime(gnupg, "gateway@example.org", "carol@example.org", "after-reload", "reloaded secret")
        send_message(gw.port, SENDER, ["carol@example.org"], message)
        got = wait_outbox(gw, lambda m: any(b"after-reload" in x for x in m))
        carol = [x for x in got if b"after-reload" in x][0]
        assert b"reloaded secret" in carol
        assert re.search(rb"(?m)^X-Sealgate-Verdict: decrypted=openpgp;", carol), carol[:600]
    finally:
        gw.stop()
