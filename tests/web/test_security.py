"""The web layer's defences, each asserted from outside: security headers
on every response (errors included), cross-origin state changes refused,
the session cookie's flags, sessions that end on the server, throttled
logins with one answer for every failure, TOTP codes used once, the
setup token never in a URL and throttled."""

import re
import time

import pytest

from webtools import PASSWORD, Client, fresh_code, setup_over_http, setup_token


def login(c: Client, name: str, secret: str, used: set[str]):
    return c.post("/login", {"name": name, "password": PASSWORD, "code": fresh_code(secret, used)})


def check_headers(r, what: str) -> None:
    csp = r.header("content-security-policy") or ""
    assert "script-src 'self'" in csp and "unsafe" not in csp, (what, csp)
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, (what, csp)
    assert (r.header("strict-transport-security") or "").startswith("max-age="), what
    assert r.header("x-content-type-options") == "nosniff", what
    assert r.header("referrer-policy") == "no-referrer", what
    assert r.header("x-frame-options") == "DENY", what


@pytest.fixture
def setup_gw(gateways):
    gw = gateways()
    used: set[str] = set()
    c, secret = setup_over_http(gw, used=used)
    return gw, c, secret, used


def test_headers_on_every_response_including_errors(setup_gw):
    gw, c, _secret, _used = setup_gw
    anon = Client(gw.web_port)
    cases = {
        "redirect": anon.get("/"),
        "login page": anon.get("/login"),
        "not found": anon.get("/no/such/page"),
        "static": anon.get("/static/app.css"),
        "guarded": anon.get("/dashboard"),
        "cross-origin": c.post("/accounts", {"name": "x", "role": "admin", "password": "y"},
                               headers={"Sec-Fetch-Site": "cross-site"}),
        "failed login": anon.post("/login", {"name": "alice", "password": "wrong", "code": ""}),
        "metrics without token": anon.get("/metrics"),
        "healthz": anon.get("/healthz"),
        "dashboard": c.get("/dashboard"),
        "form error": c.post("/accounts", {"name": "bob", "role": "operator", "password": "short"}),
        "bad request": c.post("/accounts", {"name": "bob"}),
    }
    for what, r in cases.items():
        check_headers(r, what)
    assert cases["not found"].status == 404
    assert cases["cross-origin"].status == 403
    assert cases["form error"].status == 422 and "At least 12 characters" in cases["form error"].body
    for what in ("login page", "dashboard", "not found", "failed login"):
        assert cases[what].header("cache-control") == "no-store", what
    assert cases["healthz"].status == 200 and cases["healthz"].body == "ok\n"


def test_cross_origin_changes_are_refused(setup_gw):
    gw, c, _secret, _used = setup_gw
    form = {"name": "mallory", "role": "admin", "password": "a long enough passphrase here"}
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Sec-Fetch-Site": None, "Origin": "https://evil.example"}):
        h = {k: v for k, v in headers.items() if v is not None}
        # A browser without Sec-Fetch-Site still sends Origin.
        r = c.request("POST", "/accounts", form=form, headers=h, browser=False)
        assert r.status == 403, (headers, r.status)
    assert "mallory" not in c.get("/accounts").body
    assert c.post("/accounts", form).status == 303, "the same form from our own page works"
    assert "mallory" in c.get("/accounts").body


def test_cookie_flags_and_logout_ends_the_session_on_the_server(setup_gw):
    gw, c, secret, used = setup_gw
    c2 = Client(gw.web_port)
    r = login(c2, "alice", secret, used)
    assert r.status == 303, r.body[:500]
    (cookie,) = [h for h in c2.last_set_cookie if h.startswith("__Host-sealgate=")]
    for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in cookie, cookie
    assert "Domain" not in cookie and "Expires" not in cookie, cookie
    stolen = dict(c2.cookies)
    first = c.cookies["__Host-sealgate"]
    assert stolen["__Host-sealgate"] != first, "a new session id at every login"
    assert c2.get("/dashboard").status == 200
    assert c2.post("/logout", {}).status == 303
    replay = Client(gw.web_port, cookies=stolen)
    r = replay.get("/dashboard")
    assert r.status == 303 and r.header("location") == "/login", "the old cookie no longer works"


