"""Inbound S/MIME-signed mail from outside (not encrypted for the gateway)
gets a verdict for its internal recipients: whether the signature holds,
who signed, whether the signer's certificate names From, and the signer's
standing against the configured trust anchors. A verdict header that
arrives with the mail is never believed.

Peers: OpenSSL makes the CA, the certificates and the signatures
(`openssl cms -sign`, opaque and detached); the client sends from
127.0.0.2, which is outside the gateway's internal networks."""

import re
import sys
import subprocess
from pathlib import Path

from harness import Gateway, SmtpDialogue
from smtp_conftest import wait_outbox
from test_policy import envelope_to

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from pki import TestCA  # noqa: E402

CAROL = "carol@example.org"


def signed_mail(cert: Path, key: Path, sender: str, subject: str, body: str,
                detached: bool = True, extra: str = "") -> bytes:
    inner = f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n".encode()
    args = ["openssl", "cms", "-sign", "-signer", str(cert), "-inkey", str(key)]
    if not detached:
        args.append("-nodetach")
    signed = subprocess.run(args, input=inner, capture_output=True, check=True).stdout
    signed = signed.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head = f"From: <{sender}>\r\nTo: <{CAROL}>\r\nSubject: {subject}\r\n{extra}".encode()
    return head + signed


def send_from_outside(gw: Gateway, sender: str, raw: bytes) -> None:
    d = SmtpDialogue(gw.port, source="127.0.0.2")
    try:
        d.reply()
        d.cmd("EHLO mx.ext.example", "250")
        d.cmd(f"MAIL FROM:<{sender}>", "250")
        d.cmd(f"RCPT TO:<{CAROL}>", "250")
        d.cmd("DATA", "354")
        d.send(raw.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
        assert d.reply().startswith("250")
        d.cmd("QUIT", "221")
    finally:
        d.close()


def received(gw: Gateway, subject: str) -> bytes:
    marker = f"Subject: {subject}\r\n".encode()
    got = wait_outbox(gw, lambda m: any(CAROL in envelope_to(x) and marker in x for x in m))
    return [x for x in got if marker in x][0]


def verdict_of(raw: bytes) -> str:
    found = re.findall(rb"(?m)^X-Sealgate-Verdict: (.*)\r$", raw)
    assert len(found) == 1, raw[:800]
    return found[0].decode()


def test_signed_mail_from_outside_carries_the_verdict(gateway_factory, tmp_path):
    ca = TestCA(tmp_path / "ca")
    gw = gateway_factory({
        "relay": {"domains": ["example.org"], "internal_networks": ["127.0.0.1/32"]},
        "smime": {"trust_anchors": [str(ca.cert)]},
    })
    # Anchored: issued by the configured CA, names From.
    cert, key = ca.person("bob@ext.example")
    send_from_outside(gw, "bob@ext.example", signed_mail(cert, key, "bob@ext.example", "anchored", "from bob"))
    v = verdict_of(received(gw, "anchored"))
    assert v.startswith("signature=valid; signer=bob@ext.example; from=matches; trust=anchored"), v

    # Opaque signed-data from a self-signed certificate: good but untrusted,
    # and the verdict that came with the message is gone.
    own_cert, own_key = tmp_path / "dora.pem", tmp_path / "dora.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(own_key),
                    "-out", str(own_cert), "-days", "30", "-subj", "/CN=dora",
                    "-addext", "subjectAltName=email:dora@ext.example",
                    "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
                    "-addext", "extendedKeyUsage=emailProtection"], check=True, capture_output=True)
    forged = "X-Sealgate-Verdict: signature=valid; trust=anchored\r\n"
    send_from_outside(gw, "dora@ext.example", signed_mail(own_cert, own_key, "dora@ext.example", "self-signed",
                                                          "from dora", detached=False, extra=forged))
    v = verdict_of(received(gw, "self-signed"))
    assert v.startswith("signature=valid-untrusted; signer=dora@ext.example; from=matches; trust=untrusted"), v

    # Signed by bob's certificate under another From: the binding fails.
    send_from_outside(gw, "mallory@ext.example",
                      signed_mail(cert, key, "mallory@ext.example", "other-from", "not bob"))
    v = verdict_of(received(gw, "other-from"))
    assert v.startswith("signature=signer-mismatch; signer=bob@ext.example; from=differs"), v

    # Content altered after signing: invalid.
    raw = signed_mail(cert, key, "bob@ext.example", "altered", "pay 100 euros")
    send_from_outside(gw, "bob@ext.example", raw.replace(b"pay 100 euros", b"pay 900 euros"))
    v = verdict_of(received(gw, "altered"))
    assert v.startswith("signature=invalid"), v

    # The explanation in tracking says the same.
    track = gw.cli("track", "--to", CAROL).stdout
    assert "S/MIME signature=signer-mismatch" in track, track[-2000:]


