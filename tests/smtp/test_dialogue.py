"""Line-by-line SMTP dialogues against a real daemon (Stalwart style):
every command, sequence errors, pipelining groups, NUL bytes, DSN and
SMTPUTF8 parameters. Limits are in test_limits.py."""

import email
import email.policy
import time

from conftest import send_message, subjects, wait_outbox
from harness import SmtpDialogue

EXTENSIONS = ["SIZE", "8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN", "STARTTLS"]


def dialogue(gw) -> SmtpDialogue:
    d = SmtpDialogue(gw.port)
    banner = d.reply()
    assert banner.startswith("220 "), banner
    return d


def test_banner_and_ehlo_advertise_every_extension(gateway):
    d = dialogue(gateway)
    reply = d.cmd("EHLO client.test", "250 ")
    lines = reply.split("\n")
    assert lines[0].startswith("250-gw.test"), lines
    keywords = [ln[4:].split(" ")[0] for ln in lines[1:]]
    for ext in EXTENSIONS:
        assert ext in keywords, f"{ext} not advertised: {lines}"
    size_line = [ln for ln in lines if ln[4:].startswith("SIZE")][0]
    assert size_line[4:] == "SIZE 52428800", size_line  # the documented default
    assert all(ln.startswith("250-") for ln in lines[:-1]), lines
    d.cmd("QUIT", "221")
    assert d.closed_by_peer(5)


def test_helo_transaction_is_delivered(gateway):
    d = dialogue(gateway)
    d.cmd("HELO old.client.test", "250 gw.test")
    d.cmd("MAIL FROM:<alice@example.org>", "250 2.1.0")
    d.cmd("RCPT TO:<bob@example.net>", "250 2.1.5")
    d.cmd("DATA", "354")
    d.cmd("Subject: via-helo\r\n\r\nhello\r\n.", "250 2.0.0")
    d.cmd("QUIT", "221 2.0.0")
    msgs = wait_outbox(gateway, lambda m: "via-helo" in subjects(m))
    raw = msgs[0]
    assert b"Return-Path: <alice@example.org>" in raw
    assert b"X-Sealgate-Envelope-To: <bob@example.net>" in raw
    assert b"Received: from old.client.test ([127.0.0.1])" in raw
    assert raw.endswith(b"\r\n\r\nhello\r\n")


def test_every_command(gateway):
    d = dialogue(gateway)
    d.cmd("NOOP", "250 2.0.0")
    d.cmd("NOOP with an argument", "250 2.0.0")
    d.cmd("HELP", "214 2.0.0")
    d.cmd("VRFY postmaster", "252 2.5.0")
    d.cmd("EXPN staff", "502 5.5.1")
    d.cmd("EHLO client.test", "250")
    d.cmd("MAIL FROM:<a@example.org>", "250 2.1.0")
    d.cmd("RCPT TO:<b@example.net>", "250 2.1.5")
    d.cmd("RSET", "250 2.0.0")
    # RSET ended the transaction
    d.cmd("RCPT TO:<b@example.net>", "503 5.5.1")
    d.cmd("DATA", "503 5.5.1")
    d.cmd("MAIL FROM:<> ", "250 2.1.0")
    d.cmd("RCPT TO:<Postmaster>", "250 2.1.5")
    d.cmd("DATA", "354")
    d.cmd("Subject: every-command\r\n\r\nx\r\n.", "250 2.0.0")
    d.cmd("QUIT", "221 2.0.0")
    assert d.closed_by_peer(5)
    msgs = wait_outbox(gateway, lambda m: "every-command" in subjects(m))
    assert b"Return-Path: <>\r\n" in msgs[0]
    # postmaster without a domain is completed with our first domain
    assert b"X-Sealgate-Envelope-To: <Postmaster@example.org>" in msgs[0]


