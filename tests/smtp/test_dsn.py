"""Delivery status notifications and retries against a downstream that
refuses: permanent refusal -> RFC 3464 report to the sender; no report to
<>; temporary refusal -> the message stays queued and goes out later."""

import email
import email.policy
import json
import time

from conftest import send_message
from smtp_capture import Policy


def smarthost(sink, **delivery):
    return {"delivery": {"mode": "smarthost", "smarthost": f"127.0.0.1:{sink.port}",
                         "retry_initial_secs": 1, "retry_max_secs": 1, **delivery}}


def parse(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.compat32)


def dsn_parts(msg):
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts][:2] == ["text/plain", "message/delivery-status"], \
        [p.get_content_type() for p in parts]
    return parts


def status_fields(part) -> list[dict]:
    """The per-message and per-recipient field groups of message/delivery-status."""
    payload = part.get_payload()
    if isinstance(payload, list):  # the email package parses the groups as messages
        return [dict(p.items()) for p in payload]
    groups = []
    for block in payload.replace("\r\n", "\n").split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                fields[k.strip()] = v.strip()
        if fields:
            groups.append(fields)
    return groups


def test_permanent_refusal_gives_rfc3464_report(gateway_factory, sink):
    sink.policy.rcpt_rules = [(r"^nosuch", "550 5.1.1 <nosuch> User unknown")]
    gw = gateway_factory(smarthost(sink))
    d_body = (
        "From: Sender <sender@example.org>\r\nTo: ok@example.net, nosuch@example.net\r\n"
        "Subject: will-bounce\r\nMessage-ID: <bounce-1@example.org>\r\n\r\nbody text here\r\n"
    )
    from harness import SmtpDialogue
    d = SmtpDialogue(gw.port)
    d.reply()
    d.cmd("EHLO c.test", "250")
    d.cmd("MAIL FROM:<sender@example.org> ENVID=ENV-42", "250")
    d.cmd("RCPT TO:<ok@example.net>", "250")
    d.cmd("RCPT TO:<nosuch@example.net> ORCPT=rfc822;nosuch+40example.net", "250")
    d.cmd("DATA", "354")
    d.cmd(d_body + ".", "250")
    d.cmd("QUIT", "221")
    got = sink.wait_for(lambda t: any(x.sender == "" for x in t) and any(b"will-bounce" in x.data and x.sender for x in t))
    original = next(x for x in got if x.sender == "sender@example.org")
    assert original.recipients == ["ok@example.net"]
    report = next(x for x in got if x.sender == "")
    assert report.recipients == ["sender@example.org"]
    msg = parse(report.data)
    assert msg["To"] == "<sender@example.org>"
    assert msg["Auto-Submitted"].startswith("auto-replied")
    parts = dsn_parts(msg)
    groups = status_fields(parts[1])
    per_message, per_rcpt = groups[0], groups[1:]
    assert per_message["Reporting-MTA"] == "dns; gw.test"
    assert per_message["Original-Envelope-Id"] == "ENV-42"
    assert len(per_rcpt) == 1, groups
    r = per_rcpt[0]
    assert r["Final-Recipient"] == "rfc822; nosuch@example.net"
    assert r["Original-Recipient"] == "rfc822;nosuch+40example.net"
    assert r["Action"] == "failed"
    assert r["Status"] == "5.1.1"
    assert "550" in r["Diagnostic-Code"] and r["Diagnostic-Code"].startswith("smtp;")
    # the original headers come back (RET not given: headers only)
    third = parts[2]
    assert third.get_content_type() == "text/rfc822-headers"
    quoted = third.get_payload() if isinstance(third.get_payload(), str) else third.as_string()
    assert "Subject: will-bounce" in quoted and "Message-ID: <bounce-1@example.org>" in quoted
    assert "body text here" not in quoted


def test_ret_full_returns_the_whole_message(gateway_factory, sink):
    sink.policy.rcpt_rules = [(r"^nosuch", "550 5.1.1 User unknown")]
    gw = gateway_factory(smarthost(sink))
    from harness import SmtpDialogue
    d = SmtpDialogue(gw.port)
    d.reply()
    d.cmd("EHLO c.test", "250")
    d.cmd("MAIL FROM:<full@example.org> RET=FULL", "250")
    d.cmd("RCPT TO:<nosuch@example.net>", "250")
    d.cmd("DATA", "354")
    d.cmd("Subject: full-return\r\n\r\nthe whole body\r\n.", "250")
    got = sink.wait_for(lambda t: any(x.sender == "" for x in t))
    msg = parse(got[0].data)
    parts = dsn_parts(msg)
    assert parts[2].get_content_type() == "message/rfc822"
    assert b"the whole body" in got[0].data


