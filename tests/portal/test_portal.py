"""The secure web mail portal end to end, against a real daemon with a
SoftHSM token: mail for an encrypt-required recipient without a key goes
to the portal (sealed at rest), the notification in the outbox links to
it, headless Chromium enrols with the code from the captured mail and a
TOTP code, reads, downloads the attachment byte-identical and replies;
the reply reaches the internal sender with the thread headers. One
recipient cannot reach another's message; the data directory holds
nothing of the message in clear; admin cookies mean nothing here.
Screenshots of every portal page at 375 and 1280 px."""

import os
import re
import subprocess

from portaltools import PASSWORD, code_from, enrol_in_browser, enrol_over_http, outbox_mail, raw_get, send, text_of
from webtools import Client, fresh_code


def _grep_data_dir(gw, needle: str) -> list[str]:
    r = subprocess.run(["grep", "-rlaF", needle, str(gw.data_dir)], capture_output=True, text=True)
    return [line for line in r.stdout.splitlines() if line]


def test_pull_end_to_end_in_the_browser(portal_gateway, browser):
    gw = portal_gateway
    unique = "unique-line-" + os.urandom(6).hex()
    pdf = b"%PDF-1.4\n" + os.urandom(3000)
    parent = send(gw, "alice@example.org", "dan@partner.example", "Quarterly numbers",
                  f"Hello Dan,\n{unique}\nRegards", attachment=pdf,
                  html=f"<p>Hello <b>Dan</b></p><p>{unique}</p><img src='https://tracker.example/p.gif'>")
    seen: set = set()
    note = outbox_mail(gw, "dan@partner.example",
                       lambda m: "Secure message from alice@example.org" in str(m["Subject"]), seen=seen)
    body = text_of(note)
    assert unique not in note.as_string() and "Quarterly" not in note.as_string()
    link = re.search(r"https://127\.0\.0\.1:\d+/\?address=\S+", body).group(0)
    assert note.get_body(preferencelist=("html",)) is not None

    # Nothing of the message is in the data directory in clear (the
    # notification in the outbox names the sender only).
    assert _grep_data_dir(gw, unique) == []

    # Tracking and the dry run name the method and why.
    track = gw.cli("track", "--to", "dan@partner.example").stdout
    assert "method portal" in track and "stored in the portal" in track, track
    explain = gw.cli("policy", "explain", "--json", "--from", "alice@example.org",
                     "--to", "dan@partner.example", input_text="Subject: x\r\n\r\nx\r\n").stdout
    assert "method portal" in explain, explain

    b = browser
    used: set = set()
    enrol_in_browser(b, link, "dan@partner.example", lambda: code_from(gw, "dan@partner.example", seen), used)
    assert "Quarterly numbers" in b.text("#inbox")
    b.shots("portal-inbox")
    b.click("a.open-message", navigates=True)
    assert b.text("#subject") == "Quarterly numbers"
    assert "Alice Sender" in b.text("#from")
    b.shots("portal-message")
    # The HTML body is in a sandboxed frame with no remote image.
    frame = b.driver.find_element("css selector", "#html-body")
    assert frame.get_attribute("sandbox") == ""
    b.driver.switch_to.frame(frame)
    assert unique in b.driver.find_element("tag name", "body").text
    assert b.driver.find_elements("tag name", "img") == []
    b.driver.switch_to.default_content()

    # The attachment, with the browser's session cookie, byte-identical.
    href = b.driver.find_element("css selector", "a.attachment").get_attribute("href")
    cookie = {c["name"]: c["value"] for c in b.driver.get_cookies()}
    assert "__Host-sealgate-portal" in cookie and "__Host-sealgate" not in cookie
    c = Client(gw.portal_port, cookies=dict(cookie))
    path = "/" + href.split("/", 3)[3]
    ctx_reply = raw_get(gw.portal_port, path, cookie)
    assert ctx_reply[0] == 200
    assert ctx_reply[1] == pdf
    assert ctx_reply[2]["content-disposition"].startswith("attachment;")
    assert ctx_reply[2]["x-content-type-options"] == "nosniff"
    # The body frame's own policy: nothing runs, nothing loads.
    frame_path = path.split("/attachment/")[0] + "/body"
    fr = raw_get(gw.portal_port, frame_path, cookie)
    assert "sandbox" in fr[2]["content-security-policy"] and "img-src data:" in fr[2]["content-security-policy"]

    # Reply from the portal: reaches alice through the pipeline, in the thread.
    b.fill("text", "Thanks Alice, received.")
    b.click("#send-reply", navigates=True)
    assert "Your reply was sent" in b.text()
    reply = outbox_mail(gw, "alice@example.org", lambda m: str(m["Subject"]) == "Re: Quarterly numbers")
    assert reply["In-Reply-To"] == parent
    assert parent in reply["References"]
    assert str(reply["From"]) == "dan@partner.example"
    assert "Thanks Alice, received." in text_of(reply)
    track = gw.cli("track", "--to", "dan@partner.example").stdout
    for what in ("read", "downloaded", "replied"):
        assert what in track, (what, track)
    del c

    # Delete: gone from the inbox, its key destroyed.
    b.open(f"https://127.0.0.1:{gw.portal_port}/inbox")
    b.click("a.open-message", navigates=True)
    b.click("#delete", navigates=True)
    assert "deleted" in b.text()
    b.shots("portal-inbox-empty")