def test_sequence_and_syntax_errors(gateway):
    d = dialogue(gateway)
    d.cmd("MAIL FROM:<a@example.org>", "503 5.5.1")  # before EHLO
    d.cmd("RCPT TO:<b@example.net>", "503 5.5.1")
    d.cmd("EHLO", "501 5.5.4")  # no host name
    d.cmd("FOO bar", "500 5.5.1")
    d.cmd("EHLO client.test", "250")
    d.cmd("DATA", "503 5.5.1")  # no MAIL
    d.cmd("MAIL FROM:a@example.org", "250")  # lenient bare address
    d.cmd("MAIL FROM:<a@example.org>", "503 5.5.1")  # nested
    d.cmd("DATA", "554 5.5.1")  # no recipients
    d.cmd("RCPT TO:<b@@example.net>", "553 5.1.3")
    d.cmd("RCPT TO:<b@example.net", "553 5.1.3")
    d.cmd("RCPT TO:<b@example.net> FOO=BAR", "555 5.5.4")
    d.cmd("RSET", "250")
    d.cmd("MAIL FROM:<a@example.org> BODY=BINARYMIME", "555 5.5.4")
    d.cmd("MAIL FROM:<a@example.org> SIZE=abc", "555 5.5.4")
    d.cmd("MAIL TO:<a@example.org>", "501 5.5.4")
    d.cmd("QUIT extra", "501 5.5.4")
    d.cmd("QUIT", "221")


def test_pipelining_group_replies_in_order(gateway):
    d = dialogue(gateway)
    d.cmd("EHLO client.test", "250")
    d.send(
        "MAIL FROM:<pipe@example.org>\r\n"
        "RCPT TO:<one@example.net>\r\n"
        "RCPT TO:<bad address@example.net>\r\n"
        "RCPT TO:<two@example.net>\r\n"
        "DATA\r\n"
    )
    replies = [d.reply() for _ in range(5)]
    assert replies[0].startswith("250 2.1.0"), replies
    assert replies[1].startswith("250 2.1.5 Recipient <one@example.net>"), replies
    assert replies[2].startswith("553"), replies
    assert replies[3].startswith("250 2.1.5 Recipient <two@example.net>"), replies
    assert replies[4].startswith("354"), replies
    # the message and the next group (RSET, NOOP, QUIT) in one write
    d.send("Subject: pipelined\r\n\r\nbody\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n")
    after = [d.reply() for _ in range(4)]
    assert after[0].startswith("250 2.0.0 Ok: queued"), after
    assert after[1].startswith("250 2.0.0 Reset"), after
    assert after[2].startswith("250 2.0.0 OK"), after
    assert after[3].startswith("221"), after
    msgs = wait_outbox(gateway, lambda m: "pipelined" in subjects(m))
    raw = next(m for m in msgs if b"pipelined" in m)
    assert raw.count(b"X-Sealgate-Envelope-To:") == 2


def test_pipelined_transaction_before_ehlo_reply(gateway):
    """A client that sends EHLO and the MAIL/RCPT/DATA group in one write
    (a common pipelining shortcut) gets every reply in order."""
    d = dialogue(gateway)
    d.send("EHLO c.test\r\nMAIL FROM:<p2@example.org>\r\nRCPT TO:<x@example.net>\r\nDATA\r\n")
    replies = [d.reply() for _ in range(4)]
    assert replies[0].startswith("250-gw.test"), replies
    assert [r[:3] for r in replies[1:]] == ["250", "250", "354"], replies
    d.send("Subject: p2\r\n\r\n.\r\n")  # empty body
    assert d.reply().startswith("250 2.0.0")


def test_nul_in_commands_is_refused_and_session_survives(gateway):
    d = dialogue(gateway)
    d.cmd("EH\x00LO client.test", "501 5.5.4")
    d.cmd("EHLO client.test", "250")
    d.cmd("MAIL FROM:<a\x00@example.org>", "501 5.5.4")
    d.cmd("MAIL FROM:<nul@example.org>", "250")
    d.cmd("RCPT TO:<b@example.net>\x00NOTIFY=NEVER", "501 5.5.4")
    d.cmd("RCPT TO:<b@example.net>", "250")
    d.cmd("DATA", "354")
    d.cmd("Subject: after-nul\r\n\r\nok\r\n.", "250")
    wait_outbox(gateway, lambda m: "after-nul" in subjects(m))


