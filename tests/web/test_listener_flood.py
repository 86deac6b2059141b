"""The web listener cannot starve SMTP: slow clients that never finish a
TLS handshake or their request head are bounded in number (in all and per
address) and in time, so the daemon keeps descriptors for SMTP and mail
keeps flowing while the web port is flooded.

The daemon runs with 512 descriptors (prlimit), well below what the
flood would take without the web listener's limits (before them, ~240
slow web connections were enough for SMTP greetings to time out)."""

import os
import socket
import ssl
import subprocess
import time



def send_message_raw(port: int, n: int) -> str:
    """One message over SMTP; returns the reply to the end of DATA."""
    from harness import SmtpDialogue

    d = SmtpDialogue(port, timeout=5)
    try:
        assert d.reply().startswith("220")
        d.cmd("EHLO client.example.org", "250")
        d.cmd("MAIL FROM:<alice@example.org>", "250")
        d.cmd("RCPT TO:<bob@example.net>", "250")
        d.cmd("DATA", "354")
        d.send(f"Subject: during the flood {n}\r\n\r\nbody {n}\r\n.\r\n")
        reply = d.reply()
        d.cmd("QUIT", "221")
        return reply
    finally:
        d.close()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def slow_tls_client(port: int, source: str) -> socket.socket | None:
    """Connects and sends half a ClientHello, then nothing."""
    s = socket.socket()
    s.settimeout(3)
    try:
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        return s
    except OSError:
        s.close()
        return None


def slow_header_client(port: int, source: str) -> ssl.SSLSocket | None:
    """Completes TLS, sends the start of a request head, then nothing."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.socket()
    raw.settimeout(5)
    try:
        raw.bind((source, 0))
        raw.connect(("127.0.0.1", port))
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        return s
    except OSError:
        raw.close()
        return None


def closed_by_server(s, timeout: float) -> bool:
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except (socket.timeout, TimeoutError):
        return False
    except OSError:
        return True


def test_smtp_keeps_flowing_while_the_web_port_is_flooded(gateways):
    gw = gateways()
    pid = gw.proc.pid
    subprocess.run(["prlimit", f"--pid={pid}", "--nofile=512:512"], check=True)
    base = open_fds(pid)
    flood = []
    try:
        # 40 source addresses × 15 = 600 connections: more than the 32 per
        # address and the 256 in all the listener allows.
        for i in range(600):
            source = f"127.0.{1 + i % 40}.{10 + i // 40}"
            s = slow_tls_client(gw.web_port, source) if i % 2 else slow_header_client(gw.web_port, source)
            if s is not None:
                flood.append(s)
        held = open_fds(pid) - base
        assert held <= 256 + 16, f"the web listener holds {held} descriptors"
        # Mail flows meanwhile: greetings come at once and every message is accepted.
        for n in range(20):
            started = time.monotonic()
            reply = send_message_raw(gw.port, n)
            assert reply.startswith("250"), reply
            assert time.monotonic() - started < 3, "SMTP was slow during the web flood"
        deadline = time.monotonic() + 30
        while len(list(gw.outbox.glob("*.eml"))) < 20:
            assert time.monotonic() < deadline, "mail not delivered during the flood"
            time.sleep(0.1)
        # The slow clients are cut off by the handshake and header timeouts (10 s).
        alive = [s for s in flood[:40] if not closed_by_server(s, 15)]
        assert not alive, f"{len(alive)} slow connections still open after the timeouts"
    finally:
        for s in flood:
            try:
                s.close()
            except OSError:
                pass
    # Once they are gone the listener serves again.
    deadline = time.monotonic() + 10
    while open_fds(pid) > base + 8:
        assert time.monotonic() < deadline, f"descriptors not released: {open_fds(pid)} (base {base})"
        time.sleep(0.2)
