"""Harvesting bound to an authenticated sender (issue 16): a key that
arrives in an `Autocrypt:` header counts as `harvested-dkim` only when
the mail's `From` domain signed it (DKIM, aligned), verified through the
gateway's DNS (a DNSSEC-signed Knot zone behind Unbound publishing the
selector's key). With `required_trust = "harvested-dkim"` for the domain,
such a key releases held encrypt-required mail, and the mail arrives
encrypted at the recipient's MX; the same header under a forged `From`
(no DKIM) is kept as `harvested` and releases nothing.

Peers: dkimpy signs, gpg makes the keys and decrypts, Postfix receives."""

import base64
import subprocess

import dkim

from conftest import recipient_states, send, wait_until
from test_discovery import Gpg, zone

DOMAIN = "partner.test"
SELECTOR = "s2026"


def dkim_keys(tmp_path) -> tuple[bytes, str]:
    """An RSA key for signing and its DNS TXT record value (p= is the
    SubjectPublicKeyInfo, base64)."""
    key = tmp_path / "dkim.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key)],
                   check=True, capture_output=True)
    spki = subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-outform", "DER"], check=True,
                          capture_output=True).stdout
    return key.read_bytes(), f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}"


def txt_record(value: str) -> str:
    """A TXT record's data in 255-octet strings."""
    chunks = [value[i:i + 250] for i in range(0, len(value), 250)]
    return " ".join(f'"{c}"' for c in chunks)


def autocrypt_mail(sender: str, keydata: bytes, subject: str) -> bytes:
    b64 = base64.b64encode(keydata).decode()
    folded = "\r\n ".join(b64[i:i + 76] for i in range(0, len(b64), 76))
    return (f"From: <{sender}>\r\nTo: <carol@example.org>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@{DOMAIN}>\r\n"
            f"Autocrypt: addr={sender}; prefer-encrypt=mutual; keydata=\r\n {folded}\r\n"
            f"\r\nhello from {sender}\r\n").encode()


def held(gw, address: str) -> bool:
    st = recipient_states(gw).get(address)
    return bool(st) and st["state"] == "held"


def test_a_dkim_signed_autocrypt_key_releases_held_mail_a_forged_one_does_not(world, tmp_path):
    gpg = Gpg(tmp_path / "gnupg")
    private, record = dkim_keys(tmp_path)
    mx = world.receiver(f"mx.{DOMAIN}")
    zone(world, DOMAIN, mx, [f"{SELECTOR}._domainkey TXT {txt_record(record)}"])
    world.start()
    gw = world.gateway({
        "relay": {"domains": ["example.org"], "internal_networks": ["127.0.0.1/32"]},
        "policy": {"domain": {DOMAIN: {"action": "encrypt-required", "required_trust": "harvested-dkim"}}},
    })
    bob, mallory_victim = f"bob@{DOMAIN}", f"dan@{DOMAIN}"
    send(gw, [bob, mallory_victim], "secret", "the held secret", source="127.0.0.1")
    wait_until(lambda: held(gw, bob) and held(gw, mallory_victim), 30, what="both recipients held")

    # A forged From: dan's "key" arrives without DKIM. Kept, not trusted enough.
    forged = autocrypt_mail(mallory_victim, gpg.key_for(mallory_victim), "forged")
    send(gw, ["carol@example.org"], "", sender=mallory_victim, raw=forged, source="127.0.0.2")
    # bob's key, in mail his domain signed.
    signed = autocrypt_mail(bob, gpg.key_for(bob), "signed")
    signature = dkim.sign(signed, SELECTOR.encode(), DOMAIN.encode(), private,
                          include_headers=[b"from", b"to", b"subject", b"message-id", b"autocrypt"])
    send(gw, ["carol@example.org"], "", sender=bob, raw=signature + signed, source="127.0.0.2")

    got = mx.wait_for(b"Subject: secret", timeout=60)
    assert f"Delivered-To: {bob}".encode() in got, got[:400]
    assert b"the held secret" not in got
    assert b"the held secret" in gpg.decrypt_pgp_mime(got)

    listing = gw.cli("directory", "list").stdout
    bob_line = next(line for line in listing.splitlines() if bob in line)
    dan_line = next(line for line in listing.splitlines() if mallory_victim in line)
    assert "harvested-dkim" in bob_line, listing
    assert "harvested" in dan_line and "harvested-dkim" not in dan_line, listing
    assert held(gw, mallory_victim), recipient_states(gw).get(mallory_victim)
    assert all(f"Delivered-To: {mallory_victim}".encode() not in m for m in mx.messages())
    # Tracking says what DKIM said about each.
    track = gw.cli("track", "--from", bob).stdout + gw.cli("track", "--from", mallory_victim).stdout
    assert f"DKIM pass ({DOMAIN})" in track, track[-1500:]
    assert "DKIM none" in track, track[-1500:]
