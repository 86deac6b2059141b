"""Every limit of issue 2, as a client sees it: command line 512 octets,
text line 1000 octets, message size (declared and actual), 1000
recipients, connections per IP, idle and session timeouts, 20 errors,
and a nearly full disk."""

import time

from conftest import subjects, wait_outbox
from harness import SmtpDialogue


def dialogue(gw, ehlo=True) -> SmtpDialogue:
    d = SmtpDialogue(gw.port)
    assert d.reply().startswith("220")
    if ehlo:
        d.cmd("EHLO client.test", "250")
    return d


def fill_slots(gw, sources) -> list[SmtpDialogue]:
    """Opens one session per source address, each greeted with 220. The
    harness's readiness probe may still hold a slot for a moment, so a
    421 here is retried until it is released."""
    held = []
    deadline = time.monotonic() + 10
    for src in sources:
        while True:
            d = SmtpDialogue(gw.port, source=src)
            banner = d.reply()
            if banner.startswith("220"):
                held.append(d)
                break
            d.close()
            assert time.monotonic() < deadline, banner
            time.sleep(0.1)
    return held


def test_command_line_of_512_octets(gateway):
    d = dialogue(gateway)
    # 510 octets + CRLF = 512: accepted
    line = "NOOP " + "x" * 505
    assert len(line) == 510
    d.cmd(line, "250 2.0.0")
    # 511 octets + CRLF = 513: refused
    d.cmd("NOOP " + "x" * 506, "500 5.5.2")
    # far longer than any reader buffer: refused once, session still in sync
    d.cmd("NOOP " + "y" * 20000, "500 5.5.2")
    d.cmd("HELO " + "h" * 600, "500 5.5.2")
    d.cmd("NOOP", "250 2.0.0")
    d.cmd("MAIL FROM:<a@example.org>", "250")
    # RCPT may carry DSN parameters up to 500 more octets (RFC 3461 §4)
    orcpt = "rfc822;" + "a" * 60 + "+40example.net"
    d.cmd(f"RCPT TO:<b@example.net> ORCPT={orcpt}", "250")


def test_text_line_of_1000_octets(gateway):
    d = dialogue(gateway)
    d.cmd("MAIL FROM:<a@example.org>", "250")
    d.cmd("RCPT TO:<b@example.net>", "250")
    d.cmd("DATA", "354")
    d.send(b"Subject: line-998\r\n\r\n" + b"a" * 998 + b"\r\n.\r\n")
    assert d.reply().startswith("250 2.0.0")
    d.cmd("MAIL FROM:<a@example.org>", "250")
    d.cmd("RCPT TO:<b@example.net>", "250")
    d.cmd("DATA", "354")
    d.send(b"Subject: line-999\r\n\r\n" + b"a" * 999 + b"\r\n.\r\n")
    assert d.reply().startswith("554 5.6.0")
    msgs = wait_outbox(gateway, lambda m: "line-998" in subjects(m))
    time.sleep(0.3)
    assert "line-999" not in subjects(msgs)


def test_size_parameter_and_oversize_body(gateway_factory):
    gw = gateway_factory({"smtp": {"max_message_size": 4096}})
    d = dialogue(gw, ehlo=False)
    ehlo = d.cmd("EHLO client.test", "250")
    assert "250-SIZE 4096" in ehlo.split("\n"), ehlo
    d.cmd("MAIL FROM:<a@example.org> SIZE=4097", "552 5.3.4")
    d.cmd("MAIL FROM:<a@example.org> SIZE=4096", "250")
    d.cmd("RCPT TO:<b@example.net>", "250")
    d.cmd("DATA", "354")
    # the declared size lied: the body is bigger than the limit
    d.send(b"Subject: oversize\r\n\r\n" + (b"z" * 70 + b"\r\n") * 100 + b".\r\n")
    assert d.reply().startswith("552 5.3.4")
    # the session is in sync afterwards, and a message that fits passes
    d.cmd("NOOP", "250")
    d.cmd("MAIL FROM:<a@example.org>", "250")
    d.cmd("RCPT TO:<b@example.net>", "250")
    d.cmd("DATA", "354")
    d.send(b"Subject: fits\r\n\r\n" + (b"z" * 70 + b"\r\n") * 40 + b".\r\n")
    assert d.reply().startswith("250 2.0.0")
    msgs = wait_outbox(gw, lambda m: "fits" in subjects(m))
    time.sleep(0.3)
    assert "oversize" not in subjects(msgs)


