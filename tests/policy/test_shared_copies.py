"""One copy for visible recipients (issue 13): To/Cc recipients with their
own S/MIME certificates and the same decision share one encrypted copy
with one RecipientInfo each (as Outlook sends it), and every one of them
opens it with openssl; a Bcc recipient gets a copy of its own and appears
in no other copy. The same for OpenPGP keys, opened with gpg. And
`sealgate pgp encrypt` to a public key needs no token."""

import email
import email.policy
import os
import subprocess

from harness import sealgate_bin
from smtp_conftest import send_message, wait_outbox
from test_directory import decrypt_cms, make_cert
from test_policy import POLICY, SENDER, envelope_to

TO = ["ann@ext.example", "ben@ext.example"]
CC = ["cat@ext.example"]
BCC = "dee@ext.example"


def visible_message(subject: str, body: str) -> str:
    return (f"From: {SENDER}\r\nTo: {', '.join(TO)}\r\nCc: {', '.join(CC)}\r\n"
            f"Subject: [secure] {subject}\r\n\r\n{body}\r\n")


def test_visible_smime_recipients_share_one_copy_and_bcc_has_its_own(gateway_factory, tmp_path):
    gw = gateway_factory({"policy": POLICY})
    for address in TO + CC + [BCC]:
        gw.cli("directory", "import", make_cert(tmp_path, address.split("@")[0], address))
    send_message(gw.port, SENDER, TO + CC + [BCC], visible_message("board", "the board minutes"))
    everyone = set(TO + CC + [BCC])
    got = wait_outbox(gw, lambda m: {r for x in m for r in envelope_to(x)} >= everyone)
    shared = [x for x in got if set(envelope_to(x)) == set(TO + CC)]
    own = [x for x in got if envelope_to(x) == [BCC]]
    assert len(shared) == 1 and len(own) == 1, [envelope_to(x) for x in got]
    assert b"the board minutes" not in shared[0] and b"the board minutes" not in own[0]
    for address in TO + CC:
        assert b"the board minutes" in decrypt_cms(tmp_path, shared[0], address.split("@")[0]), address
    assert b"the board minutes" in decrypt_cms(tmp_path, own[0], "dee")
    # The Bcc recipient can open no other copy, and no copy names it.
    try:
        decrypt_cms(tmp_path, shared[0], "dee")
        raise AssertionError("the Bcc recipient opened the shared copy")
    except subprocess.CalledProcessError:
        pass
    assert not any(BCC.encode() in x for x in shared)
    explained = gw.cli("track", "--to", "ann@ext.example").stdout
    assert "one copy for 3 recipients" in explained, explained


def test_visible_openpgp_recipients_share_one_copy(gateway_factory, gnupg, tmp_path):
    gw = gateway_factory({"policy": POLICY})
    for address in TO:
        gnupg("--quick-gen-key", f"{address.split('@')[0]} <{address}>", "future-default", "default", "never")
        key = tmp_path / f"{address}.asc"
        key.write_bytes(gnupg("--armor", "--export", address).stdout)
        gw.cli("directory", "import", str(key))
    message = (f"From: {SENDER}\r\nTo: {', '.join(TO)}\r\nSubject: [secure] plans\r\n\r\nthe plans\r\n")
    send_message(gw.port, SENDER, TO, message)
    got = wait_outbox(gw, lambda m: {r for x in m for r in envelope_to(x)} >= set(TO))
    assert len(got) == 1 and set(envelope_to(got[0])) == set(TO), [envelope_to(x) for x in got]
    parsed = email.message_from_bytes(got[0], policy=email.policy.compat32)
    armored = parsed.get_payload()[1].get_payload(decode=False).encode()
    packets = gnupg("--list-packets", "--list-only", input=armored).stdout.decode() + \
        gnupg("--list-packets", "--list-only", input=armored).stderr.decode()
    assert packets.count("pubkey enc packet") == 2, packets
    assert b"the plans" in gnupg("--decrypt", input=armored).stdout


def test_pgp_encrypt_to_a_public_key_needs_no_token(gnupg, tmp_path):
    gnupg("--quick-gen-key", "Eve <eve@ext.example>", "future-default", "default", "never")
    key = tmp_path / "eve.asc"
    key.write_bytes(gnupg("--armor", "--export", "eve@ext.example").stdout)
    env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}
    plain = b"From: a@example.org\r\nTo: eve@ext.example\r\nSubject: x\r\nContent-Type: text/plain\r\n\r\nfor eve\r\n"
    out = subprocess.run([sealgate_bin(), "pgp", "encrypt", "--recipient-cert", str(key)], input=plain,
                         capture_output=True, env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    parsed = email.message_from_bytes(out.stdout, policy=email.policy.compat32)
    armored = parsed.get_payload()[1].get_payload(decode=False).encode()
    assert b"for eve" in gnupg("--decrypt", input=armored).stdout