def test_unsigned_mail_from_outside_gets_no_verdict(gateway_factory):
    gw = gateway_factory({"relay": {"domains": ["example.org"], "internal_networks": ["127.0.0.1/32"]}})
    send_from_outside(gw, "erin@ext.example",
                      b"From: <erin@ext.example>\r\nTo: <carol@example.org>\r\nSubject: plain\r\n"
                      b"X-Sealgate-Verdict: signature=valid\r\n\r\nhello\r\n")
    raw = received(gw, "plain")
    assert b"X-Sealgate-Verdict" not in raw


def pgp_signed(gnupg, signer: str, sender: str, subject: str, body: str) -> bytes:
    """PGP/MIME (RFC 3156) signed by gpg: a detached signature over the
    first part, exactly as it is sent (CRLF)."""
    part = f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n".encode()
    sig = gnupg("--armor", "--detach-sign", "--digest-algo", "SHA256", "-u", signer, input=part).stdout
    b = "pgp-signed-boundary"
    return (f"From: <{sender}>\r\nTo: <{CAROL}>\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/signed; boundary="{b}"; micalg=pgp-sha256; '
            f'protocol="application/pgp-signature"\r\n\r\n'
            f"--{b}\r\n").encode() + part + (
            f"\r\n--{b}\r\nContent-Type: application/pgp-signature; name=signature.asc\r\n\r\n").encode() + \
        sig.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + f"\r\n--{b}--\r\n".encode()


def test_pgp_signed_mail_from_outside_carries_the_verdict(gateway_factory, gnupg, tmp_path):
    gw = gateway_factory({"relay": {"domains": ["example.org"], "internal_networks": ["127.0.0.1/32"]}})
    gnupg("--quick-gen-key", "fred@ext.example", "future-default", "default", "never")
    gnupg("--quick-gen-key", "gina@ext.example", "future-default", "default", "never")
    key = tmp_path / "fred.asc"
    key.write_bytes(gnupg("--armor", "--export", "fred@ext.example").stdout)
    gw.cli("directory", "import", str(key))

    # Fred's key is in the directory (imported by an administrator).
    send_from_outside(gw, "fred@ext.example", pgp_signed(gnupg, "fred@ext.example", "fred@ext.example",
                                                         "pgp-known", "from fred"))
    v = verdict_of(received(gw, "pgp-known"))
    assert re.fullmatch(r"signature=valid; signer=[0-9A-F]{40}; trust=manual", v), v

    # Gina's key is nowhere: the signature cannot be checked, and is not
    # called invalid.
    send_from_outside(gw, "gina@ext.example", pgp_signed(gnupg, "gina@ext.example", "gina@ext.example",
                                                         "pgp-unknown", "from gina"))
    v = verdict_of(received(gw, "pgp-unknown"))
    assert v.startswith("signature=unknown-signer"), v

    # Altered after signing: invalid.
    raw = pgp_signed(gnupg, "fred@ext.example", "fred@ext.example", "pgp-altered", "pay 100 euros")
    send_from_outside(gw, "fred@ext.example", raw.replace(b"pay 100 euros", b"pay 900 euros"))
    v = verdict_of(received(gw, "pgp-altered"))
    assert v.startswith("signature=invalid"), v
