"""A recipient with an OpenPGP key from GnuPG: imported into the directory,
their held mail is released and arrives as PGP/MIME that `gpg --decrypt`
opens; S/MIME comes first when a recipient has both (policy.methods)."""

import email
import email.policy

from smtp_conftest import send_message, wait_outbox
from test_directory import make_cert
from test_policy import POLICY, SENDER, envelope_to, msg, statuses, wait_status


def test_openpgp_recipient_gets_pgp_mime(gateway_factory, gnupg, tmp_path):
    gw = gateway_factory({"policy": POLICY})
    gnupg("--quick-gen-key", "Dan <dan@ext.example>", "future-default", "default", "never")
    key = tmp_path / "dan.asc"
    key.write_bytes(gnupg("--armor", "--export", "dan@ext.example").stdout)
    send_message(gw.port, SENDER, ["dan@ext.example"], msg("[secure] for dan", "pgp secret"))
    wait_status(gw, lambda e: statuses(e).get("dan@ext.example") == "held")
    out = gw.cli("directory", "import", str(key))
    assert "dan@ext.example" in out.stdout, out.stdout
    got = wait_outbox(gw, lambda m: any("dan@ext.example" in envelope_to(x) for x in m))
    raw = [x for x in got if "dan@ext.example" in envelope_to(x)][0]
    assert b"pgp secret" not in raw
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert message.get_content_type() == "multipart/encrypted"
    assert message.get_param("protocol") == "application/pgp-encrypted"
    armored = message.get_payload()[1].get_payload(decode=False)
    plain = gnupg("--decrypt", input=armored.encode()).stdout
    assert b"pgp secret" in plain
    listed = gw.cli("directory", "list").stdout
    assert "openpgp" in listed and "dan@ext.example" in listed


def test_smime_is_preferred_when_both_exist(gateway_factory, gnupg, tmp_path):
    gw = gateway_factory({"policy": POLICY})
    gnupg("--quick-gen-key", "Eve <eve@ext.example>", "future-default", "default", "never")
    key = tmp_path / "eve.asc"
    key.write_bytes(gnupg("--armor", "--export", "eve@ext.example").stdout)
    gw.cli("directory", "import", str(key))
    gw.cli("directory", "import", make_cert(tmp_path, "eve", "eve@ext.example"))
    send_message(gw.port, SENDER, ["eve@ext.example"], msg("[secure] both", "x"))
    got = wait_outbox(gw, lambda m: any("eve@ext.example" in envelope_to(x) for x in m))
    raw = [x for x in got if "eve@ext.example" in envelope_to(x)][0]
    assert b"application/pkcs7-mime" in raw
