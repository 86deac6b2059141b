"""What Sealgate's SMTP client does toward the next hop when the next hop
lacks something: STARTTLS for a domain that requires it, SMTPUTF8, 8BITMIME,
and refusals at the end of DATA."""

import json
import time

from conftest import send_message
from harness import SmtpDialogue
from test_dsn import dsn_parts, parse, status_fields


def smarthost(sink, **delivery):
    return {"delivery": {"mode": "smarthost", "smarthost": f"127.0.0.1:{sink.port}",
                         "retry_initial_secs": 1, "retry_max_secs": 1, **delivery}}


def wait_status(gw, text, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        listing = gw.cli("queue", "list").stdout
        if text in listing:
            return listing
        assert time.monotonic() < deadline, listing
        time.sleep(0.2)


def test_required_tls_is_never_sent_in_clear(gateway_factory, sink):
    # the capture sink offers no STARTTLS
    gw = gateway_factory(smarthost(sink, require_tls_domains=["secure.example"]))
    send_message(gw.port, "a@example.org", ["x@secure.example", "y@plain.example"],
                 "Subject: needs-tls\r\n\r\nsecret\r\n")
    got = sink.wait_for(lambda t: len(t) >= 1)
    listing = wait_status(gw, "deferred: ")
    assert "x@secure.example" in listing and "STARTTLS" in listing, listing
    time.sleep(2.5)  # a few retries
    got = sink.messages()
    assert [t.recipients for t in got] == [["y@plain.example"]], [t.recipients for t in got]
    assert "x@secure.example" not in "\n".join(sink.commands)


def test_smtputf8_message_is_not_sent_to_a_server_without_smtputf8(gateway_factory, sink):
    """RFC 6531 §3.2: a message that needs SMTPUTF8 must not be handed to a
    server that does not offer it; it is bounced (or held), never sent with
    raw UTF-8 addresses the server did not agree to."""
    sink.policy.extensions = ("PIPELINING", "8BITMIME", "DSN", "ENHANCEDSTATUSCODES")
    gw = gateway_factory(smarthost(sink))
    d = SmtpDialogue(gw.port)
    d.reply()
    d.cmd("EHLO c.test", "250")
    d.cmd("MAIL FROM:<sender@example.org> SMTPUTF8", "250")
    d.cmd("RCPT TO:<jörg@example.net>", "250")
    d.cmd("DATA", "354")
    d.cmd("Subject: utf8-downstream\r\n\r\nx\r\n.", "250")
    time.sleep(3)
    raw_utf8 = [c for c in sink.commands if c.upper().startswith(("MAIL", "RCPT")) and not c.isascii()]
    assert raw_utf8 == [], f"sent UTF-8 envelope to a server without SMTPUTF8: {raw_utf8}"


def test_8bit_body_is_not_sent_to_a_server_without_8bitmime(gateway_factory, sink):
    """RFC 6152 §3: an 8-bit body (BODY=8BITMIME) goes to a server without
    8BITMIME only converted (e.g. quoted-printable), or not at all."""
    sink.policy.extensions = ("PIPELINING", "SMTPUTF8", "DSN", "ENHANCEDSTATUSCODES")
    gw = gateway_factory(smarthost(sink))
    d = SmtpDialogue(gw.port)
    d.reply()
    d.cmd("EHLO c.test", "250")
    d.cmd("MAIL FROM:<sender@example.org> BODY=8BITMIME", "250")
    d.cmd("RCPT TO:<r@example.net>", "250")
    d.cmd("DATA", "354")
    d.send("Subject: 8bit-downstream\r\nContent-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n.\r\n".encode())
    assert d.reply().startswith("250")
    time.sleep(3)
    for t in sink.messages():
        assert all(b < 0x80 for b in t.data), "8-bit body sent to a server without 8BITMIME"


def test_8bit_body_is_relayed_with_body_8bitmime(gateway_factory, sink):
    """Clients often send 8-bit text without BODY=8BITMIME (and a message
    the gateway decrypted may be 8-bit though it arrived 7-bit): what goes
    out with 8-bit octets is announced as BODY=8BITMIME (RFC 6152), and a
    7-bit message is not."""
    gw = gateway_factory(smarthost(sink))
    send_message(gw.port, "sender@example.org", ["r@example.net"],
                 "Subject: 8bit-undeclared\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 "Content-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n".encode())
    send_message(gw.port, "sender@example.org", ["r@example.net"], "Subject: 7bit\r\n\r\nplain\r\n")
    got = sink.wait_for(lambda t: len(t) >= 2)
    by_subject = {(b"8bit" in t.data): t for t in got}
    assert "BODY=8BITMIME" in by_subject[True].mail.upper(), by_subject[True].mail
    assert "BODY=" not in by_subject[False].mail.upper(), by_subject[False].mail


def test_refusal_at_end_of_data(gateway_factory, sink):
    sink.policy.data_end_rules = [("grey@", "451 4.7.1 greylisted")]
    gw = gateway_factory(smarthost(sink))
    send_message(gw.port, "grey@example.org", ["r@example.net"], "Subject: grey\r\n\r\nx\r\n")
    listing = wait_status(gw, "deferred: 451")
    assert sink.messages() == []
    sink.policy.data_end_rules = [("grey@", "554 5.7.0 content refused")]
    got = sink.wait_for(lambda t: any(x.sender == "" for x in t), timeout=15)
    report = next(x for x in got if x.sender == "")
    assert report.recipients == ["grey@example.org"]
    groups = status_fields(dsn_parts(parse(report.data))[1])
    assert groups[1]["Action"] == "failed" and groups[1]["Status"] == "5.7.0", groups
    assert "554" in groups[1]["Diagnostic-Code"]