def test_no_report_to_null_sender_or_notify_never(gateway_factory, sink):
    sink.policy.rcpt_rules = [(r"^nosuch", "550 5.1.1 User unknown")]
    gw = gateway_factory(smarthost(sink))
    send_message(gw.port, "", ["nosuch@example.net", "ok@example.net"],
                 "Subject: from-null\r\n\r\nx\r\n")
    from harness import SmtpDialogue
    d = SmtpDialogue(gw.port)
    d.reply()
    d.cmd("EHLO c.test", "250")
    d.cmd("MAIL FROM:<never@example.org>", "250")
    d.cmd("RCPT TO:<nosuch@example.net> NOTIFY=NEVER", "250")
    d.cmd("RCPT TO:<ok@example.net>", "250")
    d.cmd("DATA", "354")
    d.cmd("Subject: notify-never\r\n\r\nx\r\n.", "250")
    # both messages reach ok@; wait until both bounces are recorded
    sink.wait_for(lambda t: len([x for x in t if x.recipients == ["ok@example.net"]]) == 2)
    deadline = time.monotonic() + 10
    while True:
        events = json.loads(gw.cli("track", "--to", "nosuch@", "--json").stdout)
        if len([e for e in events if e["kind"] == "bounced"]) == 2:
            break
        assert time.monotonic() < deadline, events
        time.sleep(0.2)
    time.sleep(2)  # room for a (wrong) report to be sent
    reports = [x for x in sink.messages() if x.sender == "" and b"multipart/report" in x.data]
    assert reports == [], [r.data[:400] for r in reports]
    assert gw.cli("queue", "list").stdout.strip() == "Queue is empty."


def test_temporary_failure_stays_queued_then_delivers(gateway_factory, sink):
    sink.policy.rcpt_all = "451 4.3.0 try again later"
    gw = gateway_factory(smarthost(sink, retry_initial_secs=1, retry_max_secs=2))
    send_message(gw.port, "patient@example.org", ["later@example.net"], "Subject: deferred-mail\r\n\r\nx\r\n")
    deadline = time.monotonic() + 10
    while True:
        listing = gw.cli("queue", "list").stdout
        if "deferred: " in listing:
            break
        assert time.monotonic() < deadline, listing
        time.sleep(0.2)
    assert "later@example.net" in listing and "451" in listing, listing
    assert "from patient@example.org" in listing
    time.sleep(2.5)
    assert sink.messages() == []
    entries = json.loads(gw.cli("queue", "list", "--json").stdout)
    assert entries and entries[0]["attempts"] >= 2, entries  # it was retried
    sink.policy.rcpt_all = None  # the downstream recovers
    got = sink.wait_for(lambda t: len(t) >= 1, timeout=15)
    assert got[0].recipients == ["later@example.net"]
    assert b"deferred-mail" in got[0].data
    deadline = time.monotonic() + 5
    while gw.cli("queue", "list").stdout.strip() != "Queue is empty.":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1)
    assert len(sink.messages()) == 1  # no delay report, no duplicate


def test_long_deferral_sends_one_delay_notice(gateway_factory, sink):
    sink.policy.rcpt_rules = [(r"slow@example\.net", "451 4.3.0 try again later")]
    gw = gateway_factory(smarthost(sink, retry_initial_secs=1, retry_max_secs=1, delay_warning_secs=2))
    send_message(gw.port, "patient@example.org", ["slow@example.net"], "Subject: slow-mail\r\n\r\nx\r\n")
    got = sink.wait_for(lambda t: any(m.recipients == ["patient@example.org"] for m in t), timeout=20)
    notice = [m for m in got if m.recipients == ["patient@example.org"]][0]
    assert notice.sender == ""
    parts = dsn_parts(parse(notice.data))
    groups = status_fields(parts[1])
    assert any(g.get("Action") == "delayed" and "slow@example.net" in g.get("Final-Recipient", "") for g in groups), groups
    time.sleep(4)  # more retries, but no second notice
    assert len([m for m in sink.messages() if m.recipients == ["patient@example.org"]]) == 1