def test_one_recipient_cannot_open_anothers_message(portal_gateway):
    gw = portal_gateway
    send(gw, "alice@example.org", "dan@partner.example", "For Dan only", "dan's secret",
         attachment=b"%PDF-1.4 dan")
    send(gw, "alice@example.org", "eve@partner.example", "For Eve", "eve's mail")
    seen: set = set()
    used: set = set()
    for rcpt in ("dan@partner.example", "eve@partner.example"):
        outbox_mail(gw, rcpt, lambda m: "Secure message" in str(m["Subject"]), seen=seen)
    dan = enrol_over_http(gw, "dan@partner.example", seen, used)
    eve = enrol_over_http(gw, "eve@partner.example", seen, used)
    inbox = dan.get("/inbox").body
    dan_id = re.search(r'href="/message/([0-9a-f]{32})"', inbox).group(1)
    assert "For Eve" not in inbox
    # Eve asks for Dan's message by its id every way there is: not found.
    for method, path in (("GET", f"/message/{dan_id}"), ("GET", f"/message/{dan_id}/body"),
                         ("GET", f"/message/{dan_id}/attachment/0")):
        r = eve.request(method, path)
        assert r.status == 404, (path, r.status)
        assert "dan's secret" not in r.body
    assert eve.post(f"/message/{dan_id}/delete", {}).status == 404
    assert eve.post(f"/message/{dan_id}/reply", {"text": "hi"}).status == 404
    # Dan still has it.
    assert dan.get(f"/message/{dan_id}").status == 200
    # An admin UI cookie is nothing here.
    stranger = Client(gw.portal_port, cookies={"__Host-sealgate": "x" * 43})
    r = stranger.get("/inbox")
    assert r.status == 303 and r.header("location") == "/"


def test_no_enumeration_and_lockout(portal_gateway):
    gw = portal_gateway
    send(gw, "alice@example.org", "dan@partner.example", "Hello", "text")
    seen: set = set()
    used: set = set()
    outbox_mail(gw, "dan@partner.example", lambda m: "Secure message" in str(m["Subject"]), seen=seen)
    c = Client(gw.portal_port)
    # Asking a code for an address with nothing waiting: the same page.
    known = c.post("/code", {"address": "dan@partner.example"}).body
    unknown = c.post("/code", {"address": "nobody@partner.example"}).body
    def strip(t: str) -> str:
        for a in ("dan@partner.example", "nobody@partner.example", "dan%40partner.example",
                  "nobody%40partner.example"):
            t = t.replace(a, "X")
        return t

    assert strip(known) == strip(unknown)
    code = code_from(gw, "dan@partner.example", seen)
    r = c.post("/enrol", {"address": "dan@partner.example", "code": code,
                          "password": PASSWORD, "password2": PASSWORD})
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', r.body).group(1)
    enrolment = re.search(r'name="enrolment" value="([^"]+)"', r.body).group(1)
    assert c.post("/enrol/totp", {"enrolment": enrolment, "code": fresh_code(secret, used)}).status == 303
    # Unknown address, wrong password: the same answer.
    a = Client(gw.portal_port, source="127.0.0.2").post(
        "/", {"address": "nobody@partner.example", "password": PASSWORD, "code": "123456"})
    w = Client(gw.portal_port, source="127.0.0.3").post(
        "/", {"address": "dan@partner.example", "password": "wrong password", "code": "123456"})
    assert a.status == w.status == 401
    assert strip(a.body) == strip(w.body)
    # Three failures lock the account: then even the right password and code fail.
    for n in range(2):
        Client(gw.portal_port, source=f"127.0.1.{n}").post(
            "/", {"address": "dan@partner.example", "password": "wrong password", "code": "1"})
    r = Client(gw.portal_port, source="127.0.2.1").post(
        "/", {"address": "dan@partner.example", "password": PASSWORD, "code": fresh_code(secret, used)})
    assert r.status == 401