def test_nul_in_data_is_refused(gateway):
    d = dialogue(gateway)
    d.cmd("EHLO client.test", "250")
    d.cmd("MAIL FROM:<a@example.org>", "250")
    d.cmd("RCPT TO:<b@example.net>", "250")
    d.cmd("DATA", "354")
    d.cmd("Subject: nul-data\r\n\r\nbefore\x00after\r\n.", "554 5.6.0")
    # the session goes on and a clean message still passes
    d.cmd("MAIL FROM:<a@example.org>", "250")
    d.cmd("RCPT TO:<b@example.net>", "250")
    d.cmd("DATA", "354")
    d.cmd("Subject: clean-after-nul\r\n\r\nok\r\n.", "250")
    msgs = wait_outbox(gateway, lambda m: "clean-after-nul" in subjects(m))
    time.sleep(0.5)
    assert "nul-data" not in subjects(msgs)
    assert not any(b"before" in m for m in msgs)


def test_dsn_parameters_are_accepted_and_passed_on(gateway_factory, sink):
    gw = gateway_factory({"delivery": {"mode": "smarthost", "smarthost": f"127.0.0.1:{sink.port}"}})
    d = dialogue(gw)
    d.cmd("EHLO client.test", "250")
    d.cmd("MAIL FROM:<dsn@example.org> RET=HDRS ENVID=QQ+2B314159", "250 2.1.0")
    d.cmd("RCPT TO:<r1@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;r1+40example.net", "250 2.1.5")
    d.cmd("RCPT TO:<r2@example.net> NOTIFY=NEVER", "250 2.1.5")
    d.cmd("RCPT TO:<r3@example.net> notify=delay orcpt=rfc822;r3+40example.net", "250 2.1.5")
    d.cmd("RCPT TO:<r4@example.net> NOTIFY=NEVER,SUCCESS", "555 5.5.4")
    d.cmd("RCPT TO:<r4@example.net> NOTIFY=SOMETIMES", "555 5.5.4")
    d.cmd("RCPT TO:<r4@example.net> ORCPT=rfc822;a=b", "555 5.5.4")
    d.cmd("DATA", "354")
    d.cmd("Subject: dsn-params\r\n\r\nbody\r\n.", "250")
    d.cmd("QUIT", "221")
    got = sink.wait_for(lambda t: any("dsn-params" in x.data.decode() for x in t))
    tx = next(x for x in got if b"dsn-params" in x.data)
    mail = tx.mail.upper()
    assert "RET=HDRS" in mail and "ENVID=QQ+2B314159" in mail, tx.mail
    rcpts = {r.split(">")[0] + ">": r for r in tx.rcpts}
    assert "NOTIFY=SUCCESS,FAILURE" in rcpts["RCPT TO:<r1@example.net>"]
    assert "ORCPT=rfc822;r1+40example.net" in rcpts["RCPT TO:<r1@example.net>"]
    assert "NOTIFY=NEVER" in rcpts["RCPT TO:<r2@example.net>"]
    assert "NOTIFY=DELAY" in rcpts["RCPT TO:<r3@example.net>"].upper()
    assert "ORCPT=rfc822;r3+40example.net" in rcpts["RCPT TO:<r3@example.net>"]
    assert len(tx.rcpts) == 3