def test_login_throttling_and_one_answer_for_every_failure(setup_gw):
    gw, _c, secret, used = setup_gw
    unknown = Client(gw.web_port, source="127.0.0.2").post("/login", {"name": "nobody", "password": PASSWORD, "code": "123456"})
    wrong = Client(gw.web_port, source="127.0.0.3").post("/login", {"name": "alice", "password": "not it at all", "code": "123456"})
    no_code = Client(gw.web_port, source="127.0.0.4").post("/login", {"name": "alice", "password": PASSWORD, "code": ""})
    texts = set()
    for r in (unknown, wrong, no_code):
        assert r.status == 401
        texts.add(re.search(r'id="login-error">([^<]*)<', r.body).group(1))
    assert texts == {"Wrong name, password or code."}
    # Per address: 3 failures free, then growing delays.
    attacker = Client(gw.web_port, source="127.0.0.9")
    statuses = [attacker.post("/login", {"name": "x", "password": "y", "code": ""}).status for _ in range(5)]
    assert statuses[:3] == [401, 401, 401] and statuses[-1] == 429, statuses
    # Per account, from many addresses: after 5 failures alice must wait,
    # even with the right password from a fresh address.
    code = fresh_code(secret, used)
    for i in range(4):
        Client(gw.web_port, source=f"127.0.1.{i + 10}").post("/login", {"name": "alice", "password": "nope", "code": ""})
    r = Client(gw.web_port, source="127.0.1.99").post("/login", {"name": "alice", "password": PASSWORD, "code": code})
    assert r.status == 429 and "Try again in" in r.body, (r.status, r.body[-800:])


def test_a_totp_code_is_never_accepted_twice(setup_gw):
    gw, _c, secret, used = setup_gw
    code = fresh_code(secret, used)
    first = Client(gw.web_port, source="127.0.2.1").post("/login", {"name": "alice", "password": PASSWORD, "code": code})
    assert first.status == 303
    again = Client(gw.web_port, source="127.0.2.2").post("/login", {"name": "alice", "password": PASSWORD, "code": code})
    assert again.status == 401


def test_sessions_expire_idle_and_absolute(gateways):
    gw = gateways({"web": {"session_idle_secs": 3, "session_max_secs": 8}})
    used: set[str] = set()
    c, secret = setup_over_http(gw, used=used)
    assert c.get("/dashboard").status == 200
    time.sleep(4)
    r = c.get("/dashboard")
    assert r.status == 303 and r.header("location") == "/login", "idle timeout"
    c = Client(gw.web_port)
    assert login(c, "alice", secret, used).status == 303
    started = time.monotonic()
    while time.monotonic() - started < 7:
        assert c.get("/dashboard").status == 200, "kept alive by use"
        time.sleep(1)
    time.sleep(1.5)
    assert c.get("/dashboard").status == 303, "absolute timeout"


def test_the_setup_token_is_never_taken_from_a_url_and_is_throttled(gateways):
    gw = gateways()
    token = setup_token(gw)
    c = Client(gw.web_port)
    r = c.get(f"/setup?token={token}")
    assert r.status == 200 and "__Host-sealgate" not in c.cookies
    assert c.get("/setup/admin").header("location") == "/setup"
    bad = Client(gw.web_port, source="127.0.3.1")
    statuses = [bad.post("/setup/unlock", {"token": "f" * 32}).status for _ in range(6)]
    assert statuses[:3] == [401] * 3 and 429 in statuses, statuses
    # Automation may present it in a header instead of the form.
    r = Client(gw.web_port, source="127.0.3.2").post("/setup/unlock", {}, headers={"Authorization": f"Bearer {token}"})
    assert r.status == 303 and r.header("location") == "/setup/admin"
