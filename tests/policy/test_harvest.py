"""Harvesting: a correspondent's certificate or key that comes with their
mail (an S/MIME signature made by `openssl cms -sign`, an Autocrypt header
with a key made by GnuPG) is stored in the directory, and mail held for
them is released encrypted to it — the "reply signed" way of providing a
certificate — where the administrator trusts keys taken from mail for the
domain (`trust_harvested_keys`; without it see test_key_substitution.py). A key that comes in the Key Block of a signature inside mail
encrypted for the gateway (`gpg --sign --encrypt --include-key-block`) is
taken too. A certificate that names another address than From is not
taken."""

import base64
import email
import email.policy
import json
import re
import subprocess

from smtp_conftest import send_message, wait_outbox
from test_directory import decrypt_cms, make_cert
from test_policy import POLICY, SENDER, envelope_to, msg, statuses, wait_status
from test_unwrap_openpgp import gw_with_openpgp  # noqa: F401 (fixture)

SIGN_AND_ENCRYPT = "digitalSignature,keyEncipherment"
# The administrator accepts keys from mail (trust on first use) for ext.example.
TRUSTING = {**POLICY, "domain": {**POLICY["domain"], "ext.example": {"trust_harvested_keys": True}}}


def signed_reply(tmp_path, name: str, sender: str, to: str, body: str) -> bytes:
    """A reply signed by `name`'s test certificate (openssl, detached)."""
    inner = tmp_path / f"{name}-reply.txt"
    inner.write_bytes(f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n".encode())
    out = subprocess.run(["openssl", "cms", "-sign", "-in", str(inner), "-signer", str(tmp_path / f"{name}.pem"),
                          "-inkey", str(tmp_path / f"{name}.key"), "-from", sender, "-to", to,
                          "-subject", "Re: offer"], capture_output=True, check=True).stdout
    return out.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def directory_entries(gw) -> list[dict]:
    return json.loads(gw.cli("directory", "list", "--json").stdout)


def test_signed_reply_releases_held_mail_encrypted_to_the_signer(gateway_factory, tmp_path):
    gw = gateway_factory({"policy": TRUSTING})
    send_message(gw.port, SENDER, ["dan@ext.example"], msg("[secure] offer", "the held offer"))
    wait_status(gw, lambda e: statuses(e).get("dan@ext.example") == "held")
    make_cert(tmp_path, "dan", "dan@ext.example", usage=SIGN_AND_ENCRYPT)
    send_message(gw.port, "dan@ext.example", [SENDER],
                 signed_reply(tmp_path, "dan", "dan@ext.example", SENDER, "yes, send it"))
    got = wait_outbox(gw, lambda m: any("dan@ext.example" in envelope_to(x) for x in m), timeout=30)
    dan = [x for x in got if "dan@ext.example" in envelope_to(x)][0]
    assert b"the held offer" not in dan
    assert b"the held offer" in decrypt_cms(tmp_path, dan, "dan")
    entry = [e for e in directory_entries(gw) if "dan@ext.example" in e["addresses"]][0]
    assert entry["trust"] == "harvested" and entry["source"].startswith("harvested:")


def test_autocrypt_key_releases_held_mail_as_pgp_mime(gateway_factory, gnupg, tmp_path):
    gw = gateway_factory({"policy": TRUSTING})
    send_message(gw.port, SENDER, ["erin@ext.example"], msg("[secure] plan", "the held plan"))
    wait_status(gw, lambda e: statuses(e).get("erin@ext.example") == "held")
    gnupg("--quick-gen-key", "Erin <erin@ext.example>", "future-default", "default", "never")
    keydata = base64.b64encode(gnupg("--export", "erin@ext.example").stdout).decode()
    folded = "\r\n ".join(keydata[i:i + 72] for i in range(0, len(keydata), 72))
    header = f"Autocrypt: addr=erin@ext.example; keydata=\r\n {folded}\r\n"
    send_message(gw.port, "erin@ext.example", [SENDER],
                 msg("Re: plan", "send it", extra=header, sender="erin@ext.example"))
    got = wait_outbox(gw, lambda m: any("erin@ext.example" in envelope_to(x) for x in m), timeout=30)
    erin = [x for x in got if "erin@ext.example" in envelope_to(x)][0]
    assert b"the held plan" not in erin
    parsed = email.message_from_bytes(erin, policy=email.policy.compat32)
    assert parsed.get_content_type() == "multipart/encrypted"
    armored = parsed.get_payload()[1].get_payload(decode=False)
    assert b"the held plan" in gnupg("--decrypt", input=armored.encode()).stdout


def test_certificate_for_another_address_is_not_harvested(gateway_factory, tmp_path):
    gw = gateway_factory({"policy": POLICY})
    make_cert(tmp_path, "mallory", "victim@ext.example", usage=SIGN_AND_ENCRYPT)
    send_message(gw.port, "mallory@ext.example", [SENDER],
                 signed_reply(tmp_path, "mallory", "mallory@ext.example", SENDER, "trust me"))
    wait_outbox(gw, lambda m: any(SENDER in envelope_to(x) for x in m))
    assert not [e for e in directory_entries(gw) if "victim@ext.example" in e["addresses"]]
    assert not [e for e in directory_entries(gw) if "mallory@ext.example" in e["addresses"]]


def signed_pgp_mime_for_gateway(gnupg, key_block: bool, subject: str, body: str) -> bytes:
    """PGP/MIME from SENDER to carol@example.org, signed by SENDER's gpg key
    and encrypted for the gateway's OpenPGP certificate, the signer's
    certificate in the signature's Key Block if `key_block`."""
    inner = f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n".encode()
    args = ["--armor", "--trust-model", "always", "--sign", "--local-user", SENDER]
    if key_block:
        args.append("--include-key-block")
    args += ["--encrypt", "--recipient", "gateway@example.org"]
    armored = gnupg(*args, input=inner).stdout.decode().replace("\r\n", "\n").replace("\n", "\r\n")
    b = "sealgate-test-boundary"
    return (f"From: {SENDER}\r\nTo: carol@example.org\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="{b}"\r\n'
            f"\r\n--{b}\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
            f'\r\n--{b}\r\nContent-Type: application/octet-stream; name="encrypted.asc"\r\n\r\n'
            f"{armored}\r\n--{b}--\r\n").encode()


def test_key_block_inside_mail_encrypted_for_the_gateway_is_harvested(gw_with_openpgp, gnupg):  # noqa: F811
    gw = gw_with_openpgp
    gnupg("--quick-gen-key", f"Alice <{SENDER}>", "future-default", "default", "never")
    fpr = re.search(r"(?m)^fpr:+([0-9A-F]{40}):",
                    gnupg("--with-colons", "--list-keys", SENDER).stdout.decode()).group(1)

    def send(subject: str, key_block: bool) -> bytes:
        send_message(gw.port, SENDER, ["carol@example.org"],
                     signed_pgp_mime_for_gateway(gnupg, key_block, subject, f"body of {subject}"))
        got = wait_outbox(gw, lambda m: any(subject.encode() in x for x in m), timeout=30)
        return [x for x in got if subject.encode() in x][0]

    # Without the key block there is no certificate to check or to take.
    carol = send("no key block", False)
    assert b"body of no key block" in carol
    assert re.search(rb"(?m)^X-Sealgate-Verdict: decrypted=openpgp;.*signature=invalid", carol), carol[:600]
    assert not [e for e in directory_entries(gw) if SENDER in e["addresses"]]
    # With it: the signature checks against the carried certificate, which is stored.
    carol = send("with key block", True)
    assert b"body of with key block" in carol
    assert re.search(rb"(?m)^X-Sealgate-Verdict: decrypted=openpgp;.*signature=valid-unknown-key", carol), \
        carol[:600]
    entry = [e for e in directory_entries(gw) if SENDER in e["addresses"]][0]
    assert entry["fingerprint"].upper() == fpr
    assert entry["trust"] == "harvested" and entry["source"].startswith("harvested:")
