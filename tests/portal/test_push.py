"""Push delivery (issue 15) end to end, against a real daemon with a
SoftHSM token: a recipient in `[portal] push_domains` gets a notification
whose HTML attachment holds the message sealed; nothing of the message is
in the notification's text or anywhere in the data directory (the
gateway keeps only the wrapped key). The attachment, saved to a file and
opened in headless Chromium, posts the ciphertext to the portal; the
recipient enrols (code from the outbox, password, TOTP) and reads the
message (with a reply form, no delete), downloads its attachment
byte-identical. Another address's
session cannot open the message, even with the attachment in hand. The
recipient's own choice of pull wins over the domain's push. With the
token away, opening answers 503 and new push mail waits, nothing in
clear. Screenshots at 375 and 1280 px."""

import os
import re
import subprocess

import pytest

from harness import free_port
from hsm_token import token_gateway
from portaltools import PASSWORD, code_from, enrol_over_http, outbox_mail, raw_get, send, text_of
from webtools import Client, fresh_code, secret_from


@pytest.fixture
def push_gateway(tmp_path):
    """Like portal_gateway, with partner.example in push_domains and push
    in policy.methods."""
    port = free_port()
    settings = {
        "relay": {"domains": ["example.org"], "internal_networks": ["127.0.0.0/8"]},
        "policy": {"domain": {"partner.example": {"action": "encrypt-required"}},
                   "methods": ["smime", "openpgp", "push", "portal"]},
        "portal": {
            "listen": [f"127.0.0.1:{port}"],
            "enabled": True,
            "url": f"https://127.0.0.1:{port}",
            "require_totp_domains": ["partner.example"],
            "push_domains": ["partner.example"],
        },
    }
    gw = token_gateway(tmp_path / "gw", settings)
    gw.portal_port = port
    gw.start()
    yield gw
    gw.stop()
    if gw.log_path.exists():
        print(f"--- log tail ---\n{gw.log_path.read_text(errors='replace')[-3000:]}")


def _grep_data_dir(gw, needle: str) -> list[str]:
    r = subprocess.run(["grep", "-rlaF", needle, str(gw.data_dir)], capture_output=True, text=True)
    return [line for line in r.stdout.splitlines() if line]


def _page_of(note) -> str:
    pages = [p for p in note.iter_attachments() if p.get_filename() == "secure-message.html"]
    assert len(pages) == 1, [p.get_filename() for p in note.iter_attachments()]
    content = pages[0].get_content()
    return content if isinstance(content, str) else content.decode()


