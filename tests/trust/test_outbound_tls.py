"""Outbound TLS that is authenticated (issue 16), against Postfix receivers
with good, wrong-name and self-signed certificates, DNSSEC-signed zones in
Knot behind a validating Unbound, and an HTTPS server for MTA-STS.

What a user sees: mail to a domain whose policy cannot be met stays in
the queue as deferred, with the reason; nothing arrives at the receiver
(not in clear, not over a connection the policy does not allow); mail
that arrives was sent over TLS, as Postfix's Received header and the
gateway's tracking say, with how the certificate was verified."""

import json
import time

from conftest import events, recipient_states, send, wait_until
from dnssec import tlsa_2_0_1, tlsa_3_1_1, txt


def deferred_with(gw, address: str, *words: str, timeout: float = 30.0) -> str:
    """Waits until `address` is deferred with a reason containing `words`."""
    def check():
        st = recipient_states(gw).get(address)
        if st and st.get("state") == "deferred" and all(w in st.get("reason", "") for w in words):
            return st["reason"]
        return None
    try:
        return wait_until(check, timeout=timeout, what=f"{address} deferred with {words}")
    except AssertionError:
        raise AssertionError(f"{address}: {json.dumps(recipient_states(gw).get(address))}")


def delivered_event(gw, address: str) -> dict:
    def check():
        got = [e for e in events(gw, to=address) if e["kind"] == "delivered"]
        return got[0] if got else None
    return wait_until(check, timeout=30, what=f"{address} delivered")


def zone_for(world, domain: str, receiver, extra=(), signing="good"):
    world.dns.zone(domain, [f"@ MX 10 mx.{domain}.", f"mx A {receiver.address}", *extra], signing=signing)


def test_verify_required_and_opportunistic_levels(world):
    good = world.receiver("mx.good.test", cert="good")
    wrong = world.receiver("mx.wrong.test", cert="wrong-name")
    selfsigned = world.receiver("mx.selfsigned.test", cert="self-signed")
    plain = world.receiver("mx.plain.test", cert="none")
    clear = world.receiver("mx.clear.test", cert="none")
    for domain, r in [("good.test", good), ("wrong.test", wrong), ("selfsigned.test", selfsigned),
                      ("plain.test", plain), ("clear.test", clear)]:
        zone_for(world, domain, r)
    world.start()
    gw = world.gateway({"outbound_tls": {"domain": {
        "good.test": "verify", "wrong.test": "verify", "selfsigned.test": "verify",
        "plain.test": "required"}}})
    send(gw, ["bob@good.test", "bob@wrong.test", "bob@selfsigned.test", "bob@plain.test", "bob@clear.test"],
         "levels", "the level test")

    # verify: a certificate from the trusted CA for the MX name: delivered over TLS.
    got = good.wait_for(b"the level test")
    assert b"using TLSv1.3" in got or b"using TLSv1.2" in got, got[:800]
    ev = delivered_event(gw, "bob@good.test")
    assert "certificate verified by verify" in ev["detail"], ev

    # A wrong name or a self-signed certificate: deferred, with the reason, nothing sent.
    reason = deferred_with(gw, "bob@wrong.test", "TLS handshake failed", "verify")
    assert "NotValidForName" in reason or "not valid for" in reason, reason
    reason = deferred_with(gw, "bob@selfsigned.test", "TLS handshake failed", "verify")
    assert "UnknownIssuer" in reason or "issuer" in reason.lower(), reason
    # required: no STARTTLS offered means no delivery, never a fallback to clear.
    deferred_with(gw, "bob@plain.test", "does not offer STARTTLS", "not sent in clear")
    # opportunistic (the default) still delivers in clear where TLS is not offered.
    got = clear.wait_for(b"the level test")
    assert b"using TLS" not in got
    ev = delivered_event(gw, "bob@clear.test")
    assert "no TLS" in ev["detail"], ev

    time.sleep(3)  # several retries have happened by now
    for r in (wrong, selfsigned, plain):
        assert r.messages() == [], f"{r.hostname} received mail its policy forbids"


