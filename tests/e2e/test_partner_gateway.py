"""Gateway to gateway: two Sealgate daemons, each with its own data
directory and SoftHSM2 token, act as two organisations. The sender's mail
goes through a real Postfix into the first gateway, which encrypts it
S/MIME for the partner domain's gateway certificate (imported with
`sealgate directory import --domain partner.example`) and delivers it to
the second gateway; that one opens it on its own token and delivers it in
clear, with its X-Sealgate-Verdict header, to smtp-sink for its internal
recipient. Peers: Postfix, two Sealgates on SoftHSM2, smtp-sink."""

import re

from helpers import arrivals, inner_entity, mime_parts, plain_message, submit, wait_arrivals
from test_policy import POLICY

PARTNER_POLICY = {**POLICY, "domain": {**POLICY["domain"], "partner.example": {"action": "encrypt-required"}}}


def partner_pair(peers, tmp_path):
    """(first gateway, its Postfix, the partner gateway, the partner's sink)."""
    partner_sink = peers.sink()
    partner = peers.gateway("partner", partner_sink, relay_domains=["partner.example"],
                            hostname="gw.partner.example")
    gw = peers.gateway("gw", partner, policy=PARTNER_POLICY)
    out = gw.cli("directory", "import", str(partner.home / "gateway.pem"), "--domain", "partner.example")
    assert "partner.example" in out.stdout, out.stdout
    return gw, peers.postfix(gw), partner, partner_sink


def test_partner_gateway_opens_what_the_first_gateway_encrypted(peers, tmp_path):
    gw, postfix, partner, partner_sink = partner_pair(peers, tmp_path)
    marker = "PARTNER-E2E-PLAINTEXT-9b02"
    message = plain_message(inner_entity(marker), "pat@partner.example", "joint venture")
    submit(postfix, ["pat@partner.example"], message)

    got = wait_arrivals(partner_sink, {"pat@partner.example"})
    assert len(got["pat@partner.example"]) == 1
    pat = got["pat@partner.example"][0]
    # Both gateways handled it: the first (from Postfix), then the partner's.
    received = re.findall(rb"(?m)^Received: from (\S+) .*\n\tby (\S+) \((\w+)\)", pat.raw)
    assert received[:3] == [(b"gw.test", b"gw.partner.example", b"Sealgate"),
                            (b"upstream.test", b"gw.test", b"Sealgate"),
                            (b"client.example.org", b"upstream.test", b"Postfix")], received
    # The partner gateway opened it on its token: its verdict says so...
    assert re.search(rb"(?m)^X-Sealgate-Verdict: decrypted=smime; ", pat.raw), pat.raw[:800]
    # ...and pat gets exactly what the sender wrote, in clear.
    assert mime_parts(pat.raw) == mime_parts(message)
    assert pat.parsed["Subject"] == "joint venture"
    assert len(arrivals(partner_sink)) == 1
    # The first gateway encrypted it for the partner domain's certificate.
    track = gw.cli("track", "--to", "pat@partner.example").stdout
    assert "encrypted for partner gateway certificate" in track and "(domain partner.example)" in track, track
    for a in arrivals(partner_sink):
        assert b"application/pkcs7-mime" not in a.raw  # opened, not passed on
