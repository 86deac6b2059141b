"""The first-run wizard in a real browser, from a fresh data directory:
the setup token, the first administrator with TOTP (the test computes
the code as an authenticator app would), identity, a smart host that is
a real Postfix smtp-sink, certificate, keys, policy, review, apply; then
the browser is in the admin UI, logged in, and the token is burned.
Then mail: a message to a partner whose domain the wizard made
encrypt-required appears on the tracking page with its drill-down and
is held in the queue; released from the queue page without a key it is
held again (never sent in clear); once the recipient's certificate is
uploaded on the directory page it leaves encrypted through the smart
host (smtp-sink) and openssl decrypts it with the recipient's key.

Every page, the wizard's and then each admin page, is photographed at
1280 px and 375 px (target/screenshots)."""

import re
import smtplib
import subprocess
import time

from harness import free_port
from postfix_peer import SmtpSink
from webtools import PASSWORD, Client, fresh_code, setup_token


def test_the_whole_wizard_in_chromium(gateways, browser, tmp_path):
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
        held_until_the_key_arrives(b, base, gw, sink, tmp_path)
    finally:
        sink.stop()


def held_until_the_key_arrives(b, base, gw, sink, tmp_path):
    subject = f"quarterly figures {time.monotonic_ns()}"
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as smtp:
        smtp.sendmail("alice@example.org", ["bob@partner.example"],
                      f"From: alice@example.org\r\nTo: bob@partner.example\r\nSubject: {subject}\r\n"
                      f"Message-ID: <{time.monotonic_ns()}@example.org>\r\n\r\nthe confidential figures\r\n")
    # Tracking: the message and its drill-down.
    deadline = time.monotonic() + 30
    while True:
        b.open(base + "/tracking?subject=quarterly")
        if subject in b.text():
            break
        assert time.monotonic() < deadline, b.text()[:1000]
        time.sleep(0.5)
    b.shots("tracking-with-mail")
    b.click("a[href^='/tracking/']", navigates=True)
    assert "received" in b.text("#events") and "bob@partner.example" in b.text()
    b.shots("tracking-message")
    # The queue: held for want of bob's key.
    deadline = time.monotonic() + 30
    while True:
        b.open(base + "/queue?state=held")
        if "bob@partner.example" in b.text():
            break
        assert time.monotonic() < deadline, b.text()[:1000]
        time.sleep(0.5)
    b.shots("queue-held")
    # Released from the queue page (with the confirmation): decided again,
    # still no key, so held again: never sent in clear.
    b.click("input[name=id]")
    b.driver.execute_script("window.__sgOld = true;")
    b.driver.find_element("css selector", "button[name=action][value=release]").click()
    b.driver.switch_to.alert.accept()
    b._wait_for_new_page("release")
    assert "Released" in b.text()
    time.sleep(2)
    leaked = [d for d in sink.dumps() if b"the confidential figures" in d]
    assert not leaked, f"released in clear: {leaked[0][:1500]!r}"
    b.open(base + "/queue?state=held")
    assert "bob@partner.example" in b.text(), "without a key the message is held again"
    # Bob's certificate uploaded on the directory page: the mail leaves encrypted.
    key, crt = tmp_path / "bob.key", tmp_path / "bob.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "30", "-subj", "/CN=Bob Partner", "-addext", "keyUsage=critical,keyEncipherment",
                    "-addext", "extendedKeyUsage=emailProtection", "-addext", "basicConstraints=critical,CA:FALSE",
                    "-addext", "subjectAltName=email:bob@partner.example"], check=True, capture_output=True)
    b.open(base + "/directory")
    b.driver.find_element("id", "file").send_keys(str(crt))
    b.click("form[action='/directory/import'] button[type=submit]", navigates=True)
    assert "bob@partner.example" in b.text()
    b.shots("directory-imported")
    # (The sender may have had a delay notice meanwhile: wait for bob's envelope.)
    raw = sink.wait_for(b"X-Rcpt-Args: <bob@partner.example>", timeout=60)
    assert b"the confidential figures" not in raw
    assert re.search(rb"(?im)^Content-Type: application/pkcs7-mime;.*enveloped-data", raw), raw[:800]
    src = tmp_path / "got.eml"
    src.write_bytes(raw)
    out = subprocess.run(["openssl", "cms", "-decrypt", "-in", str(src), "-inkey", str(key), "-recip", str(crt)],
                         capture_output=True)
    assert out.returncode == 0 and b"the confidential figures" in out.stdout, out.stderr
    b.open(base + "/queue?state=held")
    assert "bob@partner.example" not in b.text()
