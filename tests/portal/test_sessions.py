"""The recipient's sessions on /preferences: Dan signs in over HTTP (one
session from enrolment, one from a login with its own User-Agent) and in
Chromium. The browser's preferences list all three, this one marked,
with where the others came from; ending the other by its End button
kills that client's cookie (its next request lands on the login page),
"End all other sessions" ends the rest; another address's session
cannot end Dan's with his session's handle, nor with a made-up one."""

from portaltools import PASSWORD, enrol_over_http, outbox_mail, send
from webtools import Client, fresh_code

DAN = "dan@partner.example"
EVA = "eva@partner.example"
PY_AGENT = "SessionsTest-Python/1.0 (robot; <b>not bold</b>)"


def _login(gw, address: str, secret: str, used: set, agent: str) -> Client:
    c = Client(gw.portal_port)
    r = c.post("/", {"address": address, "password": PASSWORD, "code": fresh_code(secret, used)},
               headers={"User-Agent": agent})
    assert r.status == 303 and r.header("location") == "/inbox", (r.status, r.body[:300])
    return c


def _handles(b) -> list:
    return [e.get_attribute("value") for e in
            b.driver.find_elements("css selector", "#sessions input[name=handle]")]


def _lands_on_login(c: Client) -> bool:
    r = c.get("/inbox")
    return r.status in (302, 303) and r.header("location") == "/"


def test_list_and_end_sessions(portal_gateway, browser):
    gw = portal_gateway
    seen: set = set()
    send(gw, "alice@example.org", DAN, "For Dan", "waits in the portal")
    outbox_mail(gw, DAN, lambda m: "Secure message from" in str(m["Subject"]), seen=seen)
    send(gw, "alice@example.org", EVA, "For Eva", "waits in the portal")
    outbox_mail(gw, EVA, lambda m: "Secure message from" in str(m["Subject"]), seen=seen)
    used_dan: set = set()
    enrolled = enrol_over_http(gw, DAN, seen, used_dan)
    eva = enrol_over_http(gw, EVA, seen, set())
    python = _login(gw, DAN, enrolled.secret, used_dan, PY_AGENT)
    assert enrolled.get("/inbox").status == 200 and python.get("/inbox").status == 200

    # Dan in Chromium, by the login form.
    b = browser
    origin = f"https://127.0.0.1:{gw.portal_port}"
    agent = b.driver.execute_script("return navigator.userAgent")
    b.open(origin + "/")
    b.fill("address", DAN)
    b.fill("password", PASSWORD)
    b.fill("code", fresh_code(enrolled.secret, used_dan))
    b.click("#login", navigates=True)
    assert b.path == "/inbox", b.path
    b.open(origin + "/preferences")
    rows = b.driver.find_elements("css selector", "#sessions > li")
    assert len(rows) == 3, b.text("#sessions")
    # This session first, marked, with the browser's own User-Agent.
    assert "This session" in rows[0].text and agent[:60] in rows[0].text
    assert "127.0.0.1" in rows[0].text
    # The Python login's User-Agent, as text (escaped), and the
    # enrolment's session (over HTTP without a User-Agent).
    listed = b.text("#sessions")
    assert PY_AGENT in listed, listed
    assert not b.driver.find_elements("css selector", "#sessions b")
    assert "Unknown browser" in listed
    assert b.text("#sessions").count("This session") == 1
    b.shots("portal-preferences-sessions")

    # Eva cannot end Dan's sessions: not with his handles, not with a
    # made-up one; nothing ends.
    handles = _handles(b)
    assert len(handles) == 2
    for h in handles + ["made-up-handle", ""]:
        r = eva.post("/preferences/sessions/end", {"handle": h})
        assert r.status == 422, (r.status, r.body[:300])
        assert "not one of your other sessions" in r.body
    assert enrolled.get("/inbox").status == 200 and python.get("/inbox").status == 200
    assert eva.get("/inbox").status == 200

    # Dan ends the Python login's session by its End button.
    row = next(r for r in b.driver.find_elements("css selector", "#sessions > li") if PY_AGENT in r.text)
    b.driver.execute_script("window.__sgOld = true;")
    row.find_element("css selector", "button.session-end").click()
    b._wait_for_new_page("End")
    assert "The session is ended" in b.text("#notice")
    assert PY_AGENT not in b.text("#sessions")
    assert _lands_on_login(python)
    assert enrolled.get("/inbox").status == 200
    track = gw.cli("track", "--to", DAN).stdout
    assert "a session ended by the recipient" in track, track

    # Then every other one: the enrolment's session ends, the browser's
    # goes on, Eva's is untouched.
    b.click("#end-other-sessions", navigates=True)
    assert "Your other sessions are ended" in b.text("#notice")
    assert len(b.driver.find_elements("css selector", "#sessions > li")) == 1
    assert b.text("#sessions-only-this")
    assert _lands_on_login(enrolled)
    assert eva.get("/inbox").status == 200
    b.open(origin + "/inbox")
    assert b.path == "/inbox"
    track = gw.cli("track", "--to", DAN).stdout
    assert "other sessions ended by the recipient: 1" in track, track
