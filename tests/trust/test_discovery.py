"""Key discovery against real peers (issue 16): a recipient the directory
has no key for is looked up, in the order the settings choose, in

- the corporate LDAP directory (Debian's slapd, an inetOrgPerson entry
  with `userCertificate;binary`),
- the domain's Web Key Directory (advanced method, HTTPS with a
  certificate from the test CA the gateway is told to trust),
- DANE: OPENPGPKEY (RFC 7929) and SMIMEA (RFC 8162) records in a
  DNSSEC-signed Knot zone behind a validating Unbound.

What a user sees: encrypt-required mail to such a recipient arrives at
the recipient's MX (Postfix) encrypted to the key found there, and gpg or
openssl opens it; `directory list` names where the key came from. A DANE
record under a broken signature is never used: the mail waits, nothing
arrives in clear."""

import base64
import os
import re
import subprocess
import time
from pathlib import Path

from conftest import SENDER, recipient_states, send, wait_until
from slapd import Slapd

WKD, DANE, LDAP, BAD = "wkd.test", "dane.test", "ldap.test", "badsig.test"


class Gpg:
    """gpg with its own home: makes a recipient's key, decrypts what came."""

    def __init__(self, home: Path):
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(home, 0o700)

    def run(self, *args: str, input: bytes | None = None) -> bytes:
        r = subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--yes", "--pinentry-mode", "loopback",
                            "--passphrase", "", *args], input=input, capture_output=True, timeout=120)
        assert r.returncode == 0, (args, r.stderr[-1500:])
        return r.stdout

    def key_for(self, address: str) -> bytes:
        self.run("--quick-gen-key", address, "future-default", "default", "never")
        return self.run("--export", "--export-options", "export-minimal", address)

    def decrypt_pgp_mime(self, raw: bytes) -> bytes:
        m = re.search(rb"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----", raw, re.S)
        assert m, raw[:800]
        return self.run("--decrypt", input=m.group(0))


def wkd_hash(local: str) -> str:
    """z-base-32 of SHA-1 of the lower-case local part (the WKD draft)."""
    import hashlib
    digest = hashlib.sha1(local.lower().encode()).digest()
    alphabet = "ybndrfg8ejkmcpqxot1uwisza345h769"
    bits = "".join(f"{b:08b}" for b in digest)
    return "".join(alphabet[int(bits[i:i + 5].ljust(5, "0"), 2)] for i in range(0, len(bits), 5))


def dane_label(local: str) -> str:
    import hashlib
    return hashlib.sha256(local.encode()).digest()[:28].hex()


def zone(world, domain: str, receiver, extra=(), signing: str = "good") -> None:
    world.dns.zone(domain, [f"@ MX 10 mx.{domain}.", f"mx A {receiver.address}", *extra], signing=signing)


def der_of(pem: Path) -> bytes:
    return subprocess.run(["openssl", "x509", "-in", str(pem), "-outform", "DER"], capture_output=True,
                          check=True).stdout


def openssl_decrypt(tmp: Path, raw: bytes, cert: Path, key: Path) -> bytes:
    src = tmp / "in.eml"
    src.write_bytes(raw)
    return subprocess.run(["openssl", "cms", "-decrypt", "-in", str(src), "-recip", str(cert), "-inkey", str(key)],
                          capture_output=True, check=True).stdout


def directory_line(gw, address: str) -> str:
    out = gw.cli("directory", "list").stdout
    lines = [line for line in out.splitlines() if address in line]
    assert lines, out
    return lines[0]