def test_recipient_1001_gets_452(gateway):
    d = dialogue(gateway)
    d.cmd("MAIL FROM:<many@example.org>", "250")
    d.send("".join(f"RCPT TO:<r{i}@example.net>\r\n" for i in range(1001)))
    replies = [d.reply() for _ in range(1001)]
    assert all(r.startswith("250 2.1.5") for r in replies[:1000]), [r for r in replies[:1000] if not r.startswith("250")][:3]
    assert replies[1000].startswith("452 4.5.3"), replies[1000]
    d.cmd("RCPT TO:<r1001@example.net>", "452 4.5.3")
    d.cmd("DATA", "354")
    d.cmd("Subject: thousand\r\n\r\nx\r\n.", "250")
    msgs = wait_outbox(gateway, lambda m: "thousand" in subjects(m), timeout=30)
    raw = next(m for m in msgs if b"thousand" in m)
    assert raw.count(b"X-Sealgate-Envelope-To:") == 1000
    assert b"<r1000@example.net>" not in raw


def test_max_recipients_is_configurable(gateway_factory):
    gw = gateway_factory({"smtp": {"max_recipients": 2}})
    d = dialogue(gw)
    d.cmd("MAIL FROM:<a@example.org>", "250")
    d.cmd("RCPT TO:<r1@example.net>", "250")
    d.cmd("RCPT TO:<r2@example.net>", "250")
    d.cmd("RCPT TO:<r3@example.net>", "452 4.5.3")


def test_connections_per_ip(gateway_factory):
    gw = gateway_factory({"smtp": {"max_connections_per_ip": 3}})
    held = fill_slots(gw, [None] * 3)
    extra = SmtpDialogue(gw.port)
    assert extra.reply().startswith("421 4.7.0")
    assert extra.closed_by_peer(5)
    extra.close()
    held.pop().close()
    # the slot comes back once a connection ends
    deadline = time.monotonic() + 5
    while True:
        d = SmtpDialogue(gw.port)
        banner = d.reply()
        if banner.startswith("220"):
            break
        d.close()
        assert time.monotonic() < deadline, banner
        time.sleep(0.1)
    d.cmd("QUIT", "221")
    for h in held:
        h.cmd("NOOP", "250")
        h.close()


def test_idle_timeout(gateway_factory):
    gw = gateway_factory({"smtp": {"idle_timeout_secs": 2}})
    d = dialogue(gw)
    # activity keeps the session alive past the idle timeout
    for _ in range(3):
        time.sleep(1)
        d.cmd("NOOP", "250")
    start = time.monotonic()
    assert d.closed_by_peer(6), "not disconnected after the idle timeout"
    elapsed = time.monotonic() - start
    assert 1.5 <= elapsed <= 4.5, elapsed


def test_idle_timeout_during_data(gateway_factory):
    gw = gateway_factory({"smtp": {"idle_timeout_secs": 2}})
    d = dialogue(gw)
    d.cmd("MAIL FROM:<a@example.org>", "250")
    d.cmd("RCPT TO:<b@example.net>", "250")
    d.cmd("DATA", "354")
    d.send("Subject: stalled\r\n\r\nhalf a message")
    assert d.closed_by_peer(6)
    time.sleep(0.5)
    assert not list(gw.outbox.glob("*.eml")) if gw.outbox.exists() else True


def test_session_timeout(gateway_factory):
    gw = gateway_factory({"smtp": {"idle_timeout_secs": 10, "session_timeout_secs": 3}})
    d = dialogue(gw)
    start = time.monotonic()
    closed = False
    while time.monotonic() - start < 8:
        try:
            d.send("NOOP\r\n")
            d.reply()
        except (ConnectionError, OSError):
            closed = True
            break
        time.sleep(0.5)
    assert closed, "a busy session outlived session_timeout_secs"
    assert time.monotonic() - start <= 5


def test_disconnect_after_20_errors(gateway):
    d = dialogue(gateway)
    for i in range(19):
        d.cmd(f"BOGUS{i}", "500 5.5.1")
    d.cmd("BOGUS20", "421 4.7.0")
    assert d.closed_by_peer(5)


def test_errors_of_every_kind_count(gateway_factory):
    gw = gateway_factory({"smtp": {"max_errors": 4}})
    d = dialogue(gw)
    d.cmd("NOOP " + "x" * 600, "500 5.5.2")
    d.cmd("MAIL FROM:<a@example.org>", "250")
    d.cmd("RCPT TO:<broken", "553")
    d.cmd("MAIL FROM:<a@example.org>", "503")
    d.cmd("FOO", "421 4.7.0")
    assert d.closed_by_peer(5)


