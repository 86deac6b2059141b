"""Header protection (RFC 9788): with `neutral_subject = true` in a domain's
settings, an encrypted copy shows `Subject: [...]` outside, and the real
Subject (with the other protected fields and `hp="cipher"`) is inside the
encryption, where `openssl cms -decrypt` and `gpg --decrypt` find it."""

import email
import email.policy
import re

from smtp_conftest import send_message, wait_outbox
from test_directory import decrypt_cms, make_cert
from test_policy import POLICY, SENDER, envelope_to, msg

PROTECTING = {**POLICY, "domain": {**POLICY["domain"], "ext.example": {"neutral_subject": True}}}


def test_smime_copy_hides_the_subject_inside(gateway_factory, tmp_path):
    gw = gateway_factory({"policy": PROTECTING})
    gw.cli("directory", "import", make_cert(tmp_path, "bob", "bob@ext.example"))
    send_message(gw.port, SENDER, ["bob@ext.example"], msg("[secure] merger with Initech", "the terms"))
    got = wait_outbox(gw, lambda m: any("bob@ext.example" in envelope_to(x) for x in m))
    bob = [x for x in got if "bob@ext.example" in envelope_to(x)][0]
    head = bob.split(b"\r\n\r\n", 1)[0]
    assert re.search(rb"(?m)^Subject: \[\.\.\.\]\r?$", head), head
    assert b"Initech" not in bob
    inner = decrypt_cms(tmp_path, bob, "bob")
    assert re.search(rb"(?m)^Subject: merger with Initech\r?$", inner), inner[:600]
    assert re.search(rb"(?m)^From: " + SENDER.encode(), inner)
    assert b'hp="cipher"' in inner
    assert re.search(rb"(?m)^HP-Outer: Subject: \[\.\.\.\]", inner)
    assert b"the terms" in inner


def test_openpgp_copy_hides_the_subject_inside(gateway_factory, gnupg, tmp_path):
    gw = gateway_factory({"policy": PROTECTING})
    gnupg("--quick-gen-key", "Dan <dan@ext.example>", "future-default", "default", "never")
    key = tmp_path / "dan.asc"
    key.write_bytes(gnupg("--armor", "--export", "dan@ext.example").stdout)
    gw.cli("directory", "import", str(key))
    send_message(gw.port, SENDER, ["dan@ext.example"], msg("[secure] layoffs list", "names"))
    got = wait_outbox(gw, lambda m: any("dan@ext.example" in envelope_to(x) for x in m))
    raw = [x for x in got if "dan@ext.example" in envelope_to(x)][0]
    assert b"layoffs" not in raw
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert message["Subject"] == "[...]"
    armored = message.get_payload()[1].get_payload(decode=False)
    inner = gnupg("--decrypt", input=armored.encode()).stdout
    assert re.search(rb"(?m)^Subject: layoffs list\r?$", inner), inner[:600]
    assert b'hp="cipher"' in inner


def test_without_the_setting_the_subject_stays(gateway_factory, tmp_path):
    gw = gateway_factory({"policy": POLICY})
    gw.cli("directory", "import", make_cert(tmp_path, "bob", "bob@ext.example"))
    send_message(gw.port, SENDER, ["bob@ext.example"], msg("[secure] quarterly numbers", "n"))
    got = wait_outbox(gw, lambda m: any("bob@ext.example" in envelope_to(x) for x in m))
    bob = [x for x in got if "bob@ext.example" in envelope_to(x)][0]
    assert re.search(rb"(?m)^Subject: quarterly numbers\r?$", bob.split(b"\r\n\r\n", 1)[0])
    assert b'hp="cipher"' not in decrypt_cms(tmp_path, bob, "bob")
