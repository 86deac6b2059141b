"""Relay control. Loopback 127.0.0.1 is an *outside* client here
(internal_networks = 10.99.0.0/16 and 127.0.0.2/32); our domain is
example.org and the banner host name is example.org too, so the routing
tricks that end in "@example.org" are the dangerous ones."""

import re
import shutil
import subprocess

import pytest

from conftest import outbox_messages, subjects, wait_outbox
from harness import Gateway, SmtpDialogue

OURS = "example.org"          # relay.domains, and the banner name nmap reads
TARGET = "relay-target.example"  # someone else's domain
IP = "127.0.0.1"

# Nmap's smtp-open-relay tests (nselib 7.93, scripts/smtp-open-relay.nse),
# written out with from=antispam, to=relaytest, domain=TARGET, srvname=OURS.
NMAP_16 = [
    ("", f"relaytest@{TARGET}"),                                   # 1 null sender
    (f"antispam@{TARGET}", f"relaytest@{TARGET}"),                 # 2 plain relay
    (f"antispam@{OURS}", f"relaytest@{TARGET}"),                   # 3 forged local sender
    (f"antispam@[{IP}]", f"relaytest@{TARGET}"),                   # 4 IP-literal sender
    (f"antispam@[{IP}]", f"relaytest%{TARGET}@[{IP}]"),            # 5 percent hack via IP literal
    (f"antispam@[{IP}]", f"relaytest%{TARGET}@{OURS}"),            # 6 percent hack via our name
    (f"antispam@[{IP}]", f'"relaytest@{TARGET}"'),                 # 7 quoted local part, no domain
    (f"antispam@[{IP}]", f'"relaytest%{TARGET}"'),                 # 8 quoted percent hack
    (f"antispam@[{IP}]", f"relaytest@{TARGET}@[{IP}]"),            # 9 user@domain@[ip]
    (f"antispam@[{IP}]", f'"relaytest@{TARGET}"@[{IP}]'),          # 10 quoted user@domain @[ip]
    (f"antispam@[{IP}]", f"relaytest@{TARGET}@{OURS}"),            # 11 user@domain@gw
    (f"antispam@[{IP}]", f"@[{IP}]:relaytest@{TARGET}"),           # 12 source route via IP literal
    (f"antispam@[{IP}]", f"@{OURS}:relaytest@{TARGET}"),           # 13 source route via our name
    (f"antispam@[{IP}]", f"{TARGET}!relaytest"),                   # 14 bang path
    (f"antispam@[{IP}]", f"{TARGET}!relaytest@[{IP}]"),            # 15 bang path via IP literal
    (f"antispam@[{IP}]", f"{TARGET}!relaytest@{OURS}"),            # 16 bang path via our name
]
assert len(NMAP_16) == 16

