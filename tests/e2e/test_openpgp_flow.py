"""OpenPGP click-to-encrypt through real peers: the internal sender's
client encrypts PGP/MIME with GnuPG for the gateway's OpenPGP certificate
(made on the SoftHSM2 token by `sealgate pgp init` and exported) and
submits to a real Postfix relaying to Sealgate; Sealgate opens it on the
token and delivers through smtp-sink PGP/MIME encrypted to the external
recipient's gpg-generated key (imported with `sealgate directory import`);
`gpg --decrypt` with the recipient's key gives back exactly the entity the
sender encrypted."""

from helpers import arrivals, crlf, gpg_recipient, inner_entity, mime_parts, pgp_decrypt, submit, wait_arrivals
from test_unwrap_openpgp import GATEWAY_UID, pgp_mime


def openpgp_gateway(peers, gnupg, name, downstream, **kw):
    """A token-backed gateway with its OpenPGP identity, whose certificate
    the sender's gpg knows."""
    gw = peers.gateway(name, downstream, start=False, **kw)
    gw.cli("pgp", "init", "--user-id", GATEWAY_UID)
    cert = gw.home / "gateway.asc"
    gw.cli("pgp", "export-gateway-cert", "--out", str(cert))
    gnupg("--import", str(cert))
    return gw.start()


def test_openpgp_for_the_gateway_arrives_pgp_mime_for_the_recipient(peers, gnupg, tmp_path):
    sink = peers.sink()
    gw = openpgp_gateway(peers, gnupg, "gw", sink)
    postfix = peers.postfix(gw)
    out = gw.cli("directory", "import", str(gpg_recipient(gnupg, tmp_path, "Dan", "dan@ext.example")))
    assert "dan@ext.example" in out.stdout, out.stdout

    marker = "PGP-E2E-PLAINTEXT-c41d"
    inner = inner_entity(marker)
    message = pgp_mime(gnupg, "gateway@example.org", "dan@ext.example", "pgp figures", "", inner=inner)
    assert marker.encode() not in message
    submit(postfix, ["dan@ext.example"], message)

    got = wait_arrivals(sink, {"dan@ext.example"})
    assert len(got["dan@ext.example"]) == 1
    arrival = got["dan@ext.example"][0]
    assert b"by upstream.test (Postfix)" in arrival.raw and b"by gw.test (Sealgate)" in arrival.raw
    for a in arrivals(sink):
        assert marker.encode() not in a.raw
    assert arrival.parsed["Subject"] == "pgp figures"
    assert b"X-Sealgate-Verdict" not in arrival.raw
    decrypted = pgp_decrypt(gnupg, arrival)
    print(decrypted[:600])
    assert crlf(decrypted) == inner
    assert mime_parts(decrypted) == mime_parts(inner)
