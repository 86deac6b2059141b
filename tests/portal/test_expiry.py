"""Expiry of portal messages (`portal.domain_retention_days`, the
`expire_loop` pass: at start-up, then every 10 minutes).

Retention is at least one day (0 is refused by the settings check), so a
message is made due honestly: the gateway is restarted under libfaketime
(`LD_PRELOAD`, `FAKETIME=+2d`: the daemon's wall clock two days on; its
monotonic clock is left alone), and the start-up pass of the real loop
destroys it. The inbox warns, highlighted, when a message has 3 days or
fewer left."""

import re
import time
from pathlib import Path

import pytest

from harness import free_port
from hsm_token import token_gateway
from portaltools import PASSWORD, enrol_over_http, outbox_mail, portal_settings, raw_get, send
from webtools import Client, totp

DAN = "dan@partner.example"
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
SHIFT_DAYS = 2


def _gateway(tmp_path, days: int):
    port = free_port()
    settings = portal_settings(port)
    settings["portal"]["domain_retention_days"] = {"partner.example": days}
    gw = token_gateway(tmp_path / "gw", settings)
    gw.portal_port = port
    return gw


@pytest.fixture
def gateway_1_day(tmp_path):
    gw = _gateway(tmp_path, 1)
    gw.start()
    yield gw
    gw.stop()
    if gw.log_path.exists():
        print(f"--- log tail ---\n{gw.log_path.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def gateway_2_days(tmp_path):
    gw = _gateway(tmp_path, 2)
    gw.start()
    yield gw
    gw.stop()


def _wait_track(gw, needle: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        track = gw.cli("track", "--to", DAN).stdout
        if needle in track:
            return track
        if time.monotonic() > deadline:
            raise AssertionError(f"no {needle!r} in tracking after {timeout}s:\n{track}")
        time.sleep(0.5)


def test_message_expires_after_its_domains_days(gateway_1_day):
    if not LIBFAKETIME.exists():
        pytest.fail(f"{LIBFAKETIME} missing (apt-get install faketime: scripts/test-portal does)")
    gw = gateway_1_day
    send(gw, "alice@example.org", DAN, "Kept one day", "expires-soon-line")
    seen: set = set()
    outbox_mail(gw, DAN, lambda m: "Secure message from" in str(m["Subject"]), seen=seen)
    dan = enrol_over_http(gw, DAN, seen, set())
    inbox = dan.get("/inbox").body
    assert "Kept one day" in inbox
    msg_id = re.search(r'href="/message/([0-9a-f]+)" class="open-message"', inbox).group(1)
    assert dan.get(f"/message/{msg_id}").status == 200
    assert re.search(r'<strong class="warn">1 day left</strong>', inbox), inbox

    # Two days on: the start-up pass of the expiry loop destroys it.
    gw.stop()
    gw.env.update({"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": f"+{SHIFT_DAYS}d",
                   "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    gw.start()
    track = _wait_track(gw, f"expired {msg_id}: its key is destroyed")
    assert "key is destroyed" in track

    # The old session is past its 8 hours; a new login (TOTP at the
    # daemon's time) finds an empty inbox, and the message's page is 404.
    c = Client(gw.portal_port)
    r = c.post("/", {"address": DAN, "password": PASSWORD,
                     "code": totp(dan.secret, at=time.time() + SHIFT_DAYS * 86400)})
    assert r.status == 303 and r.header("location") == "/inbox", (r.status, r.body[:500])
    inbox = c.get("/inbox").body
    assert "Kept one day" not in inbox and msg_id not in inbox
    assert c.get(f"/message/{msg_id}").status == 404
    assert raw_get(gw.portal_port, f"/message/{msg_id}/body", c.cookies)[0] == 404


def test_inbox_warns_when_few_days_are_left(gateway_2_days, browser):
    gw = gateway_2_days
    send(gw, "alice@example.org", DAN, "Kept two days", "two days only")
    seen: set = set()
    outbox_mail(gw, DAN, lambda m: "Secure message from" in str(m["Subject"]), seen=seen)
    dan = enrol_over_http(gw, DAN, seen, set())
    b = browser
    origin = f"https://127.0.0.1:{gw.portal_port}"
    b.open(origin + "/")
    b.driver.add_cookie({"name": "__Host-sealgate-portal", "value": dan.cookies["__Host-sealgate-portal"],
                         "path": "/", "secure": True})
    b.open(origin + "/inbox")
    assert "Kept two days" in b.text("#inbox")
    warning = b.driver.find_element("css selector", "td.kept strong.warn")
    assert warning.text == "2 days left"
    b.shots("portal-inbox-expiry-warning")
