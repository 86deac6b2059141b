"""Invitations to held recipients ([invitations] enabled): the gateway writes
to a recipient whose mail is held for want of a certificate, once per
recipient however many messages wait. The invitation names the sender and
nothing of the message, is S/MIME-signed by the gateway key (openssl
verifies it against the gateway's certificate) and carries the gateway's
OpenPGP certificate in an Autocrypt header (gpg imports it and finds the
same fingerprint `sealgate pgp export-gateway-cert` gives). Its recipient's
domain requires encryption, and it still goes out: the gateway's own
notice is not held like the mail it is about. Replying signed to its From
address releases everything held, encrypted to the signer, where the
administrator trusts keys taken from mail for the recipient's domain
(`trust_harvested_keys`; by default such keys never release held mail,
see test_key_substitution.py)."""

import base64
import email
import email.policy
import subprocess
import time

from smtp_conftest import outbox_messages, send_message, wait_outbox
from test_directory import decrypt_cms, make_cert
from test_harvest import SIGN_AND_ENCRYPT, signed_reply
from test_policy import POLICY, SENDER, envelope_to, msg, statuses, wait_status
from test_unwrap import provisioned_gateway
from test_unwrap_openpgp import GATEWAY_UID

DAN = "dan@bank.example"  # bank.example: encryption required by the domain setting
# The administrator accepts keys from signed replies for bank.example.
TRUSTING = {**POLICY, "domain": {"bank.example": {**POLICY["domain"]["bank.example"], "trust_harvested_keys": True}}}


def is_invitation(raw: bytes) -> bool:
    return DAN in envelope_to(raw) and b"please send your certificate or key" in raw


def autocrypt_keydata(raw: bytes) -> bytes:
    header = email.message_from_bytes(raw, policy=email.policy.compat32)["Autocrypt"]
    fields = dict(part.strip().split("=", 1) for part in "".join(header.split()).split(";"))
    assert fields["addr"] == "gateway@example.org"
    return base64.b64decode(fields["keydata"])


def fingerprints(gnupg, *args) -> list[str]:
    out = gnupg("--with-colons", "--import-options", "show-only", "--import", *args).stdout.decode()
    return [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")]


def test_held_recipient_is_invited_once_and_a_signed_reply_releases_the_mail(tmp_path, gnupg):
    gw = provisioned_gateway(tmp_path, {"policy": TRUSTING, "invitations": {"enabled": True}})
    gw.cli("pgp", "init", "--user-id", GATEWAY_UID)
    gw.cli("pgp", "export-gateway-cert", "--out", str(tmp_path / "gateway.asc"))
    gw.cli("keys", "export-cert", "gateway-sign", "--out", str(tmp_path / "gateway-sign.pem"))
    gw.start()
    try:
        send_message(gw.port, SENDER, [DAN], msg("quarterly figures", "the held figures"))
        got = wait_outbox(gw, lambda m: any(is_invitation(x) for x in m), timeout=30)
        invitation = [x for x in got if is_invitation(x)][0]

        # Nothing of the held message; the sender is named; it comes from the gateway.
        assert b"the held figures" not in invitation and b"quarterly" not in invitation
        assert SENDER.encode() in invitation
        parsed = email.message_from_bytes(invitation, policy=email.policy.default)
        assert parsed["From"].addresses[0].addr_spec == "gateway@example.org"
        assert parsed["Auto-Submitted"] == "auto-generated"
        assert parsed.get_content_type() == "multipart/signed"

        # Signed by the gateway: openssl verifies it against the gateway's certificate.
        signed = tmp_path / "invitation.eml"
        signed.write_bytes(invitation)
        verified = subprocess.run(
            ["openssl", "cms", "-verify", "-in", str(signed), "-CAfile", str(tmp_path / "gateway-sign.pem"),
             "-purpose", "any"], capture_output=True)
        assert verified.returncode == 0, verified.stderr.decode()
        assert b"reply with a digitally signed message" in verified.stdout

        # The Autocrypt key is the gateway's OpenPGP certificate.
        keyfile = tmp_path / "autocrypt.pgp"
        keyfile.write_bytes(autocrypt_keydata(invitation))
        assert fingerprints(gnupg, str(keyfile)) == fingerprints(gnupg, str(tmp_path / "gateway.asc"))

        # A second held message for dan: held, the sender told, no second invitation.
        send_message(gw.port, SENDER, [DAN], msg("more figures", "the second held text"))
        wait_status(gw, lambda e: sum(r["state"] == "held" for x in e for r in x["recipients"]) >= 2,
                    timeout=20)
        wait_outbox(gw, lambda m: sum(b"Delivery delayed" in x and SENDER in envelope_to(x) for x in m) >= 2,
                    timeout=30)
        time.sleep(1)
        assert sum(is_invitation(x) for x in outbox_messages(gw)) == 1

        # Dan replies, signed, to the invitation's From address: both held messages go out to him, encrypted.
        make_cert(tmp_path, "dan", DAN, usage=SIGN_AND_ENCRYPT)
        send_message(gw.port, DAN, ["gateway@example.org"],
                     signed_reply(tmp_path, "dan", DAN, "gateway@example.org", "here is my certificate"))
        got = wait_outbox(gw, lambda m: sum(DAN in envelope_to(x) and not is_invitation(x) for x in m) >= 2,
                          timeout=30)
        bodies = [b"the held figures", b"the second held text"]
        copies = [x for x in got if DAN in envelope_to(x) and not is_invitation(x)]
        assert not any(body in copy for body in bodies for copy in copies)
        opened = [decrypt_cms(tmp_path, copy, "dan") for copy in copies]
        assert all(any(body in text for text in opened) for body in bodies)
    finally:
        gw.stop()


def test_no_invitation_unless_enabled(gateway_factory):
    gw = gateway_factory({"policy": POLICY})
    send_message(gw.port, SENDER, [DAN], msg("figures", "held, nobody invited"))
    wait_status(gw, lambda e: statuses(e).get(DAN) == "held")
    got = wait_outbox(gw, lambda m: any(b"Delivery delayed" in x for x in m), timeout=30)
    time.sleep(1)
    assert not any(DAN in envelope_to(x) for x in outbox_messages(gw))
