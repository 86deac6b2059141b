"""Unwrap end to end: an internal sender encrypts for the gateway with
`openssl cms` (the gateway's certificate exported from its SoftHSM2 token);
the gateway opens the message on the token, the external recipient gets it
S/MIME-encrypted to their own certificate (openssl decrypts it), the
internal recipient gets the plaintext with the gateway's verdict header, and
a message encrypted for somebody else passes through untouched."""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from harness import Gateway, sealgate_bin
from smtp_conftest import send_message, wait_outbox
from test_directory import decrypt_cms, make_cert
from test_policy import POLICY, SENDER, envelope_to

REPO = Path(__file__).resolve().parents[2]


def sealgate_on_path(tmp_path) -> str:
    """A directory holding `sealgate` (the binary under test, whatever its
    file is called): hsm/provision runs `sealgate hsm init` from PATH and
    would otherwise fall back to building the sources with cargo."""
    shim = tmp_path / "sealgate-bin"
    shim.mkdir(exist_ok=True)
    link = shim / "sealgate"
    if not link.exists():
        link.symlink_to(Path(sealgate_bin()).resolve())
    return str(shim)


def provisioned_gateway(tmp_path, settings: dict | None = None) -> Gateway:
    """A gateway (not started) whose SoftHSM2 token holds the default keys,
    with S/MIME certificates; the decryption certificate is written to
    tmp_path/gateway.pem for senders. `settings` is added to the test
    configuration (default: the policy tests' POLICY)."""
    data = tmp_path / "gw" / "data"
    # No SOFTHSM2_CONF for the daemon and the verbs: the bootstrap file's
    # [hsm] table (by default the token in the data directory) says where
    # the token is (hsm/provision sets it for itself).
    env = {"PATH": f"{sealgate_on_path(tmp_path)}:{os.environ['PATH']}"}
    gw = Gateway(tmp_path / "gw", {"policy": POLICY, **(settings or {})}, env=env)
    subprocess.run([str(REPO / "hsm" / "provision"), str(data)], env=gw.env, check=True,
                   capture_output=True, timeout=300)
    gw.cli("keys", "self-sign", "gateway-sign", "--cn", "gw.test", "--email", "gateway@example.org")
    gw.cli("keys", "self-sign", "gateway-decrypt", "--cn", "gw.test", "--issuer", "gateway-sign")
    gw.cli("keys", "export-cert", "gateway-decrypt", "--out", str(tmp_path / "gateway.pem"))
    return gw


@pytest.fixture
def gw_with_token(tmp_path):
    gw = provisioned_gateway(tmp_path)
    gw.start()
    yield gw
    gw.stop()


