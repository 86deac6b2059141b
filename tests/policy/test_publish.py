"""Publishing our keys (issue 16): the Web Key Directory on the web
listener, and the `Autocrypt:` header on mail the gateway signs.

- WKD: GnuPG's own `gpg-wks-client` computes the hashed local parts; the
  keys fetched over HTTPS from the advanced and the direct layout import
  into gpg as the gateway's OpenPGP key and the key an administrator
  imported for alice@example.org. Addresses we publish nothing for, other
  domains and keys of other domains are not found; `sealgate trust
  publish` names the same paths.
- Autocrypt: with `sign` and `autocrypt` for partner.test, mail from
  alice@example.org carries `Autocrypt: addr=alice@example.org` with the
  gateway's key (the S/MIME signature still verifies: openssl); a reply
  that gpg encrypts to that key, sent from outside, is opened on the token
  and reaches alice in clear with the gateway's verdict. Mail to a domain
  without the setting carries no header."""

import base64
import email
import email.policy
import http.client
import json
import re
import ssl
import shutil
import subprocess

import pytest

from harness import free_port
from smtp_conftest import send_message, wait_outbox
from test_policy import POLICY, envelope_to
from test_unwrap import provisioned_gateway
from test_unwrap_openpgp import GATEWAY_UID, pgp_mime

OUTSIDE = "127.0.0.2"
# GnuPG's WKD client (Debian keeps it out of PATH, in /usr/lib/gnupg).
WKS_CLIENT = shutil.which("gpg-wks-client") or "/usr/lib/gnupg/gpg-wks-client"
ALICE = "alice@example.org"


@pytest.fixture
def gw(tmp_path, gnupg):
    web = free_port()
    policy = {**POLICY, "domain": {**POLICY["domain"], "partner.test": {"sign": True, "autocrypt": True}}}
    g = provisioned_gateway(tmp_path, {"policy": policy, "web": {"listen": [f"127.0.0.1:{web}"]},
                                       "relay": {"domains": ["example.org"], "internal_networks": ["127.0.0.1/32"]}})
    g.web_port = web
    g.cli("pgp", "init", "--user-id", GATEWAY_UID)
    g.start()
    yield g
    g.stop()


def fpr(gnupg, *args, input: bytes | None = None) -> list[str]:
    """The primary keys' fingerprints gpg lists (subkeys left out)."""
    out = gnupg("--with-colons", *args, input=input).stdout.decode()
    found, kind = [], None
    for line in out.splitlines():
        field = line.split(":")
        if field[0] in ("pub", "sub"):
            kind = field[0]
        elif field[0] == "fpr" and kind == "pub":
            found.append(field[9])
            kind = None
    return found


def key_of(gnupg, tmp_path, name: str, uid: str) -> tuple[str, bytes]:
    """A fresh key in its own keyring: (fingerprint, binary public key)."""
    home = tmp_path / f"ring-{name}"
    home.mkdir(mode=0o700)
    gnupg("--homedir", str(home), "--quick-gen-key", uid, "future-default", "default", "never")
    public = gnupg("--homedir", str(home), "--export", uid).stdout
    return fpr(gnupg, "--homedir", str(home), "--list-keys")[0], public


def wkd_hash(address: str) -> str:
    """The hashed local part, as GnuPG computes it (`gpg-wks-client`)."""
    out = subprocess.run([WKS_CLIENT, "--print-wkd-hash", address], check=True, capture_output=True,
                         text=True, timeout=30).stdout
    return out.split()[0]


def fetch(port: int, path: str, host: str) -> tuple[int, dict, bytes]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": host})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def imported(gnupg, tmp_path, data: bytes, name: str) -> list[str]:
    """The fingerprints gpg reads from `data`, in a keyring of their own."""
    home = tmp_path / f"check-{name}"
    home.mkdir(mode=0o700)
    gnupg("--homedir", str(home), "--import", input=data)
    return fpr(gnupg, "--homedir", str(home), "--list-keys")