def test_push_attachment_opens_in_the_browser_after_sign_in(push_gateway, browser, tmp_path):
    gw = push_gateway
    rcpt = "dan@partner.example"
    unique = "unique-line-" + os.urandom(6).hex()
    pdf = b"%PDF-1.4\n" + os.urandom(3000)
    send(gw, "alice@example.org", rcpt, "Quarterly numbers", f"Hello Dan,\n{unique}\nRegards",
         attachment=pdf, html=f"<p>Hello <b>Dan</b></p><p>{unique}</p>")
    seen: set = set()
    note = outbox_mail(gw, rcpt, lambda m: "Secure message from alice@example.org" in str(m["Subject"]),
                       seen=seen)
    assert "secure-message.html" in text_of(note)
    page = _page_of(note)
    # Nothing of the message in the notification, its attachment, or the
    # data directory (spool, outbox, state): only the wrapped key is kept.
    assert unique not in note.as_string() and "Quarterly" not in note.as_string()
    assert unique not in page and "Quarterly" not in page
    assert _grep_data_dir(gw, unique) == []
    # The page: a form to the portal, no script, nothing loaded, its own policy.
    assert f'action="https://127.0.0.1:{gw.portal_port}/push/open"' in page
    assert "<script" not in page.lower() and "src=" not in page.lower()
    assert "default-src 'none'" in page and f"form-action https://127.0.0.1:{gw.portal_port}" in page

    # Tracking and the dry run name the method and why.
    track = gw.cli("track", "--to", rcpt).stdout
    assert "method push" in track and "pushed" in track and "wrapped key" in track, track
    explain = gw.cli("policy", "explain", "--json", "--from", "alice@example.org",
                     "--to", rcpt, input_text="Subject: x\r\n\r\nx\r\n").stdout
    assert "method push" in explain, explain

    saved = tmp_path / "secure-message.html"
    saved.write_text(page, encoding="utf-8")
    b = browser
    b.open(saved.as_uri())
    assert "Open the message" in b.text("main")
    b.shots("push-attachment")
    b.click("#open-message", navigates=True)
    assert b.path.startswith("/push/"), b.driver.current_url
    push_path = b.path
    assert "Sign in to open the message" in b.text()
    b.shots("push-signin")
    # First visit: a live push counts as mail waiting, so a code is sent.
    b.click("#first-visit", navigates=True)
    b.fill("address", rcpt)
    b.click("#send-code", navigates=True)
    b.fill("code", code_from(gw, rcpt, seen))
    b.fill("password", PASSWORD)
    b.fill("password2", PASSWORD)
    b.click("#enrol", navigates=True)
    secret = secret_from(b.driver.page_source)
    used: set = set()
    b.fill("code", fresh_code(secret, used))
    b.click("#confirm-totp", navigates=True)
    # Back at the message after sign-in.
    assert b.path == push_path, b.driver.current_url
    assert b.text("#subject") == "Quarterly numbers"
    assert "Alice Sender" in b.text("#from")
    assert "not kept here" in b.text("#push-note")
    # Reply goes (test_compose.py); move and delete do not (nothing is kept).
    assert b.driver.find_elements("css selector", "#send-reply") != []
    assert b.driver.find_elements("css selector", "#delete") == []
    frame = b.driver.find_element("css selector", "#html-body")
    assert frame.get_attribute("sandbox") == ""
    b.driver.switch_to.frame(frame)
    assert unique in b.driver.find_element("tag name", "body").text
    b.driver.switch_to.default_content()
    b.shots("push-message")

    # The attachment with the browser's cookies: byte-identical, a download.
    href = b.driver.find_element("css selector", "a.attachment").get_attribute("href")
    cookies = {c["name"]: c["value"] for c in b.driver.get_cookies()}
    status, data, headers = raw_get(gw.portal_port, "/" + href.split("/", 3)[3], cookies)
    assert status == 200 and data == pdf
    assert headers["content-disposition"].startswith("attachment;")
    assert headers["x-content-type-options"] == "nosniff"
    track = gw.cli("track", "--to", rcpt).stdout
    assert "read pushed" in track and "downloaded attachment 1 of pushed" in track, track
    # Still nothing of the message in the data directory.
    assert _grep_data_dir(gw, unique) == []


def test_another_address_cannot_open_a_pushed_message(push_gateway):
    gw = push_gateway
    send(gw, "alice@example.org", "dan@partner.example", "For Dan only", "dan-secret-text")
    send(gw, "alice@example.org", "eve@partner.example", "For Eve", "eve's mail")
    seen: set = set()
    used: set = set()
    notes = {r: outbox_mail(gw, r, lambda m: "Secure message" in str(m["Subject"]), seen=seen)
             for r in ("dan@partner.example", "eve@partner.example")}
    dan_page = _page_of(notes["dan@partner.example"])
    msg_id = re.search(r'name="id" value="([0-9a-f]{32})"', dan_page).group(1)
    data = re.search(r'name="data" value="([A-Za-z0-9+/=]+)"', dan_page).group(1)
    dan = enrol_over_http(gw, "dan@partner.example", seen, used)
    eve = enrol_over_http(gw, "eve@partner.example", seen, used)

    # The post needs no same-origin headers (it comes from a file).
    r = eve.post("/push/open", {"id": msg_id, "data": data}, browser=False,
                 headers={"Origin": "null", "Sec-Fetch-Site": "cross-site"})
    assert r.status == 303, (r.status, r.body[:300])
    handle_path = r.header("location")
    assert re.fullmatch(r"/push/[0-9a-f]{32}", handle_path)
    unknown = eve.get("/push/" + "0" * 32)
    assert unknown.status == 404
    for path in (handle_path, handle_path + "/body", handle_path + "/attachment/0"):
        got = eve.get(path)
        assert got.status == 404, (path, got.status)
        assert "dan-secret-text" not in got.body and "For Dan only" not in got.body
    # Dan, with the same handle, reads it.
    r = dan.get(handle_path)
    assert r.status == 200 and "For Dan only" in r.body and "dan-secret-text" in r.body
    # An altered ciphertext is refused, a malformed post too.
    bad = data[:-8] + ("A" if data[-9] != "A" else "B") + data[-7:]
    r = dan.post("/push/open", {"id": msg_id, "data": bad}, browser=False)
    assert dan.get(r.header("location")).status != 200
    assert dan.post("/push/open", {"id": "x", "data": "@@"}, browser=False).status == 400


