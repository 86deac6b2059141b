"""One message, five recipients, five outcomes, through real peers
(Postfix upstream, Sealgate on SoftHSM2, smtp-sink downstream). The
internal sender encrypts for the gateway with `openssl cms`; the gateway
opens it on its token and then, per recipient:

- bob@ext.example (S/MIME certificate): enveloped data openssl opens with
  bob's key and nobody else's;
- dan@ext.example (gpg key): PGP/MIME that gpg opens;
- pat@partner.example (partner domain's gateway certificate): enveloped
  data the partner's key opens;
- ceo@bank.example (encryption required, no key): held, nothing at the sink;
- carol@example.org (internal): the plaintext with the verdict header.

Nothing external ever reaches the sink in clear."""

import re
import subprocess
import time

import pytest

from helpers import (arrivals, crlf, gpg_recipient, inner_entity, mime_parts, openssl_decrypt, pgp_decrypt,
                     smime_for, submit, wait_arrivals)
from test_directory import events, make_cert
from test_policy import SENDER, statuses, wait_status

EXTERNAL = ["bob@ext.example", "dan@ext.example", "pat@partner.example", "ceo@bank.example"]
INTERNAL = "carol@example.org"


def test_five_recipients_five_outcomes(peers, gnupg, tmp_path):
    sink = peers.sink()
    gw = peers.gateway("gw", sink)
    postfix = peers.postfix(gw)
    gw.cli("directory", "import", make_cert(tmp_path, "bob", "bob@ext.example"))
    gw.cli("directory", "import", str(gpg_recipient(gnupg, tmp_path, "Dan", "dan@ext.example")))
    gw.cli("directory", "import", make_cert(tmp_path, "partnergw", None), "--domain", "partner.example")

    marker = "MIXED-E2E-PLAINTEXT-51e8"
    inner = inner_entity(marker)
    rcpts = [*EXTERNAL, INTERNAL]
    message = smime_for(tmp_path, gw.home / "gateway.pem", inner, ", ".join(rcpts), "five ways")
    submit(postfix, rcpts, message)

    delivered = {"bob@ext.example", "dan@ext.example", "pat@partner.example", INTERNAL}
    got = wait_arrivals(sink, delivered)
    entries = wait_status(gw, lambda e: statuses(e).get("ceo@bank.example") == "held", timeout=60)
    held = [r for e in entries for r in e["recipients"] if r["state"] == "held"]
    assert [r["address"] for r in held] == ["ceo@bank.example"]
    assert "encryption required" in held[0]["reason"]["text"]
    assert "ceo@bank.example" in gw.cli("queue", "list").stdout
    # The sender hears of the hold (headers only, no content)...
    notice = wait_arrivals(sink, {SENDER})[SENDER][0]
    assert b"Action: delayed" in notice.raw and b"ceo@bank.example" in notice.raw
    # ...and a release decides again: still no key, held again, nothing sent.
    gw.cli("queue", "release", entries[0]["queue_id"])
    deadline = time.monotonic() + 60
    while sum(e["kind"] == "held" for e in events(gw, "ceo@bank.example")) < 2:
        assert time.monotonic() < deadline, events(gw, "ceo@bank.example")
        time.sleep(0.2)
    wait_status(gw, lambda e: statuses(e).get("ceo@bank.example") == "held", timeout=60)
    everything = arrivals(sink)
    assert not [a for a in everything if "ceo@bank.example" in a.rcpts]

    # One copy per recipient, each addressed to that recipient alone.
    for r in delivered:
        copies = [a for a in everything if r in a.rcpts]
        assert len(copies) == 1 and copies[0].rcpts == [r], (r, [a.rcpts for a in copies])
    # The plaintext only ever reaches internal addresses (carol; the sender's
    # delay notice, if it quotes anything).
    for a in everything:
        if marker.encode() in a.raw:
            assert set(a.rcpts) <= {INTERNAL, SENDER}, a.rcpts

    bob, dan, pat, carol = (got[r][0] for r in ["bob@ext.example", "dan@ext.example", "pat@partner.example", INTERNAL])
    enveloped = rb"(?im)^Content-Type: application/pkcs7-mime;.*smime-type=enveloped-data"
    # S/MIME recipient: bob's key, and only bob's, opens his copy.
    assert re.search(enveloped, bob.raw)
    assert crlf(openssl_decrypt(tmp_path, bob.raw, tmp_path / "bob.key", tmp_path / "bob.pem")) == inner
    with pytest.raises(subprocess.CalledProcessError):
        openssl_decrypt(tmp_path, bob.raw, tmp_path / "partnergw.key", tmp_path / "partnergw.pem")
    # OpenPGP recipient: PGP/MIME for dan's gpg key.
    assert crlf(pgp_decrypt(gnupg, dan)) == inner
    # Partner domain: encrypted for the partner gateway's certificate.
    assert re.search(enveloped, pat.raw)
    assert crlf(openssl_decrypt(tmp_path, pat.raw, tmp_path / "partnergw.key", tmp_path / "partnergw.pem")) == inner
    with pytest.raises(subprocess.CalledProcessError):
        openssl_decrypt(tmp_path, pat.raw, tmp_path / "bob.key", tmp_path / "bob.pem")
    # Internal: in clear, the sender's content, with the gateway's verdict.
    assert carol.parsed.get_content_type() == "multipart/mixed"
    assert mime_parts(carol.raw) == mime_parts(inner)
    assert re.search(rb"(?m)^X-Sealgate-Verdict: decrypted=smime; ", carol.raw)
    for external in (bob, dan, pat):
        assert b"X-Sealgate-Verdict" not in external.raw
