"""The first-run wizard in a real browser, from a fresh data directory:
the setup token, the first administrator with TOTP (the test computes
the code as an authenticator app would), identity, a smart host that is
a real Postfix smtp-sink, certificate, keys, policy, review, apply; then
the browser is in the admin UI, logged in, and the token is burned.

Every page, the wizard's and then each admin page, is photographed at
1280 px and 375 px (target/screenshots)."""

from harness import free_port
from postfix_peer import SmtpSink
from webtools import PASSWORD, Client, fresh_code, setup_token


def test_the_whole_wizard_in_chromium(gateways, browser):
    sink = SmtpSink(free_port()).start()
    try:
        gw = gateways()
        base = f"https://127.0.0.1:{gw.web_port}"
        b = browser
        used: set[str] = set()
        b.open(base + "/")
        assert b.path == "/setup", "a fresh gateway opens the wizard"
        assert "setup token" in b.text()
        b.shots("setup-unlock")
        b.fill("token", "0" * 32)
        b.submit()
        assert "not the setup token" in b.text("#unlock-error")
        b.fill("token", setup_token(gw))
        b.submit()
        assert b.path == "/setup/admin"
        b.fill("name", "alice")
        b.fill("password", "password1234")
        b.fill("password2", "password1234")
        b.submit()
        assert "too common" in b.text() or "easy to guess" in b.text(), "a common password is refused next to the field"
        b.shots("setup-admin-error")
        b.fill("password", PASSWORD)
        b.fill("password2", PASSWORD)
        b.submit()
        secret = b.text("#totp-secret").replace(" ", "")
        assert b.driver.find_elements("css selector", ".qr svg"), "the QR code is drawn"
        b.shots("setup-totp")
        b.fill("code", fresh_code(secret, used))
        b.submit()
        assert b.path == "/setup/identity"
        assert "127.0.0.1/32" in b.text("#client-network"), "the browser's address is suggested"
        b.shots("setup-identity")
        b.fill("hostname", "gw.example.org")
        b.fill("domains", "example.org")
        b.fill("networks", "127.0.0.0/8")
        b.submit()
        assert b.path == "/setup/delivery"
        b.click("input[name=mode][value=smarthost]")
        b.fill("smarthost", "")
        b.submit()
        assert "Name the smart host" in b.text(), "the error is next to the field"
        b.shots("setup-delivery-error")
        b.click("input[name=mode][value=smarthost]")
        b.fill("smarthost", f"127.0.0.1:{sink.port}")
        b.fill("internal_server", f"127.0.0.1:{sink.port}")
        # The test button talks to the real smtp-sink and shows what happened.
        b.click("button[formaction='/setup/delivery/test'][value=smarthost]", navigates=True)
        result = b.text("#test-result")
        assert "works" in result and "greeting" in result and "EHLO" in result, result
        b.shots("setup-delivery-test")
        b.submit()
        assert b.path == "/setup/certificate"
        b.shots("setup-certificate")
        b.submit()
        assert b.path == "/setup/keys"
        b.shots("setup-keys")
        b.submit()
        assert b.path == "/setup/policy"
        b.shots("setup-policy")
        b.click("input[name=outbound][value=encrypt-required]")
        b.fill("required_domains", "partner.example")
        b.submit()
        assert b.path == "/setup/review"
        review = b.text()
        assert "gw.example.org" in review and f"127.0.0.1:{sink.port}" in review and "partner.example" in review
        b.shots("setup-review")
        b.click("#apply", navigates=True)
        assert b.path == "/dashboard"
        assert "Setup is complete" in b.text()
        b.shots("dashboard")
        # The token is burned: the wizard is gone.
        assert not (gw.data_dir / "setup-token").exists()
        c = Client(gw.web_port)
        r = c.post("/setup/unlock", {"token": "0" * 32})
        assert r.status in (303, 404), r.status
        assert c.get("/setup").header("location") == "/login"
        # The settings are one version by the new administrator.
        b.open(base + "/account")
        assert "this one" in b.text("#sessions")
        b.shots("account")
        b.open(base + "/accounts")
        assert "alice" in b.text("#accounts")
        b.shots("accounts")
        # Log out ends the session on the server; the login page asks for the code.
        b.click("details.menu summary")
        b.click("form[action='/logout'] button", navigates=True)
        assert b.path == "/login"
        b.shots("login")
        b.open(base + "/dashboard")
        assert b.path == "/login", "after logout the old session is gone"
        b.fill("name", "alice")
        b.fill("password", PASSWORD)
        b.fill("code", fresh_code(secret, used))
        b.submit()
        assert b.path == "/dashboard"
        # Every admin page renders for the new administrator (and is photographed).
        for page in ("queue", "tracking", "directory", "policy", "policy/dry-run", "settings",
                     "settings/history", "keys", "audit"):
            b.open(f"{base}/{page}")
            assert b.path == f"/{page}", page
            assert "operation id" not in b.text().lower(), (page, b.text()[:500])
            b.shots(page.replace("/", "-"))
    finally:
        sink.stop()
