"""Key changes by harvest go to the review queue (issue 16).

partner.test trusts keys taken from mail (`trust_harvested_keys`), so the
first Autocrypt key for victim@partner.test is taken. A second, different
key under the same From is not: it waits for review (`sealgate review`),
and `[secure]` mail for the address waits with it. Accepting the change
releases the mail to the new key; rejecting it releases the mail to the
old key, which stays."""

import base64
import json

from smtp_conftest import send_message, wait_outbox
from test_key_substitution import OUTSIDE, SETTINGS, VICTIM, copies_for, directory, pgp_payload
from test_policy import POLICY, SENDER, envelope_to, msg, statuses, wait_status

TOFU = {**SETTINGS, "policy": {**POLICY, "domain": {**POLICY["domain"],
                                                    "partner.test": {"trust_harvested_keys": True}}}}


def keyring(gnupg, tmp_path, name: str) -> list[str]:
    """A keyring of its own with one key for the victim; its --homedir args."""
    home = tmp_path / name
    home.mkdir(mode=0o700)
    args = ["--homedir", str(home)]
    gnupg(*args, "--quick-gen-key", f"Victim {name} <{VICTIM}>", "future-default", "default", "never")
    return args


def mail_with_key(gnupg, ring: list[str], text: str) -> str:
    keydata = base64.b64encode(gnupg(*ring, "--export", VICTIM).stdout).decode()
    folded = "\r\n ".join(keydata[i:i + 72] for i in range(0, len(keydata), 72))
    header = f"Autocrypt: addr={VICTIM}; keydata=\r\n {folded}\r\n"
    return msg(text, text, extra=header, sender=VICTIM)


def fingerprint(gnupg, ring: list[str]) -> str:
    out = gnupg(*ring, "--with-colons", "--list-keys", VICTIM).stdout.decode()
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")).lower()


def reviews(gw) -> list[dict]:
    return json.loads(gw.cli("review", "list", "--json").stdout)


def change_waits_for_review(gw, gnupg, tmp_path):
    """Old key taken, new key set aside, [secure] mail waiting; (old, new, review)."""
    old = keyring(gnupg, tmp_path, "old")
    new = keyring(gnupg, tmp_path, "new")
    send_message(gw.port, VICTIM, [SENDER], mail_with_key(gnupg, old, "first key"), source=OUTSIDE)
    wait_outbox(gw, lambda m: any(b"first key" in x for x in m))
    assert [e["trust"] for e in directory(gw) if VICTIM in e["addresses"]] == ["harvested"]

    send_message(gw.port, VICTIM, [SENDER], mail_with_key(gnupg, new, "second key"), source=OUTSIDE)
    wait_outbox(gw, lambda m: any(b"second key" in x for x in m))
    waiting = reviews(gw)
    assert len(waiting) == 1, waiting
    assert waiting[0]["address"] == VICTIM
    assert waiting[0]["fingerprint"].lower().endswith(fingerprint(gnupg, new)[-16:])
    # The directory still has only the old key.
    in_use = [e for e in directory(gw) if VICTIM in e["addresses"]]
    assert len(in_use) == 1, in_use

    send_message(gw.port, SENDER, [VICTIM], msg("[secure] contract", "the secret contract"))
    entries = wait_status(gw, lambda e: statuses(e).get(VICTIM) == "held")
    assert "review a key change" in json.dumps(entries), entries
    assert not copies_for(gw, VICTIM)
    shown = gw.cli("review", "show", waiting[0]["id"]).stdout
    assert "new key:" in shown and "keys in use:" in shown and "BEGIN PGP PUBLIC KEY" in shown
    return old, new, waiting[0]


def secret_copy(gw) -> bytes:
    got = wait_outbox(gw, lambda m: any(VICTIM in envelope_to(x) for x in m), timeout=30)
    return pgp_payload([x for x in got if VICTIM in envelope_to(x)][0])


def test_accepting_a_key_change_releases_mail_to_the_new_key(gateway_factory, gnupg, tmp_path):
    gw = gateway_factory(TOFU)
    _, new, review = change_waits_for_review(gw, gnupg, tmp_path)
    gw.cli("review", "accept", review["id"])
    assert b"the secret contract" in gnupg(*new, "--decrypt", input=secret_copy(gw)).stdout
    assert reviews(gw) == []
    entries = [e for e in directory(gw) if VICTIM in e["addresses"]]
    assert [e["trust"] for e in entries] == ["manual"], entries
    audit = gw.cli("audit", "--json").stdout
    assert "review.accept" in audit


def test_rejecting_a_key_change_keeps_the_old_key(gateway_factory, gnupg, tmp_path):
    gw = gateway_factory(TOFU)
    old, _, review = change_waits_for_review(gw, gnupg, tmp_path)
    gw.cli("review", "reject", review["id"])
    assert b"the secret contract" in gnupg(*old, "--decrypt", input=secret_copy(gw)).stdout
    assert reviews(gw) == []
    entries = [e for e in directory(gw) if VICTIM in e["addresses"]]
    assert [e["trust"] for e in entries] == ["harvested"], entries
