"""Key substitution by mail, tried as an attacker would (issue 12).

`[secure]` mail for victim@partner.test (no key) is held. Then a client
outside the internal networks sends mail `From: victim@partner.test`, no
DKIM, with an `Autocrypt:` header carrying a key the attacker made. A key
taken from mail is trust on first use: it must never satisfy
encrypt-required and never release held mail (unless an administrator
said so for that domain); it may still serve encrypt-if-possible. A key an
administrator imported is never displaced by such mail."""

import base64
import email
import email.policy
import json
import subprocess
import time

import pytest

from smtp_conftest import send_message, wait_outbox
from test_policy import POLICY, SENDER, envelope_to, msg, statuses, wait_status

VICTIM = "victim@partner.test"
# Clients from 127.0.0.1 are internal; 127.0.0.2 is the Internet.
OUTSIDE = "127.0.0.2"
SETTINGS = {"policy": POLICY, "relay": {"domains": ["example.org"], "internal_networks": ["127.0.0.1/32"]}}


def autocrypt_header(gnupg, uid: str, address: str) -> str:
    gnupg("--quick-gen-key", f"{uid} <{address}>", "future-default", "default", "never")
    keydata = base64.b64encode(gnupg("--export", address).stdout).decode()
    folded = "\r\n ".join(keydata[i:i + 72] for i in range(0, len(keydata), 72))
    return f"Autocrypt: addr={address}; keydata=\r\n {folded}\r\n"


def attacker_mail(gnupg, address: str) -> str:
    """Mail from outside under the victim's From, carrying the attacker's key."""
    header = autocrypt_header(gnupg, "Not Really The Victim", address)
    return msg("hello again", "nothing to see", extra=header, sender=address)


def wait_attacker_mail_delivered(gw):
    wait_outbox(gw, lambda m: any(SENDER in envelope_to(x) and b"nothing to see" in x for x in m))


def directory(gw) -> list[dict]:
    return json.loads(gw.cli("directory", "list", "--json").stdout)


def copies_for(gw, address: str) -> list[bytes]:
    return [m for m in (gw.outbox.glob("*.eml") if gw.outbox.exists() else [])
            if address in envelope_to(m.read_bytes())]


def pgp_payload(raw: bytes) -> bytes:
    parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert parsed.get_content_type() == "multipart/encrypted", parsed.get_content_type()
    return parsed.get_payload()[1].get_payload(decode=False).encode()


def test_harvested_key_does_not_release_held_mail_to_the_attacker(gateway_factory, gnupg):
    gw = gateway_factory(SETTINGS)
    send_message(gw.port, SENDER, [VICTIM], msg("[secure] contract", "the secret contract"))
    wait_status(gw, lambda e: statuses(e).get(VICTIM) == "held")

    send_message(gw.port, VICTIM, [SENDER], attacker_mail(gnupg, VICTIM), source=OUTSIDE)
    # The attacker's mail reaches alice, and the key is stored, as trust on first use.
    wait_attacker_mail_delivered(gw)
    harvested = [e for e in directory(gw) if VICTIM in e["addresses"]]
    assert [e["trust"] for e in harvested] == ["harvested"], harvested

    # The held mail stays held: nothing for the victim's address leaves.
    time.sleep(3)
    entries = wait_status(gw, lambda e: statuses(e).get(VICTIM) == "held")
    assert not copies_for(gw, VICTIM), "held mail left, encrypted to a key taken from mail"
    events = json.loads(gw.cli("track", "--to", VICTIM, "--json").stdout)
    assert "released" not in [e["kind"] for e in events], events
    assert len(entries) == 1

    # A second encrypt-required message is held too, not encrypted to that
    # key, and the reason says why.
    send_message(gw.port, SENDER, [VICTIM], msg("[secure] second", "the second secret"))
    entries = wait_status(gw, lambda e: sum(r["state"] == "held" for x in e for r in x["recipients"]) == 2)
    assert not copies_for(gw, VICTIM)
    assert "taken from mail (trust on first use)" in json.dumps(entries), entries

    # Encrypt-if-possible may use it: better than clear.
    send_message(gw.port, SENDER, [VICTIM], msg("lunch", "the lunch plan"))
    got = wait_outbox(gw, lambda m: any(VICTIM in envelope_to(x) for x in m))
    lunch = [x for x in got if VICTIM in envelope_to(x)][0]
    assert b"the lunch plan" not in lunch
    assert b"the lunch plan" in gnupg("--decrypt", input=pgp_payload(lunch)).stdout


def test_administrator_key_is_not_displaced_by_a_key_from_mail(gateway_factory, gnupg, tmp_path):
    gw = gateway_factory(SETTINGS)
    # The administrator imports the real key (made in another keyring).
    real_home = tmp_path / "real-gnupg"
    real_home.mkdir(mode=0o700)
    real = ["--homedir", str(real_home)]
    gnupg(*real, "--quick-gen-key", f"Victim <{VICTIM}>", "future-default", "default", "never")
    (tmp_path / "real.asc").write_bytes(gnupg(*real, "--armor", "--export", VICTIM).stdout)
    gw.cli("directory", "import", str(tmp_path / "real.asc"))

    send_message(gw.port, VICTIM, [SENDER], attacker_mail(gnupg, VICTIM), source=OUTSIDE)
    wait_attacker_mail_delivered(gw)
    send_message(gw.port, SENDER, [VICTIM], msg("[secure] contract", "the secret contract"))
    got = wait_outbox(gw, lambda m: any(VICTIM in envelope_to(x) for x in m))
    copy = [x for x in got if VICTIM in envelope_to(x)][0]
    payload = pgp_payload(copy)
    assert b"the secret contract" in gnupg(*real, "--decrypt", input=payload).stdout
    # The attacker's keyring (the fixture's own home) cannot read it.
    with pytest.raises(subprocess.CalledProcessError):
        gnupg("--decrypt", input=payload)


def test_an_administrator_may_trust_keys_from_mail_for_a_domain(gateway_factory, gnupg):
    policy = {**POLICY, "domain": {**POLICY["domain"], "partner.test": {"trust_harvested_keys": True}}}
    gw = gateway_factory({**SETTINGS, "policy": policy})
    send_message(gw.port, SENDER, [VICTIM], msg("[secure] contract", "the secret contract"))
    wait_status(gw, lambda e: statuses(e).get(VICTIM) == "held")
    send_message(gw.port, VICTIM, [SENDER], attacker_mail(gnupg, VICTIM), source=OUTSIDE)
    got = wait_outbox(gw, lambda m: any(VICTIM in envelope_to(x) for x in m), timeout=30)
    copy = [x for x in got if VICTIM in envelope_to(x)][0]
    assert b"the secret contract" in gnupg("--decrypt", input=pgp_payload(copy)).stdout