def test_disk_nearly_full_gets_452_431(gateway_factory):
    # free space must be 1.5 x max_message_size: no disk has 1.5 PB free
    gw = gateway_factory({"smtp": {"max_message_size": 10**15}})
    d = dialogue(gw)
    d.cmd("MAIL FROM:<a@example.org>", "452 4.3.1")
    # a temporary condition, not a client error: it does not end the session
    for _ in range(25):
        d.cmd("MAIL FROM:<a@example.org>", "452 4.3.1")
    d.cmd("NOOP", "250")


def test_excess_recipients_do_not_end_the_session(gateway):
    """RFC 5321 §4.5.3.1.10: a client that sends more recipients than the
    server takes gets 452 for the excess and sends them in a further
    transaction. Those 452s are not client errors: sending 1025 recipients
    pipelined must not trip the 20-error disconnect and lose the message."""
    d = dialogue(gateway)
    d.cmd("MAIL FROM:<bulk@example.org>", "250")
    d.send("".join(f"RCPT TO:<r{i}@example.net>\r\n" for i in range(1025)) + "DATA\r\n")
    replies = [d.reply() for _ in range(1026)]
    assert [r[:3] for r in replies[1000:1025]] == ["452"] * 25, replies[1015:1022]
    assert replies[1025].startswith("354"), replies[1025]
    d.cmd("Subject: overflow\r\n\r\nx\r\n.", "250")
    # and the rest goes in a second transaction on the same connection
    d.cmd("MAIL FROM:<bulk@example.org>", "250")
    for i in range(1000, 1025):
        d.cmd(f"RCPT TO:<r{i}@example.net>", "250")
    d.cmd("DATA", "354")
    d.cmd("Subject: overflow-rest\r\n\r\nx\r\n.", "250")
    wait_outbox(gateway, lambda m: {"overflow", "overflow-rest"} <= set(subjects(m)), timeout=30)


def test_loop_detection_more_than_50_received_headers(gateway):
    d = dialogue(gateway)
    for count, expect in ((50, "250 2.0.0"), (51, "554 5.4.6")):
        d.cmd("MAIL FROM:<a@example.org>", "250")
        d.cmd("RCPT TO:<b@example.net>", "250")
        d.cmd("DATA", "354")
        hops = "".join(f"Received: from hop{i}.test by hop{i + 1}.test; Sat, 28 Nov 2026 12:00:00 +0000\r\n"
                       for i in range(count))
        d.cmd(f"{hops}Subject: hops-{count}\r\n\r\nx\r\n.", expect)
    msgs = wait_outbox(gateway, lambda m: "hops-50" in subjects(m))
    time.sleep(0.3)
    assert "hops-51" not in subjects(msgs)


def test_total_connection_limit(gateway_factory):
    gw = gateway_factory({"smtp": {"max_connections": 2, "max_connections_per_ip": 10}})
    held = fill_slots(gw, ["127.0.0.2", "127.0.0.3"])
    extra = SmtpDialogue(gw.port, source="127.0.0.4")
    assert extra.reply().startswith("421 4.7.0")
    assert extra.closed_by_peer(5)
    for h in held:
        h.cmd("QUIT", "221")
        h.close()


def test_spool_write_error_never_yields_250(gateway):
    """A spool that cannot take the file (here: the queue directory made
    immutable, which stops even root) gets 451 4.3.0, never 250."""
    import shutil
    import subprocess

    import pytest

    if not shutil.which("chattr"):
        pytest.skip("needs chattr (e2fsprogs)")
    queue_dir = gateway.data_dir / "spool" / "queue"
    if subprocess.run(["chattr", "+i", str(queue_dir)], capture_output=True).returncode != 0:
        pytest.skip("file system without the immutable attribute")
    try:
        d = dialogue(gateway)
        d.cmd("MAIL FROM:<a@example.org>", "250")
        d.cmd("RCPT TO:<b@example.net>", "250")
        d.cmd("DATA", "354")
        d.cmd("Subject: write-error\r\n\r\nx\r\n.", "451 4.3.0")
        # nothing half-written is left for the queue to find
        assert list((gateway.data_dir / "spool" / "tmp").iterdir()) == []
    finally:
        subprocess.run(["chattr", "-i", str(queue_dir)], check=True)
    d.cmd("MAIL FROM:<a@example.org>", "250")
    d.cmd("RCPT TO:<b@example.net>", "250")
    d.cmd("DATA", "354")
    d.cmd("Subject: write-ok\r\n\r\nx\r\n.", "250 2.0.0")
    msgs = wait_outbox(gateway, lambda m: "write-ok" in subjects(m))
    time.sleep(0.3)
    assert "write-error" not in subjects(msgs)