# More of the same family, aimed at our own domain.
EXTRA = [
    f'"relaytest@{TARGET}"@{OURS}',
    f'"relaytest%{TARGET}"@{OURS}',
    f"relaytest%{TARGET}@{OURS.upper()}",
    f"@{OURS},@{TARGET}:relaytest@{TARGET}",
    f"relaytest@[{IP}]",
    "relaytest@[IPv6:::1]",
    f"relaytest@{OURS}.{TARGET}",
    f"relaytest@{TARGET}.",
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = Gateway(tmp_path_factory.mktemp("relay"), {
        "hostname": OURS,
        "relay": {"domains": [OURS], "internal_networks": ["10.99.0.0/16", "127.0.0.2/32"]},
    })
    g.start()
    yield g
    g.stop()


def outside(gw) -> SmtpDialogue:
    d = SmtpDialogue(gw.port, source="127.0.0.1")
    assert d.reply().startswith(f"220 {OURS}")
    d.cmd("EHLO outside.test", "250")
    return d


@pytest.mark.parametrize("sender,rcpt", NMAP_16, ids=[f"nmap{i + 1}" for i in range(16)])
def test_nmap_relay_pattern_is_refused(gw, sender, rcpt):
    d = outside(gw)
    mail = d.cmd(f"MAIL FROM:<{sender}>", "")
    if mail.startswith("250"):
        reply = d.cmd(f"RCPT TO:<{rcpt}>", "")
        assert reply[0] == "5", f"RCPT TO:<{rcpt}> from outside: {reply!r}"
        d.cmd("DATA", "5")  # nothing to send to
    else:
        assert mail[0] == "5", mail
    d.cmd("QUIT", "221")


@pytest.mark.parametrize("rcpt", EXTRA)
def test_more_routing_tricks_are_refused(gw, rcpt):
    d = outside(gw)
    d.cmd(f"MAIL FROM:<x@{TARGET}>", "250")
    reply = d.cmd(f"RCPT TO:<{rcpt}>", "")
    assert reply[0] == "5", f"RCPT TO:<{rcpt}>: {reply!r}"


def test_outside_may_send_to_our_domain_and_nothing_was_relayed(gw):
    d = outside(gw)
    d.cmd(f"MAIL FROM:<someone@{TARGET}>", "250")
    d.cmd(f"RCPT TO:<user@{OURS}>", "250 2.1.5")
    d.cmd(f"RCPT TO:<User2@{OURS.upper()}>", "250 2.1.5")
    d.cmd("RCPT TO:<postmaster>", "250 2.1.5")
    d.cmd(f"RCPT TO:<victim@{TARGET}>", "554 5.7.1")
    d.cmd("DATA", "354")
    d.cmd("Subject: inbound-ok\r\n\r\nhi\r\n.", "250 2.0.0")
    msgs = wait_outbox(gw, lambda m: "inbound-ok" in subjects(m))
    raw = next(m for m in msgs if b"inbound-ok" in m)
    assert raw.count(b"X-Sealgate-Envelope-To:") == 3
    # none of the refused patterns produced mail to the target domain
    for m in outbox_messages(gw):
        for line in m.split(b"\r\n"):
            if line.startswith(b"X-Sealgate-Envelope-To:"):
                assert b"relaytest" not in line and TARGET.encode() not in line, line


def test_internal_client_may_relay_anywhere(gw):
    d = SmtpDialogue(gw.port, source="127.0.0.2")
    assert d.reply().startswith("220")
    d.cmd("EHLO inside.test", "250")
    d.cmd(f"MAIL FROM:<staff@{OURS}>", "250")
    d.cmd(f"RCPT TO:<partner@{TARGET}>", "250 2.1.5")
    d.cmd("DATA", "354")
    d.cmd("Subject: outbound-ok\r\n\r\nhi\r\n.", "250 2.0.0")
    wait_outbox(gw, lambda m: "outbound-ok" in subjects(m))


def nmap(gw, domain: str) -> str:
    if not shutil.which("nmap"):
        pytest.fail("nmap is not installed (apt-get install -y nmap)")
    r = subprocess.run(
        ["nmap", "-Pn", "-n", "-vv", "-p", str(gw.port),
         # "+" runs the script although nmap does not know the port as SMTP
         "--script", "+smtp-open-relay",
         "--script-args", f"smtp-open-relay.domain={domain},smtp-open-relay.ip={IP}",
         IP],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    block = re.findall(r"^\|[ _].*$", r.stdout, re.M)
    assert block and "smtp-open-relay" in block[0], r.stdout
    return "\n".join(block)


def test_nmap_smtp_open_relay_reports_closed(gw):
    out = nmap(gw, TARGET)
    assert "Server doesn't seem to be an open relay, all tests failed" in out, out
    assert "open relay (" not in out, out


def test_nmap_with_our_own_domain_only_plain_delivery_succeeds(gw):
    """With smtp-open-relay.domain set to *our* domain, nmap's first four
    tests are ordinary inbound mail and must succeed; every one of the 12
    routing tricks must still fail."""
    out = nmap(gw, OURS)
    assert "Server is an open relay (4/16 tests)" in out, out
    combos = re.findall(r"MAIL FROM:<[^>]*> -> RCPT TO:<.*>", out)
    assert len(combos) == 4, combos
    for c in combos:
        assert c.endswith(f"RCPT TO:<relaytest@{OURS}>"), c