def test_token_away_reads_fail_temporarily_and_nothing_is_written_in_clear(portal_gateway):
    gw = portal_gateway
    send(gw, "alice@example.org", "dan@partner.example", "First", "first message")
    seen: set = set()
    used: set = set()
    outbox_mail(gw, "dan@partner.example", lambda m: "Secure message" in str(m["Subject"]), seen=seen)
    dan = enrol_over_http(gw, "dan@partner.example", seen, used)
    msg_id = re.search(r'href="/message/([0-9a-f]{32})"', dan.get("/inbox").body).group(1)
    # The token's storage goes away (as a removed HSM would).
    gw.stop()
    tokens = gw.data_dir / "hsm" / "tokens"
    away = gw.data_dir.parent / "tokens-away"
    tokens.rename(away)
    try:
        gw.start()
        r = dan.get(f"/message/{msg_id}")
        assert r.status == 503, (r.status, r.body[:300])
        assert "unavailable" in r.body and "try again" in r.body.lower()
        # New mail for the portal waits; nothing of it is written in clear.
        unique = "unique-line-" + os.urandom(6).hex()
        send(gw, "alice@example.org", "dan@partner.example", "Second", f"text {unique}")
        import time
        time.sleep(2)
        listed = gw.cli("queue", "list").stdout
        assert "dan@partner.example" in listed, listed
        hits = [h for h in _grep_data_dir(gw, unique) if "/spool/" not in h]
        assert hits == [], hits
    finally:
        gw.stop()
        away.rename(tokens)
    gw.start()
    assert "first message" in dan.get(f"/message/{msg_id}").body


def test_remote_images_load_only_when_the_reader_asks(portal_gateway, tmp_path):
    """An HTML message's images from the Internet are blocked: the page
    says so and nothing leaves the browser for them. "Show images" loads
    them (HTTPS only) for this message, this time; the next opening
    blocks them again. A plain text message never becomes HTML."""
    from webtools import Browser, Trap

    gw = portal_gateway
    trap = Trap()
    b = Browser(tmp_path, trap_port=trap.port)
    try:
        send(gw, "alice@example.org", "dan@partner.example", "Newsletter", "plain part",
             html="<p>Look</p><img src='https://images.partner.example/logo.png' alt='logo'>"
                  "<img src='http://plain.partner.example/x.png'>")
        send(gw, "alice@example.org", "dan@partner.example", "Plain only", "<img src=x> stays text")
        seen: set = set()
        for _ in range(2):
            outbox_mail(gw, "dan@partner.example", lambda m: "Secure message" in str(m["Subject"]), seen=seen)
        dan = enrol_over_http(gw, "dan@partner.example", seen, set())
        inbox = dan.get("/inbox").body
        ids = dict((s, i) for i, s in re.findall(r'href="/message/([0-9a-f]{32})"[^>]*>([^<]+)<', inbox))
        origin = f"https://127.0.0.1:{gw.portal_port}"
        b.open(origin + "/")
        b.driver.add_cookie({"name": "__Host-sealgate-portal", "value": dan.cookies["__Host-sealgate-portal"],
                             "path": "/", "secure": True})

        b.open(f"{origin}/message/{ids['Newsletter']}")
        assert "Images from the Internet are blocked" in b.text("#images-note")
        b.shots("portal-message-images-blocked")
        frame = b.driver.find_element("css selector", "#html-body")
        b.driver.switch_to.frame(frame)
        assert "Look" in b.driver.find_element("tag name", "body").text
        assert b.driver.find_elements("tag name", "img") == []
        b.driver.switch_to.default_content()
        assert trap.page_hits() == []

        b.click("#show-images", navigates=True)
        assert "shown for this message" in b.text("#images-note")
        b.shots("portal-message-images-shown")
        import time
        deadline = time.monotonic() + 30
        while "images.partner.example" not in trap.page_hits() and time.monotonic() < deadline:
            time.sleep(0.2)
        hits = trap.page_hits()
        assert "images.partner.example" in hits, hits
        assert "plain.partner.example" not in hits, hits
        fr = raw_get(gw.portal_port, f"/message/{ids['Newsletter']}/body?images=1", dan.cookies)
        assert "img-src https: data:" in fr[2]["content-security-policy"]
        assert "sandbox" in fr[2]["content-security-policy"]

        # Not remembered: the next opening blocks them again.
        b.open(f"{origin}/message/{ids['Newsletter']}")
        assert b.driver.find_elements("css selector", "#show-images")

        # Plain text stays plain text: no frame, no HTML made of it.
        b.open(f"{origin}/message/{ids['Plain only']}")
        assert b.driver.find_elements("css selector", "#html-body") == []
        assert "<img src=x> stays text" in b.text("#text-body")
    finally:
        b.close()
        trap.close()
