"""S/MIME click-to-encrypt through real peers: the internal sender's client
encrypts for the gateway with `openssl cms -encrypt` (to the gateway's
certificate exported from its SoftHSM2 token) and submits to a real Postfix
(upstream MTA, relayhost = Sealgate); Sealgate opens it on the token and
delivers it through smtp-sink (the real downstream peer) S/MIME-encrypted
to the external recipient's own certificate; `openssl cms -decrypt` with
the recipient's key gives back exactly the entity the sender encrypted."""

import re

from helpers import arrivals, crlf, inner_entity, mime_parts, openssl_decrypt, smime_for, submit, wait_arrivals
from test_directory import make_cert


def test_smime_for_the_gateway_arrives_encrypted_for_the_recipient(peers, tmp_path):
    sink = peers.sink()
    gw = peers.gateway("gw", sink)
    postfix = peers.postfix(gw)
    bob = make_cert(tmp_path, "bob", "bob@ext.example")
    gw.cli("directory", "import", bob)

    marker = "SMIME-E2E-PLAINTEXT-7f3a"
    inner = inner_entity(marker)
    message = smime_for(tmp_path, gw.home / "gateway.pem", inner, "bob@ext.example", "board figures")
    assert marker.encode() not in message
    submit(postfix, ["bob@ext.example"], message)

    got = wait_arrivals(sink, {"bob@ext.example"})
    assert len(got["bob@ext.example"]) == 1
    arrival = got["bob@ext.example"][0]
    assert arrival.rcpts == ["bob@ext.example"]
    # It went through both real MTAs: Postfix, then Sealgate.
    assert b"by upstream.test (Postfix)" in arrival.raw and b"by gw.test (Sealgate)" in arrival.raw
    # Encrypted again, to bob: no plaintext anywhere at the sink.
    for a in arrivals(sink):
        assert marker.encode() not in a.raw
    assert re.search(rb"(?im)^Content-Type: application/pkcs7-mime;.*smime-type=enveloped-data", arrival.raw)
    assert arrival.parsed["Subject"] == "board figures"
    # bob's own key opens it, to exactly the entity the sender encrypted.
    decrypted = openssl_decrypt(tmp_path, arrival.raw, tmp_path / "bob.key", tmp_path / "bob.pem")
    assert crlf(decrypted) == inner
    assert mime_parts(decrypted) == mime_parts(inner)
    # The gateway's own verdict is for internal recipients only.
    assert b"X-Sealgate-Verdict" not in arrival.raw