def test_dane_good_mismatch_bad_signature_expired_and_unsigned(world):
    # DANE-EE authenticates even a self-signed certificate: the DNS binds it.
    ok = world.receiver("mx.dane.test", cert="self-signed")
    mismatch = world.receiver("mx.mismatch.test", cert="self-signed")
    badsig = world.receiver("mx.badsig.test", cert="self-signed")
    expired = world.receiver("mx.expired.test", cert="self-signed")
    unsigned = world.receiver("mx.unsigned.test", cert="self-signed")
    other_key = world.receiver("mx.unused.test", cert="self-signed")  # only its certificate is used
    tlsa = lambda r: f"_25._tcp.mx TLSA {tlsa_3_1_1(r.cert_path.read_bytes())}"
    zone_for(world, "dane.test", ok, [tlsa(ok)])
    zone_for(world, "mismatch.test", mismatch, [tlsa(other_key)])
    zone_for(world, "badsig.test", badsig, [tlsa(badsig)], signing="bad-signature:TLSA")
    zone_for(world, "expired.test", expired, [tlsa(expired)], signing="expired:TLSA")
    zone_for(world, "unsigned.test", unsigned, [tlsa(unsigned)], signing="unsigned")
    world.start()
    domains = ["dane.test", "mismatch.test", "badsig.test", "expired.test", "unsigned.test"]
    gw = world.gateway({"outbound_tls": {"domain": {d: "dane" for d in domains}}})
    send(gw, [f"bob@{d}" for d in domains], "dane", "the dane test")

    got = ok.wait_for(b"the dane test")
    assert b"using TLSv1" in got
    ev = delivered_event(gw, "bob@dane.test")
    assert "verified by dane (dane-ee 3 1 1)" in ev["detail"], ev

    deferred_with(gw, "bob@mismatch.test", "TLS handshake failed", "dane")
    deferred_with(gw, "bob@badsig.test", "TLSA lookup", "SERVFAIL")
    deferred_with(gw, "bob@expired.test", "TLSA lookup", "SERVFAIL")
    deferred_with(gw, "bob@unsigned.test", "not DNSSEC-signed", "not sent without DANE")
    time.sleep(3)
    for r in (mismatch, badsig, expired, unsigned):
        assert r.messages() == [], f"{r.hostname} received mail DANE forbids"

    # The domain fixes its TLSA record: the deferred mail goes out on the next retry.
    zone_for(world, "mismatch.test", mismatch, [tlsa(mismatch)])
    world.dns.reload()
    mismatch.wait_for(b"the dane test", timeout=40)
    ev = delivered_event(gw, "bob@mismatch.test")
    assert "dane-ee" in ev["detail"], ev


def test_dane_ta_needs_the_anchor_in_the_chain_and_the_name(world):
    # A DANE-TA(2) record names the CA; the server sends it in its chain
    # (RFC 7672 §3.1.2), and the end entity must carry the MX's name.
    r1 = world.receiver("mx.daneta.test", cert="good", chain=True)
    r2 = world.receiver("mx.daneta2.test", cert="wrong-name", chain=True)
    record = f"_25._tcp.mx TLSA {tlsa_2_0_1(world.ca.pem())}"
    zone_for(world, "daneta.test", r1, [record])
    zone_for(world, "daneta2.test", r2, [record])
    world.start()
    gw = world.gateway({"outbound_tls": {"domain": {"daneta.test": "dane", "daneta2.test": "dane"}}})
    send(gw, ["bob@daneta.test", "bob@daneta2.test"], "ta", "the trust anchor test")
    r1.wait_for(b"the trust anchor test")
    assert "dane-ta 2 0 1" in delivered_event(gw, "bob@daneta.test")["detail"]
    # Signed by the anchor, but for another name: not authenticated.
    deferred_with(gw, "bob@daneta2.test", "TLS handshake failed", "dane")
    time.sleep(2)
    assert r2.messages() == []