def test_dsn_parameters_kept_in_queue(gateway_factory):
    """While a message waits (smart host down), `sealgate queue list --json`
    shows the NOTIFY/ORCPT kept per recipient."""
    import json

    from harness import free_port

    gw = gateway_factory({"delivery": {"mode": "smarthost", "smarthost": f"127.0.0.1:{free_port()}",
                                       "retry_initial_secs": 60, "retry_max_secs": 60}})
    d = dialogue(gw)
    d.cmd("EHLO client.test", "250")
    d.cmd("MAIL FROM:<dsnq@example.org> RET=FULL ENVID=ENV1", "250")
    d.cmd("RCPT TO:<q1@example.net> NOTIFY=FAILURE ORCPT=rfc822;q1+40example.net", "250")
    d.cmd("DATA", "354")
    d.cmd("Subject: dsn-queued\r\n\r\nbody\r\n.", "250")
    deadline = time.monotonic() + 10
    while True:
        entries = json.loads(gw.cli("queue", "list", "--json").stdout)
        if entries and entries[0]["attempts"] >= 1:
            break
        assert time.monotonic() < deadline, entries
        time.sleep(0.2)
    r = entries[0]["recipients"][0]
    assert r["orcpt"] == "rfc822;q1+40example.net", r
    assert "FAILURE" in r["notify"] and "SUCCESS" not in r["notify"], r


def test_smtputf8_addresses(gateway_factory, sink):
    gw = gateway_factory({"delivery": {"mode": "smarthost", "smarthost": f"127.0.0.1:{sink.port}"}})
    d = dialogue(gw)
    d.cmd("EHLO client.test", "250")
    d.cmd("MAIL FROM:<jösé@bücher.example>", "553 5.6.7")  # needs SMTPUTF8
    d.cmd("MAIL FROM:<jösé@bücher.example> SMTPUTF8 BODY=8BITMIME", "250 2.1.0")
    d.cmd("RCPT TO:<用户@例子.example>", "250 2.1.5")
    d.cmd("RCPT TO:<ascii@example.net>", "250 2.1.5")
    d.cmd("DATA", "354")
    d.send("Subject: utf8-mail\r\nFrom: José <jösé@bücher.example>\r\n\r\nGrüße — 你好\r\n.\r\n".encode())
    assert d.reply().startswith("250 2.0.0")
    d.cmd("MAIL FROM:<plain@example.org>", "250")
    d.cmd("RCPT TO:<ü@example.net>", "553 5.6.7")  # transaction without SMTPUTF8
    d.cmd("QUIT", "221")
    got = sink.wait_for(lambda t: any(b"utf8-mail" in x.data for x in t))
    tx = next(x for x in got if b"utf8-mail" in x.data)
    assert tx.sender == "jösé@bücher.example"
    assert "SMTPUTF8" in tx.mail.upper() and "BODY=8BITMIME" in tx.mail.upper()
    assert sorted(tx.recipients) == sorted(["用户@例子.example", "ascii@example.net"])
    assert "Grüße — 你好\r\n".encode() in tx.data


def test_message_reaches_smarthost_byte_identical(gateway_factory, sink):
    """Leading dots, 998-octet lines, 8-bit text and CRLFs survive the relay
    exactly: what the sink un-stuffs is what the client meant."""
    gw = gateway_factory({"delivery": {"mode": "smarthost", "smarthost": f"127.0.0.1:{sink.port}"}})
    body = (
        b"Subject: exact\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        b".leading dot\r\n..two dots\r\n.\t\r\n"
        + b"L" * 998 + b"\r\n"
        + "Ünïcödé ✓\r\n".encode()
        + b"\r\n\r\nlast line\r\n"
    )
    stuffed = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in body.split(b"\r\n"))
    send_message(gw.port, "exact@example.org", ["to@example.net"], stuffed)
    got = sink.wait_for(lambda t: any(b"Subject: exact" in x.data for x in t))
    data = next(x for x in got if b"Subject: exact" in x.data).data
    assert data.startswith(b"Received: from client.test ([127.0.0.1])")
    # our one Received header, then the message byte for byte
    assert data.endswith(body), data[-300:]
    head_len = len(data) - len(body)
    assert data[:head_len].count(b"\r\n") == 4  # Received: is 4 lines
