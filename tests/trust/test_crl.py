"""S/MIME trust anchors and revocation (issue 16) against real peers: a
test CA made with OpenSSL issues people's certificates that name a CRL
distribution point on an HTTP server; the CA revokes one of them.

What a user sees: the gateway fetches the CRL from the distribution point
by itself (`sealgate trust crl list` names where it came from), an
administrator can upload one (`sealgate trust crl upload`); signed mail
from outside by the revoked certificate is reported as revoked to its
internal recipients, by a good one as anchored with revocation checked;
and mail that must be encrypted is never encrypted to the revoked
certificate."""

import json
import re
import subprocess

from conftest import events, recipient_states, send, wait_until
from test_discovery import zone

CRL_HOST = "crl.test"
CRL_URL = f"http://{CRL_HOST}/ca.crl"


def signed_by(cert, key, sender: str, subject: str) -> bytes:
    """Mail from `sender` signed with `openssl cms -sign` (detached)."""
    inner = f"Content-Type: text/plain; charset=utf-8\r\n\r\nsigned {subject}\r\n".encode()
    signed = subprocess.run(["openssl", "cms", "-sign", "-signer", str(cert), "-inkey", str(key)], input=inner,
                            capture_output=True, check=True).stdout
    signed = signed.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return f"From: <{sender}>\r\nTo: <carol@example.org>\r\nSubject: {subject}\r\n".encode() + signed


def verdicts(gw, sender: str) -> list[str]:
    """The S/MIME verdicts tracking recorded for mail from `sender` (the
    words internal recipients get in X-Sealgate-Verdict)."""
    found = []
    for e in events(gw, **{"from": sender}):
        m = re.search(r"S/MIME (signature=[^;]*(?:; [a-z]+=[^;]*)*)", e.get("detail", ""))
        if e["kind"] == "policy" and m:
            found.append(m.group(1))
    return found


def crls(gw) -> list[dict]:
    return json.loads(gw.cli("trust", "crl", "list", "--json").stdout)


def test_revocation_from_the_distribution_point_and_by_upload(world, tmp_path):
    ca = world.ca
    eve_cert, eve_key = ca.person("eve@ext.test", crl_url=CRL_URL)
    dora_cert, dora_key = ca.person("dora@ext.test", crl_url=CRL_URL)
    ca.revoke(dora_cert)
    web = world.web_server()
    web.put(CRL_HOST, "/ca.crl", ca.crl(), "application/pkix-crl")
    mx = world.receiver("mx.ext.test")
    zone(world, "ext.test", mx)
    world.dns.zone(CRL_HOST, [f"@ A {web.address}"])
    world.start()
    gw = world.gateway({
        "relay": {"domains": ["example.org"], "internal_networks": ["127.0.0.1/32"]},
        "smime": {"trust_anchors": [str(ca.cert)]},
        "policy": {"domain": {"ext.test": {"action": "encrypt-required"}}},
    })
    anchors = gw.cli("trust", "anchors").stdout
    assert "Sealgate Test Root" in anchors, anchors

    # The first signed mail makes the gateway fetch the CRL its
    # certificate names; nobody uploaded it.
    send(gw, ["carol@example.org"], "", sender="eve@ext.test", source="127.0.0.2",
         raw=signed_by(eve_cert, eve_key, "eve@ext.test", "first"))
    fetched = wait_until(lambda: [c for c in crls(gw) if c["origin"] == CRL_URL], 30, what="the CRL fetched")
    assert fetched[0]["revoked"] == 1, fetched
    assert any(host == CRL_HOST and path == "/ca.crl" for host, path in web.requests), web.requests

    # With the CRL at hand: the revoked signer is reported as revoked,
    # the good one as anchored with revocation checked.
    send(gw, ["carol@example.org"], "", sender="dora@ext.test", source="127.0.0.2",
         raw=signed_by(dora_cert, dora_key, "dora@ext.test", "from-dora"))
    send(gw, ["carol@example.org"], "", sender="eve@ext.test", source="127.0.0.2",
         raw=signed_by(eve_cert, eve_key, "eve@ext.test", "from-eve"))
    v = wait_until(lambda: verdicts(gw, "dora@ext.test"), 30, what="dora's verdict")
    assert "signature=revoked" in v[0] or "trust=revoked" in v[0], v
    v = wait_until(lambda: [x for x in verdicts(gw, "eve@ext.test") if "revocation checked" in x], 30,
                   what="eve's verdict with revocation checked")
    assert v[0].startswith("signature=valid; signer=eve@ext.test; from=matches; trust=anchored"), v

    # Encrypt-required mail to the holder of the revoked certificate is
    # not encrypted to it (and not sent in clear), even when an
    # administrator imported it; eve's goes out.
    gw.cli("directory", "import", str(dora_cert))
    send(gw, ["dora@ext.test", "eve@ext.test"], "sealed", "for the two of them")
    eve_copy = mx.wait_for(b"Subject: sealed", timeout=60)
    assert b"Delivered-To: eve@ext.test" in eve_copy and b"for the two of them" not in eve_copy
    st = wait_until(lambda: (recipient_states(gw).get("dora@ext.test") or {}).get("state") in ("held", "deferred")
                    and recipient_states(gw)["dora@ext.test"], 30, what="dora's copy waiting")
    assert not any(b"Delivered-To: dora@ext.test" in m for m in mx.messages()), st
    print("dora:", st)


def test_an_uploaded_crl_is_kept_and_a_foreign_one_refused(world, tmp_path):
    ca = world.ca
    world.dns.zone("ext.test", ["@ A 127.0.0.1"])  # the world's DNS needs a zone to start
    world.start()
    gw = world.gateway({"smime": {"trust_anchors": [str(ca.cert)]}})
    revoked, _ = ca.person("mallory@ext.test")
    ca.revoke(revoked)
    crl = tmp_path / "ca.crl"
    crl.write_bytes(ca.crl())
    out = gw.cli("trust", "crl", "upload", str(crl)).stdout
    assert out.startswith("kept: ") and "1 revoked" in out and "Sealgate Test Root" in out, out
    assert [c["origin"] for c in crls(gw)] == ["upload"]

    from pki import TestCA
    other = TestCA(tmp_path / "other", name="Somebody Else")
    foreign = tmp_path / "other.crl"
    foreign.write_bytes(other.crl())
    r = gw.cli("trust", "crl", "upload", str(foreign), check=False)
    assert r.returncode != 0 and r.stderr.strip(), (r.stdout, r.stderr)
    assert len(crls(gw)) == 1