def test_mta_sts_enforce_testing_and_auto(world):
    web = world.web_server()
    sts_ok = world.receiver("mx.sts.test", cert="good")
    sts_wrong = world.receiver("mx.stswrong.test", cert="wrong-name")
    sts_unlisted = world.receiver("mx.stsunlisted.test", cert="good")
    sts_testing = world.receiver("mx.ststesting.test", cert="self-signed")
    for domain, r, mode, mx in [
        ("sts.test", sts_ok, "enforce", "mx.sts.test"),
        ("stswrong.test", sts_wrong, "enforce", "mx.stswrong.test"),
        ("stsunlisted.test", sts_unlisted, "enforce", "other.stsunlisted.test"),
        ("ststesting.test", sts_testing, "testing", "mx.ststesting.test"),
    ]:
        host = f"mta-sts.{domain}"
        cert, key = world.ca.server(host)
        web.certificate(host, cert, key)
        web.put(host, "/.well-known/mta-sts.txt",
                f"version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n".encode(), "text/plain")
        zone_for(world, domain, r, [f"_mta-sts TXT {txt('v=STSv1; id=20261201T000000;')}",
                                    f"mta-sts A {web.address}"])
    world.start()
    gw = world.gateway({"outbound_tls": {"default": "auto"}})
    rcpts = ["bob@sts.test", "bob@stswrong.test", "bob@stsunlisted.test", "bob@ststesting.test"]
    send(gw, rcpts, "sts", "the mta-sts test")

    sts_ok.wait_for(b"the mta-sts test")
    assert "certificate verified by mta-sts" in delivered_event(gw, "bob@sts.test")["detail"]
    deferred_with(gw, "bob@stswrong.test", "TLS handshake failed", "mta-sts")
    deferred_with(gw, "bob@stsunlisted.test", "none of the MX hosts", "MTA-STS policy")
    # testing mode: delivered (over TLS, unverified), failures only reported.
    sts_testing.wait_for(b"the mta-sts test")
    assert "certificate not verified" in delivered_event(gw, "bob@ststesting.test")["detail"]
    assert sts_wrong.messages() == [] and sts_unlisted.messages() == []

    # The policy is cached: with the web server gone and the record stripped,
    # it is still enforced (RFC 8461 §5), and still lets good mail through.
    zone_for(world, "sts.test", sts_ok, [])
    world.dns.reload()
    web.remove("mta-sts.sts.test", "/.well-known/mta-sts.txt")
    send(gw, ["carol@sts.test"], "sts2", "the cached policy test")
    sts_ok.wait_for(b"the cached policy test")
    assert "verified by mta-sts" in delivered_event(gw, "carol@sts.test")["detail"]


def test_tls_reports_go_to_domains_that_ask(world):
    web = world.web_server()
    good = world.receiver("mx.reported.test", cert="self-signed")
    bad = world.receiver("mx.reportedbad.test", cert="self-signed")
    other = world.receiver("mx.unused.test", cert="self-signed")
    rpt_host = "tlsrpt.reported.test"
    cert, key = world.ca.server(rpt_host)
    web.certificate(rpt_host, cert, key)
    tlsa = lambda r: f"_25._tcp.mx TLSA {tlsa_3_1_1(r.cert_path.read_bytes())}"
    zone_for(world, "reported.test", good, [
        tlsa(good), f"_smtp._tls TXT {txt(f'v=TLSRPTv1; rua=https://{rpt_host}/report')}",
        f"tlsrpt A {web.address}"])
    zone_for(world, "reportedbad.test", bad, [
        tlsa(other), f"_smtp._tls TXT {txt('v=TLSRPTv1; rua=mailto:tls-reports@reported.test')}"])
    world.start()
    gw = world.gateway({"outbound_tls": {"default": "auto", "report": {"interval_secs": 4}}})
    send(gw, ["bob@reported.test", "bob@reportedbad.test"], "rpt", "the report test")
    good.wait_for(b"the report test")
    deferred_with(gw, "bob@reportedbad.test", "TLS handshake failed")

    # Over HTTPS: an RFC 8460 JSON report with the successful session.
    posts = wait_until(lambda: [p for p in web.posts if p[1] == "/report"], timeout=20,
                       what="a TLS report posted")
    host, _, ctype, body = posts[0]
    assert ctype == "application/tlsrpt+json"
    report = json.loads(body)
    policy = report["policies"][0]
    assert policy["policy"]["policy-type"] == "tlsa"
    assert policy["policy"]["policy-domain"] == "reported.test"
    assert policy["summary"]["total-successful-session-count"] >= 1
    assert report["organization-name"] == "gw.example.org"
    assert report["date-range"]["start-datetime"] < report["date-range"]["end-datetime"]

    # By mail: the failing domain's report travels to its rua address
    # (the mail itself goes through the queue: to mx.reported.test).
    got = good.wait_for(b"TLS-Report-Domain: reportedbad.test", timeout=30)
    assert b'report-type="tlsrpt"' in got
    import base64
    import email
    import email.policy
    msg = email.message_from_bytes(got.split(b"\n", 1)[1], policy=email.policy.default)
    attachment = [p for p in msg.walk() if p.get_content_type() == "application/tlsrpt+json"][0]
    mailed = json.loads(attachment.get_payload(decode=True))
    detail = mailed["policies"][0]["failure-details"][0]
    assert detail["result-type"] == "validation-failure" or detail["result-type"] == "tlsa-invalid", detail
    assert detail["receiving-mx-hostname"] == "mx.reportedbad.test"
    assert mailed["policies"][0]["summary"]["total-failure-session-count"] >= 1
