"""STARTTLS: the plaintext injection of CVE-2011-0411 and the state reset
of RFC 3207 §4.2."""

import socket
import ssl

from conftest import subjects, wait_outbox
from harness import SmtpDialogue


def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_injected_commands_after_starttls_are_discarded(gateway):
    d = SmtpDialogue(gateway.port)
    assert d.reply().startswith("220")
    d.cmd("EHLO client.test", "250")
    # STARTTLS and a command in one write: the NOOP sits in the server's
    # plaintext buffer when the TLS handshake starts
    d.send("STARTTLS\r\nNOOP\r\nMAIL FROM:<injected@example.org>\r\n")
    assert d.reply().startswith("220 2.0.0")
    assert d.buffer == b"", "server answered the injected commands in clear"
    d.sock = tls_context().wrap_socket(d.sock, server_hostname="localhost")
    # the first reply inside TLS answers our MAIL: 503 because no EHLO was
    # given after TLS. An injected NOOP would have produced "250 2.0.0 OK" first.
    d.cmd("MAIL FROM:<a@example.org>", "503 5.5.1")
    # nothing else is pending
    d.sock.settimeout(1)
    try:
        extra = d.sock.recv(4096)
    except (socket.timeout, TimeoutError, ssl.SSLError):
        extra = b""
    d.sock.settimeout(10)
    assert extra == b"", extra
    ehlo = d.cmd("EHLO client.test", "250")
    assert "STARTTLS" not in ehlo, "STARTTLS offered again inside TLS"
    d.cmd("STARTTLS", "503 5.5.1")
    d.cmd("MAIL FROM:<a@example.org>", "250")
    d.cmd("RCPT TO:<b@example.net>", "250")
    d.cmd("DATA", "354")
    d.cmd("Subject: after-tls\r\n\r\nsecret\r\n.", "250 2.0.0")
    d.cmd("QUIT", "221")
    msgs = wait_outbox(gateway, lambda m: "after-tls" in subjects(m))
    raw = next(m for m in msgs if b"after-tls" in m)
    assert b"with ESMTPS id" in raw
    assert b"injected@" not in b"".join(msgs)


def test_starttls_resets_the_transaction(gateway):
    d = SmtpDialogue(gateway.port)
    assert d.reply().startswith("220")
    d.cmd("EHLO client.test", "250")
    d.cmd("MAIL FROM:<before-tls@example.org>", "250")
    d.cmd("RCPT TO:<b@example.net>", "250")
    d.starttls()
    d.cmd("RCPT TO:<c@example.net>", "503 5.5.1")
    d.cmd("DATA", "503 5.5.1")
    d.cmd("EHLO client.test", "250")
    # the MAIL given in clear is forgotten: RCPT needs a new MAIL
    d.cmd("RCPT TO:<c@example.net>", "503 5.5.1")
    d.cmd("MAIL FROM:<after-tls@example.org>", "250")


def test_starttls_syntax(gateway):
    d = SmtpDialogue(gateway.port)
    assert d.reply().startswith("220")
    d.cmd("EHLO client.test", "250")
    d.cmd("STARTTLS now", "501 5.5.4")
    d.cmd("NOOP", "250")


def test_plaintext_after_failed_handshake_is_not_a_session(gateway):
    """A client that says STARTTLS and then speaks SMTP in clear gets no
    SMTP answers: the server is waiting for a TLS ClientHello."""
    d = SmtpDialogue(gateway.port)
    assert d.reply().startswith("220")
    d.cmd("EHLO client.test", "250")
    d.cmd("STARTTLS", "220")
    d.send("MAIL FROM:<clear@example.org>\r\nRCPT TO:<x@example.net>\r\n")
    d.sock.settimeout(3)
    got = b""
    try:
        while True:
            chunk = d.sock.recv(4096)
            if not chunk:
                break
            got += chunk
    except (socket.timeout, TimeoutError, ConnectionError):
        pass
    assert b"250" not in got, got
