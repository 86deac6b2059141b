"""A message delivered to the portal survives kill -9.

The portal's sealed copy is written without a flush of its own: the
queue keeps the message's spool file until a flush has made the copy
durable (`daemon/src/queue/reaper.rs`). Here N messages go to a
recipient without a key (pull), and the gateway is killed with SIGKILL
the moment the last notification reaches the outbox: the copies stored
in the last moments are then in sled's memory only. After a restart and
the queue's drain, every one of the N subjects must be in the
recipient's inbox (a copy stored twice is allowed and reported: at least
once, never lost)."""

import html
import re
import smtplib
import time
from pathlib import Path

from harness import free_port
from hsm_token import token_gateway
from portaltools import enrol_over_http

DAN = "dan@partner.example"
N = 400


def files(outbox: Path) -> int:
    """The outbox's files: here only notifications until the enrolment."""
    return sum(1 for _ in outbox.glob("*.eml")) if outbox.exists() else 0


def test_no_portal_copy_is_lost_when_the_gateway_is_killed(tmp_path):
    port = free_port()
    gw = token_gateway(tmp_path / "gw", {
        "relay": {"domains": ["example.org"], "internal_networks": ["127.0.0.0/8"]},
        "policy": {"domain": {"partner.example": {"action": "encrypt-required"}}},
        "portal": {"listen": [f"127.0.0.1:{port}"], "enabled": True, "url": f"https://127.0.0.1:{port}",
                   "require_totp_domains": ["partner.example"]},
        "delivery": {"mode": "outbox", "concurrency": 16},
    })
    gw.portal_port = port
    gw.start()
    try:
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=60) as s:
            for i in range(N):
                s.sendmail("alice@example.org", [DAN],
                           f"From: alice@example.org\r\nTo: {DAN}\r\nSubject: crash {i:04d}\r\n\r\n"
                           f"body {i}\r\n".encode())
        # Kill at the last notification: nothing waits for sled's own
        # periodic flush.
        deadline = time.monotonic() + 120
        while files(gw.outbox) < N:
            assert time.monotonic() < deadline, f"{files(gw.outbox)} of {N} notifications"
            time.sleep(0.001)
        gw.kill()
        gw.start()
        spool = gw.data_dir / "spool" / "queue"
        deadline = time.monotonic() + 120
        while any(spool.iterdir()):
            assert time.monotonic() < deadline, "the queue did not drain after the restart"
            time.sleep(0.1)
        c = enrol_over_http(gw, DAN, set(), set())
        page = html.unescape(c.get("/inbox").body)
        subjects = re.findall(r"crash (\d{4})", page)
        missing = sorted(set(f"{i:04d}" for i in range(N)) - set(subjects))
        print(f"\n{N} messages, {len(subjects)} in the inbox ({len(subjects) - len(set(subjects))} stored twice)")
        assert not missing, f"{len(missing)} accepted messages are not in the portal: {missing[:20]}"
    finally:
        gw.stop()
