"""Signatures inside mail encrypted for the gateway (issue 16, a bug found
from outside): an RNP sign-and-encrypt message whose signer's key is in the
key directory must say `signature=valid` with the signer's trust level, as
`sealgate pgp decrypt --cert` says on the same bytes; a signer nobody
knows is `unknown-signer`, not `invalid`.

Peers: RNP (`rnp`, `rnpkeys`) makes the keys and the messages; the gateway
opens them with its OpenPGP identity on a SoftHSM2 token."""

import re
import subprocess
from pathlib import Path

import pytest

from conftest import send
from hsm_token import token_gateway

GATEWAY_UID = "Sealgate gateway <gateway@example.org>"
ALICE = "alice@example.org"


class Rnp:
    """rnp with its own home directory."""

    def __init__(self, home: Path):
        self.home = home
        home.mkdir(parents=True, exist_ok=True)

    def run(self, tool: str, *args: str, input: bytes | None = None) -> bytes:
        r = subprocess.run([tool, "--homedir", str(self.home), *args], input=input,
                           capture_output=True, timeout=120)
        assert r.returncode == 0, (tool, args, r.stdout[-2000:], r.stderr[-2000:])
        return r.stdout

    def generate(self, userid: str) -> None:
        self.run("rnpkeys", "--generate-key", "--userid", userid, "--password", "")

    def export(self, userid: str) -> bytes:
        return self.run("rnpkeys", "--export-key", userid)

    def sign_encrypt(self, signer: str, recipient_cert: Path, data: bytes) -> str:
        self.run("rnpkeys", "--import", str(recipient_cert))
        out = self.run("rnp", "--sign", "--encrypt", "--armor", "-u", signer, "-r", "gateway@example.org",
                       "--password", "", "--output", "-", input=data)
        return out.decode().replace("\r\n", "\n").replace("\n", "\r\n")


def pgp_mime(armored: str, sender: str, to: str, subject: str) -> bytes:
    b = "rnp-boundary"
    return (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="{b}"\r\n'
            f"\r\n--{b}\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
            f'\r\n--{b}\r\nContent-Type: application/octet-stream; name="encrypted.asc"\r\n\r\n'
            f"{armored}\r\n--{b}--\r\n").encode()


INNER = b"Content-Type: text/plain; charset=utf-8\r\n\r\nthe signed secret\r\n"


@pytest.fixture
def gw(tmp_path):
    g = token_gateway(tmp_path / "gw", {"relay": {"domains": ["example.org"], "internal_networks": ["127.0.0.0/8"]}},
                      openpgp_uid=GATEWAY_UID)
    g.start()
    yield g
    g.stop()
    print(g.log_path.read_text(errors="replace")[-3000:])


def delivered_to(gw, address: str, subject: str) -> bytes:
    from conftest import wait_until
    from harness import REPO  # noqa: F401

    def find():
        for p in sorted(gw.outbox.glob("*.eml")) if gw.outbox.exists() else []:
            raw = p.read_bytes()
            if f"Subject: {subject}".encode() in raw and address.encode() in raw:
                return raw
        return None
    return wait_until(find, timeout=30, what=f"{subject} for {address}")


def verdict(raw: bytes) -> str:
    m = re.search(rb"(?m)^X-Sealgate-Verdict: (.*)\r?$", raw)
    assert m, raw[:800]
    return m.group(1).decode()


def test_signatures_inside_are_checked_against_the_directory(gw, tmp_path):
    rnp = Rnp(tmp_path / "rnp")
    rnp.generate(f"Alice <{ALICE}>")
    (tmp_path / "alice.asc").write_bytes(rnp.export(ALICE))

    # Not in the directory yet: the signer is unknown (not "invalid").
    msg = pgp_mime(rnp.sign_encrypt(ALICE, gw.gateway_asc, INNER), ALICE, "carol@example.org", "before")
    send(gw, ["carol@example.org"], "before", raw=msg)
    got = delivered_to(gw, "carol@example.org", "before")
    assert b"the signed secret" in got
    v = verdict(got)
    assert "decrypted=openpgp" in v and "signature=unknown-signer" in v, v

    # An administrator imports alice's key: the same kind of message is valid, with its trust.
    gw.cli("directory", "import", str(tmp_path / "alice.asc"))
    fpr = rnp.run("rnpkeys", "--list-keys").decode()
    armored = rnp.sign_encrypt(ALICE, gw.gateway_asc, INNER)
    msg = pgp_mime(armored, ALICE, "carol@example.org", "after")
    send(gw, ["carol@example.org"], "after", raw=msg)
    v = verdict(delivered_to(gw, "carol@example.org", "after"))
    assert "signature=valid;" in v and "trust=manual" in v, v
    signer = re.search(r"signer=([0-9A-F]+)", v).group(1)
    assert signer.lower() in fpr.replace(" ", "").lower(), (signer, fpr)

    # The CLI says the same on the same bytes.
    (tmp_path / "after.eml").write_bytes(msg)
    out = gw.cli("pgp", "decrypt", "--cert", str(tmp_path / "alice.asc"), str(tmp_path / "after.eml"),
                 check=False)
    assert "Valid" in out.stdout + out.stderr, out
