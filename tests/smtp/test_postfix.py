"""End to end with real Postfix peers: swaks -> Postfix (upstream MTA,
relayhost = Sealgate) -> Sealgate (smart host mode) -> Postfix smtp-sink,
and swaks -> Sealgate -> smtp-sink with STARTTLS. The body arrives byte for
byte (smtp-sink's dump writes LF line ends; compared line by line)."""

import base64
import random
import shutil
import subprocess

import pytest

from harness import free_port
from postfix_peer import PostfixRelay, SmtpSink, split_dump

pytestmark = pytest.mark.skipif(not shutil.which("postfix") or not shutil.which("swaks"),
                                reason="needs postfix and swaks (scripts/test installs them)")


def tricky_message(subject: str) -> bytes:
    """A MIME message with the things relays break: lines of 997/998
    octets, leading dots, 8-bit UTF-8 text, a base64 attachment of
    random bytes, blank lines at the end."""
    rng = random.Random(subject)
    blob = bytes(rng.getrandbits(8) for _ in range(6000))
    b64 = base64.encodebytes(blob).replace(b"\n", b"\r\n")
    text = (
        "Grüße aus Zürich — ünïcödé ✓ 日本語\r\n"
        ".a line with a leading dot\r\n"
        "..two leading dots\r\n"
        ".\r\n"  # a line that is only a dot (in the body, not the end)
        + "x" * 998 + "\r\n"
        + "é" * 499 + "\r\n"  # 998 octets of 2-octet characters
        + "y" * 997 + "\r\n"
        + " trailing spaces   \r\n"
        "\ttab-led line\r\n"
    ).encode()
    return (
        f"From: Alice <alice@upstream.test>\r\n"
        f"To: Bob <bob@example.net>\r\n"
        f"Subject: {subject}\r\n"
        f"Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n"
        f"Message-ID: <{subject}@upstream.test>\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: multipart/mixed; boundary=\"b0undary\"\r\n"
        f"\r\n"
        f"--b0undary\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + text + (
        b"\r\n--b0undary\r\n"
        b"Content-Type: application/octet-stream; name=\"blob.bin\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=\"blob.bin\"\r\n\r\n"
    ) + b64 + b"\r\n--b0undary--\r\n\r\n\r\n"


def body_of(message: bytes) -> bytes:
    return message.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in message else message.split(b"\n\n", 1)[1]


def swaks(port: int, message: bytes, tmp_path, *extra: str) -> str:
    stuffed = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in message.split(b"\r\n"))
    data = tmp_path / "message.eml"
    data.write_bytes(stuffed + b".\r\n")
    r = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(port), "--helo", "swaks.test",
         "--from", "alice@upstream.test", "--to", "bob@example.net",
         "--data", f"@{data}", "--no-data-fixup", "--timeout", "20", *extra],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    return r.stdout


def assert_same_body(sent: bytes, dump: bytes):
    meta, received = split_dump(dump)
    want = body_of(sent).replace(b"\r\n", b"\n")
    got = body_of(received)
    # smtp-sink appends one empty line after each dumped message
    assert got == want + b"\n", _first_difference(want + b"\n", got)
    return meta, received


def _first_difference(a: bytes, b: bytes) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"bodies differ at octet {i}: want {a[max(0, i - 40):i + 40]!r} got {b[max(0, i - 40):i + 40]!r}"
    return f"lengths differ: want {len(a)}, got {len(b)}; tail want {a[-80:]!r} got {b[-80:]!r}"


@pytest.fixture
def sink():
    s = SmtpSink(free_port()).start()
    yield s
    s.stop()


@pytest.fixture
def sealgate(gateway_factory, sink):
    return gateway_factory({"delivery": {"mode": "smarthost", "smarthost": f"127.0.0.1:{sink.port}"}})


@pytest.fixture
def postfix(sealgate):
    pf = PostfixRelay(free_port(), sealgate.port)
    try:
        pf.start()
        yield pf
    finally:
        log = pf.log_text()
        pf.stop()
        print("--- postfix maillog ---\n" + log)


def test_postfix_relays_through_sealgate_to_smtp_sink(postfix, sealgate, sink, tmp_path):
    message = tricky_message("pf-e2e-1")
    out = swaks(postfix.port, message, tmp_path)
    assert "250 2.0.0 Ok: queued as" in out
    dump = sink.wait_for(b"Subject: pf-e2e-1")
    meta, received = assert_same_body(message, dump)
    assert meta["X-Mail-Args"][0].startswith("<alice@upstream.test>"), meta
    assert [a.split(" ")[0] for a in meta["X-Rcpt-Args"]] == ["<bob@example.net>"], meta
    assert meta["X-Helo-Args"] == ["gw.test"]
    headers = received.split(b"\n\n", 1)[0]
    # Sealgate's Received first (Postfix used STARTTLS to it), then Postfix's
    assert headers.startswith(b"Received: from upstream.test ([127.0.0.1])\n\tby gw.test (Sealgate) with ESMTPS id ")
    assert b"by upstream.test (Postfix) with ESMTP" in headers
    # the original header section follows, unchanged
    orig_headers = message.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n")
    assert headers.endswith(orig_headers), headers
    assert "status=sent (250 2.0.0 Ok: queued as" in postfix.log_text()
    assert postfix.queue_is_empty()


def test_postfix_many_messages_all_arrive(postfix, sealgate, sink):
    """smtp-source pushes 30 messages over 3 sessions into Postfix; all 30
    come out of Sealgate into smtp-sink."""
    r = subprocess.run(
        ["smtp-source", "-s", "3", "-m", "30", "-l", "2048", "-f", "bulk@upstream.test",
         "-t", "bulk@example.net", "-S", "pf-bulk", f"127.0.0.1:{postfix.port}"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    import time
    deadline = time.monotonic() + 40
    while len([d for d in sink.dumps() if b"pf-bulk" in d]) < 30:
        assert time.monotonic() < deadline, f"{len(sink.dumps())} of 30 arrived"
        time.sleep(0.2)
    time.sleep(1)
    assert len([d for d in sink.dumps() if b"pf-bulk" in d]) == 30  # no duplicates
    assert sealgate.cli("queue", "list").stdout.strip() == "Queue is empty."


def test_swaks_direct_with_starttls(sealgate, sink, tmp_path):
    message = tricky_message("direct-tls-1")
    out = swaks(sealgate.port, message, tmp_path, "--tls")
    assert "-> STARTTLS" in out and "<-  220 2.0.0 Ready to start TLS" in out, out
    assert "=== TLS started with cipher" in out, out
    dump = sink.wait_for(b"Subject: direct-tls-1")
    _, received = assert_same_body(message, dump)
    assert received.startswith(b"Received: from swaks.test ([127.0.0.1])\n\tby gw.test (Sealgate) with ESMTPS id ")


def test_body_comparison_can_fail():
    """The comparison above is not vacuous: one changed octet is caught."""
    message = tricky_message("self-check")
    fake_dump = (b"X-Client-Addr: 127.0.0.1\nReceived: from x ([127.0.0.1])\n\tby smtp-sink (smtp-sink) with ESMTP id 1;\n\tdate\n"
                 + message.replace(b"\r\n", b"\n") + b"\n")
    assert_same_body(message, fake_dump)
    with pytest.raises(AssertionError):
        assert_same_body(message, fake_dump.replace(b"..two", b".two"))
    with pytest.raises(AssertionError):
        assert_same_body(message, fake_dump.replace(b"x" * 998, b"x" * 990 + b"\n" + b"x" * 8))