def encrypt_for(tmp_path, cert: Path, body: str, to: str, subject: str) -> bytes:
    inner = tmp_path / "inner.eml"
    inner.write_bytes(f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n".encode())
    out = subprocess.run(["openssl", "cms", "-encrypt", "-aes256", "-in", str(inner), "-from", SENDER,
                          "-to", to, "-subject", subject, str(cert)], capture_output=True, check=True)
    return out.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def send_to_bob_and_carol(gw, message: bytes) -> tuple[bytes, bytes]:
    """Sends `message` to an external (bob) and an internal (carol)
    recipient; returns what each received."""
    send_message(gw.port, SENDER, ["bob@ext.example", "carol@example.org"], message)
    got = wait_outbox(gw, lambda m: {r for x in m for r in envelope_to(x)} >= {"bob@ext.example", "carol@example.org"})
    bob = [x for x in got if "bob@ext.example" in envelope_to(x)][0]
    carol = [x for x in got if "carol@example.org" in envelope_to(x)][0]
    return bob, carol


def test_encrypted_for_the_gateway_is_reencrypted_per_recipient(gw_with_token, tmp_path):
    gw = gw_with_token
    gw.cli("directory", "import", make_cert(tmp_path, "bob", "bob@ext.example"))
    message = encrypt_for(tmp_path, tmp_path / "gateway.pem", "the confidential plan",
                          "bob@ext.example, carol@example.org", "plan")
    assert b"confidential plan" not in message
    bob, carol = send_to_bob_and_carol(gw, message)
    # External: encrypted again, to bob's own certificate.
    assert b"confidential plan" not in bob
    assert b"confidential plan" in decrypt_cms(tmp_path, bob, "bob")
    # Internal: the plaintext, with the gateway's verdict.
    assert b"the confidential plan" in carol
    assert re.search(rb"(?m)^X-Sealgate-Verdict: decrypted=smime; .*integrity=.*; signature=none", carol), carol[:600]
    track = gw.cli("track", "--to", "bob@ext.example").stdout
    assert "encrypted the message for the gateway" in track


def test_encrypted_for_someone_else_passes_through(gw_with_token, tmp_path):
    gw = gw_with_token
    other = Path(make_cert(tmp_path, "dora", "dora@ext.example"))
    message = encrypt_for(tmp_path, other, "only for dora", "dora@ext.example", "e2e")
    send_message(gw.port, SENDER, ["dora@ext.example"], message)
    got = wait_outbox(gw, lambda m: any("dora@ext.example" in envelope_to(x) for x in m))
    dora = [x for x in got if "dora@ext.example" in envelope_to(x)][0]
    assert b"only for dora" in decrypt_cms(tmp_path, dora, "dora")


def test_damaged_message_for_the_gateway_is_refused_without_plaintext(gw_with_token, tmp_path):
    gw = gw_with_token
    message = encrypt_for(tmp_path, tmp_path / "gateway.pem", "x" * 2000, "bob@ext.example", "broken")
    head, _, body = message.partition(b"\r\n\r\n")
    lines = body.split(b"\r\n")
    lines[len(lines) // 2] = b"A" * len(lines[len(lines) // 2])  # corrupt the ciphertext
    send_message(gw.port, SENDER, ["bob@ext.example"], head + b"\r\n\r\n" + b"\r\n".join(lines))
    got = wait_outbox(gw, lambda m: any(b"Action: failed" in x for x in m))
    notice = [x for x in got if b"Action: failed" in x][0]
    assert b"could not be decrypted" in notice or b"tampering" in notice
    assert not any("bob@ext.example" in envelope_to(x) for x in got)


def test_gateway_signs_what_the_policy_says(gw_with_token, tmp_path):
    gw = gw_with_token
    # POLICY's "legal" rule: lee's external mail must be encrypted; sign it too via settings.
    gw.cli("directory", "import", make_cert(tmp_path, "erin", "erin@ext.example"))
    # Changed while the gateway runs: the next message is signed.
    gw.cli("settings", "set", "policy.settings.sign", "true", "--comment", "sign everything")
    send_message(gw.port, SENDER, ["erin@ext.example", "carol@example.org"],
                 f"From: {SENDER}\r\nSubject: [secure] signed and sealed\r\n\r\nsigned body\r\n")
    got = wait_outbox(gw, lambda m: {r for x in m for r in envelope_to(x)} >= {"erin@ext.example", "carol@example.org"})
    sign_cert = tmp_path / "sign.pem"
    gw.cli("keys", "export-cert", "gateway-sign", "--out", str(sign_cert))

    def verify(raw: bytes) -> bytes:
        src = tmp_path / "signed.eml"
        src.write_bytes(raw)
        return subprocess.run(["openssl", "cms", "-verify", "-in", str(src), "-CAfile", str(sign_cert)],
                              capture_output=True, check=True).stdout

    carol = [x for x in got if "carol@example.org" in envelope_to(x)][0]
    assert re.search(rb"(?im)^Content-Type: multipart/signed;", carol)
    assert b"signed body" in verify(carol)
    erin = [x for x in got if "erin@ext.example" in envelope_to(x)][0]
    inner = decrypt_cms(tmp_path, erin, "erin")  # sign, then encrypt
    assert b"signed body" in verify(inner)


def test_signature_inside_opened_mail_is_in_the_verdict(gw_with_token, tmp_path):
    """Sign, then encrypt for the gateway (what S/MIME clients do): the
    internal recipient's verdict names the signature; a signature over
    altered content is reported invalid."""
    gw = gw_with_token
    make_cert(tmp_path, "alice", SENDER, usage="digitalSignature,keyEncipherment")
    inner = tmp_path / "signed-inner.txt"
    inner.write_bytes(b"Content-Type: text/plain; charset=utf-8\r\n\r\nsigned and sealed\r\n")
    signed = subprocess.run(["openssl", "cms", "-sign", "-in", str(inner), "-signer", str(tmp_path / "alice.pem"),
                             "-inkey", str(tmp_path / "alice.key")], capture_output=True, check=True).stdout
    altered = signed.replace(b"signed and sealed", b"signed and SEALED")

    def send(entity: bytes, subject: str) -> bytes:
        src = tmp_path / f"{subject}.eml"
        src.write_bytes(entity)
        out = subprocess.run(["openssl", "cms", "-encrypt", "-aes256", "-in", str(src), "-from", SENDER,
                              "-to", "carol@example.org", "-subject", subject, str(tmp_path / "gateway.pem")],
                             capture_output=True, check=True).stdout
        send_message(gw.port, SENDER, ["carol@example.org"], out.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        got = wait_outbox(gw, lambda m: any(subject.encode() in x for x in m))
        return [x for x in got if subject.encode() in x][0]

    good = send(signed, "good-signature")
    assert re.search(rb"(?m)^X-Sealgate-Verdict: decrypted=smime; .*; signature=valid-untrusted", good), good[:600]
    bad = send(altered, "altered-signature")
    assert re.search(rb"(?m)^X-Sealgate-Verdict: decrypted=smime; .*; signature=invalid", bad), bad[:600]


def test_broken_cms_from_outside_is_quarantined_not_bounced_to_a_forged_sender(tmp_path):
    """Found from outside: a client on the Internet sends broken CMS to one
    of our users with MAIL FROM:<victim> RET=FULL; the gateway accepted it,
    could not open it, and mailed the victim a failure notice quoting the
    message (backscatter). Mail from outside that cannot be processed after
    acceptance is quarantined for an administrator; no notice goes to an
    address nobody verified."""
    from harness import SmtpDialogue
    from test_policy import queue_json

    gw = provisioned_gateway(tmp_path, {"relay": {"domains": ["example.org"], "internal_networks": ["127.0.0.1/32"]}})
    gw.start()
    try:
        message = encrypt_for(tmp_path, tmp_path / "gateway.pem", "y" * 2000, "alice@example.org", "invoice")
        head, _, body = message.partition(b"\r\n\r\n")
        lines = body.split(b"\r\n")
        lines[len(lines) // 2] = b"A" * len(lines[len(lines) // 2])
        d = SmtpDialogue(gw.port, source="127.0.0.2")
        d.reply()
        d.cmd("EHLO outside.test", "250")
        d.cmd("MAIL FROM:<victim@elsewhere.test> RET=FULL", "250")
        d.cmd("RCPT TO:<alice@example.org>", "250")
        d.cmd("DATA", "354")
        d.send(head + b"\r\n\r\n" + b"\r\n".join(lines) + b".\r\n")
        assert d.reply().startswith("250")
        d.close()
        deadline = time.monotonic() + 30
        while True:
            entries = queue_json(gw)
            states = [r for e in entries for r in e["recipients"]]
            if any(s["state"] == "quarantined" for s in states):
                break
            assert time.monotonic() < deadline, entries
            time.sleep(0.2)
        assert "sender is not verified" in json.dumps(states), states
        time.sleep(2)
        outbox = list(gw.outbox.glob("*.eml")) if gw.outbox.exists() else []
        assert not [m for m in outbox if "victim@elsewhere.test" in envelope_to(m.read_bytes())], \
            "a notice went to the unverified sender"
    finally:
        gw.stop()
