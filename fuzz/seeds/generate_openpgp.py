#!/usr/bin/env python3
"""Writes the seeds of the openpgp_parse fuzz target: fuzz/seeds/openpgp_parse/.

MIME skeletons with the OpenPGP shapes the engine looks for (multipart/signed,
multipart/encrypted, inline armor, Autocrypt header, application/pgp-keys) and
a few bare packet headers. No key material: the fuzzer finds its own. Run it
after changing the seeds; the output is committed.
"""

import base64
from pathlib import Path

OUT = Path(__file__).resolve().parent / "openpgp_parse"


def armor(kind, body):
    b64 = base64.b64encode(body).decode()
    return f"-----BEGIN PGP {kind}-----\r\n\r\n{b64}\r\n=AAAA\r\n-----END PGP {kind}-----\r\n"


# Packet headers: old-format public key, new-format signature, compressed, SEIPD v2.
PACKETS = {
    "public_key": b"\x99\x00\x0d\x04\x00\x00\x00\x00\x01\x00\x01\x01\x00\x01\x01",
    "signature": b"\xc2\x0c\x04\x00\x01\x08\x00\x00\x00\x00\x00\x00\x00\x00",
    "compressed": b"\xc8\x05\x01\x63\x60\x00\x00",
    "seipd_v2": b"\xd2\x08\x02\x09\x02\x06" + bytes(2),
}

SEEDS = {
    "signed_mime": (
        "From: a@example.org\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/signed; micalg=pgp-sha256; protocol="application/pgp-signature"; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\n"
        "Content-Type: application/pgp-signature\r\n\r\n"
        + armor("SIGNATURE", PACKETS["signature"])
        + "--b--\r\n"
    ).encode(),
    "encrypted_mime": (
        "From: a@example.org\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--b\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
        + armor("MESSAGE", PACKETS["seipd_v2"])
        + "--b--\r\n"
    ).encode(),
    "inline_clearsigned": (
        "From: a@example.org\r\nContent-Type: text/plain\r\n\r\n"
        "-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nhello\r\n"
        + armor("SIGNATURE", PACKETS["signature"])
    ).encode(),
    "autocrypt": (
        "From: a@example.org\r\nAutocrypt: addr=a@example.org; keydata="
        + base64.b64encode(PACKETS["public_key"]).decode()
        + "\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
    ).encode(),
    "pgp_keys_part": (
        'From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="k"\r\n\r\n'
        "--k\r\nContent-Type: application/pgp-keys\r\n\r\n"
        + armor("PUBLIC KEY BLOCK", PACKETS["public_key"])
        + "--k--\r\n"
    ).encode(),
}
SEEDS.update({f"packet_{k}": v for k, v in PACKETS.items()})

OUT.mkdir(parents=True, exist_ok=True)
for name, data in SEEDS.items():
    (OUT / name).write_bytes(data)