def test_wkd_serves_the_keys_we_publish(gw, gnupg, tmp_path):
    gateway_fpr = gateway_key(gw, gnupg, tmp_path)[0]
    alice_fpr, alice_key = key_of(gnupg, tmp_path, "alice", f"Alice <{ALICE}>")
    _, bob_key = key_of(gnupg, tmp_path, "bob", "Bob <bob@partner.test>")
    for name, key in (("alice.gpg", alice_key), ("bob.gpg", bob_key)):
        (tmp_path / name).write_bytes(key)
        gw.cli("directory", "import", str(tmp_path / name))

    for address, expected in ((ALICE, alice_fpr), ("gateway@example.org", gateway_fpr)):
        local = address.split("@")[0]
        h = wkd_hash(address)
        status, headers, advanced = fetch(gw.web_port, f"/.well-known/openpgpkey/example.org/hu/{h}?l={local}",
                                          "openpgpkey.example.org")
        assert status == 200, (address, status, advanced[:300])
        assert headers["content-type"] == "application/octet-stream"
        assert headers.get("access-control-allow-origin") == "*"
        assert imported(gnupg, tmp_path, advanced, local + "-a") == [expected]
        # The direct layout takes the domain from the host asked for; `l=` is optional.
        status, _, direct = fetch(gw.web_port, f"/.well-known/openpgpkey/hu/{h}", "example.org:443")
        assert status == 200 and direct == advanced, (address, status)

    # The policy file exists for our domains only.
    assert fetch(gw.web_port, "/.well-known/openpgpkey/example.org/policy", "openpgpkey.example.org")[0] == 200
    assert fetch(gw.web_port, "/.well-known/openpgpkey/partner.test/policy", "openpgpkey.partner.test")[0] == 404
    # Nothing for addresses without a published key, for other domains, or for a malformed hash.
    nobody = wkd_hash("nobody@example.org")
    assert fetch(gw.web_port, f"/.well-known/openpgpkey/example.org/hu/{nobody}", "example.org")[0] == 404
    bob = wkd_hash("bob@partner.test")
    assert fetch(gw.web_port, f"/.well-known/openpgpkey/partner.test/hu/{bob}?l=bob", "partner.test")[0] == 404
    assert fetch(gw.web_port, f"/.well-known/openpgpkey/hu/{bob}", "partner.test")[0] == 404
    assert fetch(gw.web_port, "/.well-known/openpgpkey/hu/..%2f..%2fsealgate.toml", "example.org")[0] == 404

    # The CLI names the same paths, and the OPENPGPKEY record for alice.
    records = json.loads(gw.cli("trust", "publish", "--json").stdout)
    paths = {r["name"] for r in records if r["kind"] == "WKD"}
    assert f"/.well-known/openpgpkey/example.org/hu/{wkd_hash(ALICE)}" in paths, paths
    assert not any(r["address"].endswith("@partner.test") for r in records), records
    record = next(r for r in records if r["kind"] == "OPENPGPKEY" and r["address"] == ALICE)
    assert imported(gnupg, tmp_path, base64.b64decode(record["data"]), "record") == [alice_fpr]


def gateway_key(gw, gnupg, tmp_path) -> tuple[str, bytes]:
    """The gateway's OpenPGP key as `sealgate pgp export-gateway-cert`
    writes it: (fingerprint, armored key)."""
    out = tmp_path / "gateway.asc"
    gw.cli("pgp", "export-gateway-cert", "--out", str(out))
    data = out.read_bytes()
    return fpr(gnupg, "--import-options", "show-only", "--import", input=data)[0], data


def autocrypt_of(raw: bytes) -> dict[str, str] | None:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    value = msg.get("Autocrypt")
    if value is None:
        return None
    unfolded = re.sub(r"\s+", "", str(value))
    attrs = {}
    for part in unfolded.split(";"):
        k, _, v = part.strip().partition("=")
        attrs[k] = v
    return attrs


def test_signed_mail_carries_our_domain_key_and_replies_to_it_are_opened(gw, gnupg, tmp_path):
    gateway_fpr = gateway_key(gw, gnupg, tmp_path)[0]
    message = (f"From: Alice <{ALICE}>\r\nTo: bob@partner.test, carol@other.test\r\nSubject: offer\r\n"
               f"Message-ID: <offer@example.org>\r\n\r\nour offer\r\n")
    send_message(gw.port, ALICE, ["bob@partner.test", "carol@other.test"], message)
    got = wait_outbox(gw, lambda m: {r for x in m for r in envelope_to(x)} >= {"bob@partner.test", "carol@other.test"})
    bob = next(x for x in got if "bob@partner.test" in envelope_to(x))
    carol = next(x for x in got if "carol@other.test" in envelope_to(x))
    assert autocrypt_of(carol) is None, carol[:600]
    attrs = autocrypt_of(bob)
    assert attrs is not None, bob[:800]
    assert attrs["addr"] == ALICE and attrs["prefer-encrypt"] == "mutual", attrs
    keydata = base64.b64decode(attrs["keydata"])
    assert imported(gnupg, tmp_path, keydata, "autocrypt") == [gateway_fpr]
    # The header sits outside the S/MIME signature, which still verifies.
    parsed = email.message_from_bytes(bob, policy=email.policy.compat32)
    assert parsed.get_content_type() == "multipart/signed"
    signed = tmp_path / "signed.eml"
    signed.write_bytes(bob)
    check = subprocess.run(["openssl", "smime", "-verify", "-noverify", "-in", str(signed)], capture_output=True)
    assert check.returncode == 0 and b"our offer" in check.stdout, check.stderr
    # Bob's mail client encrypts its reply to the key it was given.
    gnupg("--import", input=keydata)
    reply = pgp_mime(gnupg, gateway_fpr, ALICE, "re: offer", "the accepted offer", sender="bob@partner.test")
    assert b"the accepted offer" not in reply
    send_message(gw.port, "bob@partner.test", [ALICE], reply, source=OUTSIDE)
    got = wait_outbox(gw, lambda m: any(ALICE in envelope_to(x) for x in m))
    alice = next(x for x in got if ALICE in envelope_to(x))
    assert b"the accepted offer" in alice, alice[:800]
    assert re.search(rb"(?m)^X-Sealgate-Verdict: decrypted=openpgp;", alice), alice[:600]
    track = gw.cli("track", "--to", "bob@partner.test").stdout
    assert "with Autocrypt" in track, track
