"""Roles in the browser: an administrator creates an operator; the
operator enrols their second factor at first login, sees no link to
settings, keys, accounts or the audit log, and is refused (403) when
they open those pages by address."""

from webtools import PASSWORD, fresh_code, secret_from, setup_over_http

OPERATOR_PASSWORD = "tangerine-orbit-walrus-17"


def test_an_operator_cannot_reach_settings_or_keys(gateways, browser):
    gw = gateways()
    used: set[str] = set()
    admin, _secret = setup_over_http(gw, used=used)
    r = admin.post("/accounts", {"name": "otto", "role": "operator", "password": OPERATOR_PASSWORD})
    assert r.status == 303, r.body[:1000]
    base = f"https://127.0.0.1:{gw.web_port}"
    b = browser
    b.open(base + "/login")
    b.fill("name", "otto")
    b.fill("password", OPERATOR_PASSWORD)
    b.submit()
    # First login: the second factor is enrolled before anything else.
    secret = secret_from(b.driver.page_source)
    b.shots("login-enrol")
    b.fill("code", fresh_code(secret, used))
    b.submit()
    assert b.path == "/dashboard"
    nav = b.text("nav.nav")
    for visible in ("Dashboard", "Queue", "Tracking", "Directory", "Policy"):
        assert visible in nav, visible
    for hidden in ("Settings", "Keys", "Accounts", "Audit log"):
        assert hidden not in nav, f"an operator sees a link to {hidden}"
    b.shots("dashboard-operator")
    for path in ("/settings", "/keys", "/accounts", "/audit", "/settings/history"):
        b.open(base + path)
        assert "Not allowed" in b.text(), path
    b.shots("forbidden")
    # And over HTTP the answer is 403, not a page that happens to say so.
    from webtools import Client

    c = Client(gw.web_port)
    assert c.post("/login", {"name": "otto", "password": OPERATOR_PASSWORD,
                             "code": fresh_code(secret, used)}).status == 303
    for path in ("/settings", "/keys", "/accounts", "/audit"):
        assert c.get(path).status == 403, path
    r = c.post("/accounts", {"name": "eve", "role": "admin", "password": PASSWORD})
    assert r.status == 403
    assert "<td data-label=\"Name\">eve" not in admin.get("/accounts").body
