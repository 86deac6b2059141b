"""Fixtures for the trust suite (issue 16): a small Internet on loopback.

`world` gives each test its own DNS (Knot serving DNSSEC-signed zones
behind a validating Unbound), a test CA the gateway is told to trust, a
web server (HTTPS with certificates from that CA, and HTTP) and Postfix
receivers on their own loopback addresses; `gateway` starts a Sealgate
daemon that delivers by MX through that DNS. Everything is stopped at
teardown, and on failure the logs are printed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))

from dnssec import SignedDns  # noqa: E402
from harness import Gateway, SmtpDialogue  # noqa: E402
from https_server import WebServer  # noqa: E402
from pki import TestCA, self_signed  # noqa: E402
from postfix_tls import PostfixReceiver, free_loopback_address  # noqa: E402

SENDER = "alice@example.org"


class World:
    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.ca = TestCA(tmp_path / "ca")
        self.dns = SignedDns(tmp_path)
        self.web: WebServer | None = None
        self.receivers: list[PostfixReceiver] = []
        self.gateways: list[Gateway] = []
        self.started = False

    # -- peers ---------------------------------------------------------------

    def receiver(self, hostname: str, cert: str = "good", starttls: bool = True,
                 chain: bool = False) -> PostfixReceiver:
        """A Postfix MX for `hostname` on a fresh loopback address. `cert`:
        good (test CA, right name), wrong-name (test CA, another name),
        self-signed (right name), none (no STARTTLS). `chain`: the server
        sends the CA certificate too (DANE-TA needs it)."""
        if cert == "good":
            c, k = self.ca.server(hostname)
        elif cert == "wrong-name":
            c, k = self.ca.server("not-" + hostname)
        elif cert == "self-signed":
            c, k = self_signed(self.tmp / "self", hostname)
        elif cert == "none":
            c, k = None, None
        else:
            raise ValueError(cert)
        r = PostfixReceiver(free_loopback_address(25), c, k, hostname=hostname,
                            starttls=starttls and c is not None)
        r.cert_path = c
        if chain and c is not None:
            full = c.with_suffix(".chain.pem")
            full.write_bytes(c.read_bytes() + self.ca.pem())
            r.cert = full
        self.receivers.append(r)
        return r.start()

    def web_server(self) -> WebServer:
        if self.web is None:
            self.web = WebServer(self.tmp / "web")
        return self.web

    def start(self) -> "World":
        if self.web is not None:
            self.web.start()
        self.dns.start()
        self.started = True
        return self

    def gateway(self, settings: dict | None = None, name: str = "gw", env: dict | None = None) -> Gateway:
        """A gateway delivering by MX through this world's DNS, trusting its CA."""
        base = {
            "hostname": "gw.example.org",
            "delivery": {"mode": "mx", "mx_port": 25, "dns_server": f"127.0.0.1:{self.dns.port}",
                         "retry_initial_secs": 1, "retry_max_secs": 2, "timeout_secs": 10},
            "outbound_tls": {"trust_anchors": [str(self.ca.cert)], "system_roots": False},
        }
        for key, value in (settings or {}).items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        gw = Gateway(self.tmp / name, base, env=env)
        self.gateways.append(gw)
        return gw.start()

    def stop(self) -> None:
        for gw in self.gateways:
            gw.stop()
        for r in self.receivers:
            r.stop()
        if self.web is not None:
            self.web.stop()
        self.dns.stop()

    def logs(self) -> str:
        out = []
        for gw in self.gateways:
            if gw.log_path.exists():
                out.append(f"--- {gw.workdir.name} log tail ---\n" + gw.log_path.read_text(errors="replace")[-4000:])
        for f in ("unbound.log", "knot.log"):
            p = self.dns.dir / f
            if p.exists():
                out.append(f"--- {f} tail ---\n" + p.read_text(errors="replace")[-1500:])
        return "\n".join(out)


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    try:
        yield w
    finally:
        print(w.logs())
        w.stop()


def send(gw: Gateway, rcpts: list[str], subject: str, body: str = "", sender: str = SENDER,
         extra_headers: str = "", source: str | None = None, raw: bytes | None = None) -> None:
    d = SmtpDialogue(gw.port, source=source)
    try:
        d.reply()
        d.cmd("EHLO client.example.org", "250")
        d.cmd(f"MAIL FROM:<{sender}>", "250")
        for r in rcpts:
            d.cmd(f"RCPT TO:<{r}>", "250")
        d.cmd("DATA", "354")
        if raw is None:
            raw = (f"From: <{sender}>\r\nTo: {', '.join('<' + r + '>' for r in rcpts)}\r\n"
                   f"Subject: {subject}\r\n{extra_headers}\r\n{body or 'body of ' + subject}\r\n").encode()
        d.send(raw.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        reply = d.reply()
        assert reply.startswith("250"), reply
        d.cmd("QUIT", "221")
    finally:
        d.close()


def queue_entries(gw: Gateway) -> list[dict]:
    return json.loads(gw.cli("queue", "list", "--json").stdout)


def recipient_states(gw: Gateway) -> dict[str, dict]:
    """address -> {"state": "deferred", "reason": text, "code": "4.7.5"} of queued recipients."""
    out = {}
    for e in queue_entries(gw):
        for r in e["recipients"]:
            reason = r.get("reason") or {}
            out[r["address"]] = {"state": r["state"], "reason": reason.get("text", ""),
                                 "code": reason.get("code", "")}
    return out


def events(gw: Gateway, **filters) -> list[dict]:
    args = ["track", "--json"]
    for k, v in filters.items():
        args += [f"--{k}", v]
    return json.loads(gw.cli(*args).stdout)


def wait_until(predicate, timeout: float = 30.0, step: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met in {timeout}s")
        time.sleep(step)
