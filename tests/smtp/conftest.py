"""Fixtures for the SMTP integration tests: a factory for real `sealgate`
daemons on loopback, the capture sink, and outbox helpers."""

import email
import email.policy
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))
sys.path.insert(0, str(HERE))

from harness import Gateway, SmtpDialogue, free_port  # noqa: E402
from smtp_capture import CaptureSink, Policy  # noqa: E402


def outbox_messages(gw: Gateway) -> list[bytes]:
    """Every finished .eml file in the gateway's outbox (temp files excluded)."""
    if not gw.outbox.exists():
        return []
    return [p.read_bytes() for p in sorted(gw.outbox.glob("*.eml"))]


def wait_outbox(gw: Gateway, predicate, timeout: float = 15.0) -> list[bytes]:
    deadline = time.monotonic() + timeout
    while True:
        got = outbox_messages(gw)
        if predicate(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(
                f"outbox: condition not met in {timeout}s; {len(got)} files: "
                + repr([m[:300] for m in got])
            )
        time.sleep(0.05)


def subjects(messages: list[bytes]) -> list[str]:
    out = []
    for raw in messages:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        out.append(str(msg.get("Subject", "")))
    return out


def send_message(port: int, sender: str, rcpts: list[str], body: bytes | str,
                 ehlo: str = "client.test", expect_end: str = "250",
                 source: str | None = None) -> str:
    """One complete transaction over raw SMTP; `body` must end in CRLF and is
    sent as is (the caller dot-stuffs). Returns the final reply."""
    d = SmtpDialogue(port, source=source)
    try:
        d.reply()
        d.cmd(f"EHLO {ehlo}", "250")
        d.cmd(f"MAIL FROM:<{sender}>", "250")
        for r in rcpts:
            d.cmd(f"RCPT TO:<{r}>", "250")
        d.cmd("DATA", "354")
        if isinstance(body, str):
            body = body.encode()
        d.send(body + b".\r\n")
        reply = d.reply()
        assert reply.startswith(expect_end), reply
        d.cmd("QUIT", "221")
        return reply
    finally:
        d.close()


@pytest.fixture
def gateway_factory(tmp_path):
    """gateway_factory(settings) -> started Gateway; all stopped at teardown.
    On failure the daemon's log tail is printed (pytest shows it)."""
    started: list[Gateway] = []

    def make(settings: dict | None = None, start: bool = True, name: str | None = None) -> Gateway:
        gw = Gateway(tmp_path / (name or f"gw{len(started)}"), settings)
        started.append(gw)
        if start:
            gw.start()
        return gw

    yield make
    for gw in started:
        gw.stop()
        if gw.log_path.exists():
            tail = gw.log_path.read_text(errors="replace")[-3000:]
            print(f"--- {gw.workdir.name} log tail ---\n{tail}")


@pytest.fixture
def gateway(gateway_factory):
    """A daemon with the harness defaults: loopback internal, outbox delivery."""
    return gateway_factory()


@pytest.fixture
def sink():
    """A capture sink on a free loopback port (see smtp_capture.py)."""
    s = CaptureSink(free_port(), Policy()).start()
    yield s
    s.stop()