def test_the_recipient_chooses_pull_over_the_domains_push(push_gateway, browser):
    gw = push_gateway
    rcpt = "dan@partner.example"
    send(gw, "alice@example.org", rcpt, "First", "first text")
    seen: set = set()
    used: set = set()
    first = outbox_mail(gw, rcpt, lambda m: "Secure message" in str(m["Subject"]), seen=seen)
    assert len(list(first.iter_attachments())) == 1
    dan = enrol_over_http(gw, rcpt, seen, used)
    b = browser
    b.open(f"https://127.0.0.1:{gw.portal_port}/healthz")
    b.driver.add_cookie({"name": "__Host-sealgate-portal", "value": dan.cookies["__Host-sealgate-portal"],
                         "path": "/", "secure": True})
    b.open(f"https://127.0.0.1:{gw.portal_port}/preferences")
    assert "push (encrypted attachment)" in b.text("#delivery")
    from selenium.webdriver.support.ui import Select
    Select(b.driver.find_element("id", "delivery")).select_by_value("pull")
    b.click("#save-delivery", navigates=True)
    assert "Your choice is saved" in b.text("#notice")
    b.shots("portal-preferences-delivery")
    explain = gw.cli("policy", "explain", "--json", "--from", "alice@example.org",
                     "--to", rcpt, input_text="Subject: x\r\n\r\nx\r\n").stdout
    assert "method portal" in explain and "the recipient chose pull" in explain, explain
    # The next message waits in the portal: a link, no attachment.
    send(gw, "alice@example.org", rcpt, "Second", "second text")
    second = outbox_mail(gw, rcpt, lambda m: "Secure message" in str(m["Subject"]), seen=seen)
    assert list(second.iter_attachments()) == []
    assert "Second" in dan.get("/inbox").body
    track = gw.cli("track", "--to", rcpt).stdout
    assert "the recipient chose pull" in track and "stored in the portal" in track, track
    # Nobody chooses what the gateway does not offer.
    r = dan.post("/preferences/delivery", {"delivery": "carrier-pigeon"})
    assert r.status == 422 and "Choose one of the ways listed" in r.body


def test_token_away_opening_fails_temporarily_and_push_defers(push_gateway):
    gw = push_gateway
    rcpt = "dan@partner.example"
    send(gw, "alice@example.org", rcpt, "First", "first-push-text")
    seen: set = set()
    used: set = set()
    page = _page_of(outbox_mail(gw, rcpt, lambda m: "Secure message" in str(m["Subject"]), seen=seen))
    form = {"id": re.search(r'name="id" value="([0-9a-f]{32})"', page).group(1),
            "data": re.search(r'name="data" value="([A-Za-z0-9+/=]+)"', page).group(1)}
    dan = enrol_over_http(gw, rcpt, seen, used)
    gw.stop()
    tokens = gw.data_dir / "hsm" / "tokens"
    away = gw.data_dir.parent / "tokens-away"
    tokens.rename(away)
    try:
        gw.start()
        r = dan.post("/push/open", {**form}, browser=False)
        assert r.status == 303
        r = dan.get(r.header("location"))
        assert r.status == 503, (r.status, r.body[:300])
        assert "unavailable" in r.body and "try again" in r.body.lower()
        # New push mail waits (deferred); nothing of it is written in clear.
        unique = "unique-line-" + os.urandom(6).hex()
        send(gw, "alice@example.org", rcpt, "Second", f"text {unique}")
        import time
        time.sleep(2)
        assert rcpt in gw.cli("queue", "list").stdout
        hits = [h for h in _grep_data_dir(gw, unique) if "/spool/" not in h]
        assert hits == [], hits
    finally:
        gw.stop()
        away.rename(tokens)
    gw.start()
    r = dan.post("/push/open", {**form}, browser=False)
    assert "first-push-text" in dan.get(r.header("location")).body