def test_keys_found_in_ldap_wkd_and_dane_encrypt_the_mail(world, tmp_path):
    gpg = Gpg(tmp_path / "gnupg")
    # WKD: bob's key on the advanced host openpgpkey.wkd.test.
    web = world.web_server()
    cert, key = world.ca.server(f"openpgpkey.{WKD}")
    web.certificate(f"openpgpkey.{WKD}", cert, key)
    web.put(f"openpgpkey.{WKD}", f"/.well-known/openpgpkey/{WKD}/hu/{wkd_hash('bob')}", gpg.key_for(f"bob@{WKD}"))
    web.put(f"openpgpkey.{WKD}", f"/.well-known/openpgpkey/{WKD}/policy", b"")
    wkd_mx = world.receiver(f"mx.{WKD}")
    zone(world, WKD, wkd_mx, [f"openpgpkey A {web.address}"])
    # DANE: carol's OpenPGP key and dora's S/MIME certificate in the signed zone.
    carol_key = base64.b64encode(gpg.key_for(f"carol@{DANE}")).decode()
    dora_cert, dora_key = world.ca.person(f"dora@{DANE}")
    dane_mx = world.receiver(f"mx.{DANE}")
    zone(world, DANE, dane_mx, [f"{dane_label('carol')}._openpgpkey OPENPGPKEY {carol_key}",
                                f"{dane_label('dora')}._smimecert SMIMEA 3 0 0 {der_of(dora_cert).hex()}"])
    # LDAP: erin's certificate on her inetOrgPerson entry.
    erin_cert, erin_key = world.ca.person(f"erin@{LDAP}")
    ldap_mx = world.receiver(f"mx.{LDAP}")
    zone(world, LDAP, ldap_mx)
    ldif = (
        "dn: dc=example,dc=org\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n"
        "dn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n\n"
        f"dn: uid=erin,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: erin\ncn: Erin\nsn: Erin\n"
        f"mail: erin@{LDAP}\nuserCertificate;binary:: {base64.b64encode(der_of(erin_cert)).decode()}\n"
    )
    ldap = Slapd(tmp_path / "ldap", ldif).start()
    try:
        world.start()
        gw = world.gateway({
            "policy": {"domain": {d: {"action": "encrypt-required"} for d in (WKD, DANE, LDAP)}},
            "discovery": {"order": ["ldap", "wkd", "dane"], "timeout_secs": 10,
                          "ldap": {**ldap.settings(), "filter": "(mail={address})"}},
        })
        rcpts = [f"bob@{WKD}", f"carol@{DANE}", f"dora@{DANE}", f"erin@{LDAP}"]
        send(gw, rcpts, "discovered", "the discovery test")

        bob = wkd_mx.wait_for(b"Subject: discovered", timeout=60)
        assert b"the discovery test" not in bob
        assert b"the discovery test" in gpg.decrypt_pgp_mime(bob)
        got = dane_mx.wait_for(b"Subject: discovered", timeout=60)
        wait_until(lambda: len(dane_mx.messages()) >= 2, 60, what="carol's and dora's copies")
        by_rcpt = {}
        for raw in dane_mx.messages():
            for r in ("carol", "dora"):
                if re.search(rf"(?mi)^Delivered-To: {r}@{DANE}$".encode(), raw):
                    by_rcpt[r] = raw
        assert set(by_rcpt) == {"carol", "dora"}, [m[:300] for m in dane_mx.messages()]
        assert b"the discovery test" not in got
        assert b"the discovery test" in gpg.decrypt_pgp_mime(by_rcpt["carol"])
        assert b"the discovery test" in openssl_decrypt(tmp_path, by_rcpt["dora"], dora_cert, dora_key)
        erin = ldap_mx.wait_for(b"Subject: discovered", timeout=60)
        assert b"the discovery test" not in erin
        assert b"the discovery test" in openssl_decrypt(tmp_path, erin, erin_cert, erin_key)

        # Where each key came from is on record.
        assert "wkd" in directory_line(gw, f"bob@{WKD}")
        assert "dane" in directory_line(gw, f"carol@{DANE}")
        assert "dane" in directory_line(gw, f"dora@{DANE}")
        assert "ldap" in directory_line(gw, f"erin@{LDAP}")
    finally:
        ldap.stop()


def test_a_dane_key_under_a_broken_signature_is_never_used(world, tmp_path):
    gpg = Gpg(tmp_path / "gnupg")
    mx = world.receiver(f"mx.{BAD}")
    key = base64.b64encode(gpg.key_for(f"fred@{BAD}")).decode()
    zone(world, BAD, mx, [f"{dane_label('fred')}._openpgpkey OPENPGPKEY {key}"],
         signing="bad-signature:OPENPGPKEY")
    world.start()
    gw = world.gateway({
        "policy": {"domain": {BAD: {"action": "encrypt-required"}}},
        "discovery": {"order": ["dane"], "timeout_secs": 5},
    })
    send(gw, [f"fred@{BAD}"], "bogus", "must not leave in clear")

    def waiting():
        st = recipient_states(gw).get(f"fred@{BAD}")
        return st if st and st["state"] in ("held", "deferred") else None
    st = wait_until(waiting, 60, what="fred's message waiting")
    time.sleep(3)
    assert mx.messages() == [], "a key under a broken signature was used, or the mail went in clear"
    assert f"fred@{BAD}" not in gw.cli("directory", "list").stdout
    print("fred:", st)
