"""The XSS corpus (tests/web/data/xss-vectors.json) in the portal: every
vector as a Subject, a display name, an attachment name, a plain text
body and an HTML body (the two as alternatives) of real mail delivered to
the portal, shown in the inbox and on the message page (whose HTML body
is the sandboxed frame; the plain text is on the page itself). After every page:
no dialog, no element or handler a payload made, no request that left
the page (Chromium's network log, and a trap every other host name
resolves to)."""

import json
import re

import pytest

from harness import SmtpDialogue
from portaltools import enrol_over_http, outbox_mail
from test_xss import _encoded_word, _filename
from webtools import INERT_CHECK, REPO, Browser, Trap, assert_inert

VECTORS = json.loads((REPO / "tests" / "web" / "data" / "xss-vectors.json").read_text())


@pytest.fixture
def trapped(tmp_path):
    trap = Trap()
    b = Browser(tmp_path, trap_port=trap.port)
    yield b, trap
    b.close()
    trap.close()


def _message(v: dict, n: int) -> bytes:
    payload = v["payload"]
    html = payload.encode("utf-8")
    import base64
    body = base64.encodebytes(b"<p>vector " + v["id"].encode() + b"</p>" + html).decode().replace("\n", "\r\n")
    text = base64.encodebytes(b"vector " + v["id"].encode() + b"\n" + html).decode().replace("\n", "\r\n")
    return (
        f"From: {_encoded_word(payload)} <sender{n}@example.org>\r\n"
        f"To: <dan@partner.example>\r\n"
        f"Subject: {_encoded_word(payload)}\r\n"
        f"Message-ID: <xss-{n}@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: multipart/alternative; boundary=\"a\"\r\n\r\n"
        "--a\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + text +
        "--a\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + body +
        "--a--\r\n"
        "--b\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Disposition: attachment;\r\n {_filename(payload)}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n"
    ).encode()


def test_the_corpus_is_inert_in_the_portal(portal_gateway, trapped):
    gw = portal_gateway
    b, trap = trapped
    for n, v in enumerate(VECTORS):
        d = SmtpDialogue(gw.port)
        try:
            d.reply()
            d.cmd("EHLO client.example.org", "250")
            d.cmd(f"MAIL FROM:<sender{n}@example.org>", "250")
            d.cmd("RCPT TO:<dan@partner.example>", "250")
            d.cmd("DATA", "354")
            d.send(_message(v, n) + b".\r\n")
            assert d.reply().startswith("250")
        finally:
            d.close()
    seen: set = set()
    outbox_mail(gw, "dan@partner.example", lambda m: "Secure message" in str(m["Subject"]), seen=seen)
    dan = enrol_over_http(gw, "dan@partner.example", seen, set())
    origin = f"https://127.0.0.1:{gw.portal_port}"
    # Wait until every message is in the portal.
    import time
    deadline = time.monotonic() + 120
    while True:
        ids = re.findall(r'href="/message/([0-9a-f]{32})"', dan.get("/inbox").body)
        if len(ids) >= len(VECTORS) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(ids) == len(VECTORS), len(ids)
    b.open(origin + "/")
    b.driver.add_cookie({"name": "__Host-sealgate-portal", "value": dan.cookies["__Host-sealgate-portal"],
                         "path": "/", "secure": True})
    b.open(origin + "/inbox")
    assert b.path == "/inbox"
    assert_inert(b, trap, origin, "inbox")
    for msg_id in ids:
        b.open(origin + f"/message/{msg_id}")
        # The plain text alternative is on the page itself (escaped).
        shown = b.driver.find_element("css selector", "pre.mail-text").get_attribute("textContent")
        assert shown.startswith("vector "), (msg_id, shown[:200])
        assert_inert_with_body_frame(b, trap, origin, f"message {msg_id}")


def assert_inert_with_body_frame(b, trap, origin: str, what: str) -> None:
    """The message page has one frame of its own, the sandboxed HTML
    body: nothing a payload made is in it either. Then the page without
    that frame passes the admin UI's check (no script, no handler, no
    request left)."""
    frames = b.driver.find_elements("css selector", "iframe, frame, object, embed")
    assert all(f.get_attribute("id") == "html-body" and f.get_attribute("sandbox") == "" for f in frames), what
    assert len(frames) <= 1, what
    if frames:
        b.driver.switch_to.frame(frames[0])
        bad = b.driver.execute_script(INERT_CHECK)
        b.driver.switch_to.default_content()
        assert not bad, f"{what} (body frame): {bad}"
        b.driver.execute_script("document.getElementById('html-body').remove()")
    assert_inert(b, trap, origin, what)
