"""Passkeys (WebAuthn) as the portal's second factor, in Chromium with
chromedriver's virtual authenticator (CTAP2, internal, resident keys,
user verification): enrolment with a passkey instead of TOTP, sign-in
with password and passkey, a tampered or empty answer refused, a second
passkey added and one removed on /preferences, the last one kept where
the domain requires a second factor; the passkey-only page without
JavaScript; an account with TOTP and a passkey ending the second step
with its code.

WebAuthn needs a relying party id that is a host name, not an IP
address: the portal's URL here is https://localhost:PORT. The browser
takes the test certificate with --ignore-certificate-errors (webtools'
Browser), which Chromium also accepts for WebAuthn."""

import json
import re

import pytest

from harness import free_port
from hsm_token import token_gateway
from portaltools import PASSWORD, code_from, outbox_mail, send
from webtools import Client

DAN = "dan@partner.example"


@pytest.fixture
def passkey_gateway(tmp_path):
    """As conftest's portal_gateway, with the portal at localhost."""
    port = free_port()
    settings = {
        "relay": {"domains": ["example.org"], "internal_networks": ["127.0.0.0/8"]},
        "policy": {"domain": {"partner.example": {"action": "encrypt-required"}}},
        "portal": {
            "listen": [f"127.0.0.1:{port}"],
            "enabled": True,
            "url": f"https://localhost:{port}",
            "require_totp_domains": ["partner.example"],
            "lockout_after": 5,
        },
    }
    gw = token_gateway(tmp_path / "gw", settings)
    gw.portal_port = port
    gw.start()
    yield gw
    gw.stop()
    if gw.log_path.exists():
        print(f"--- log tail ---\n{gw.log_path.read_text(errors='replace')[-3000:]}")


def _authenticator(driver):
    from selenium.webdriver.common.virtual_authenticator import (
        Protocol, Transport, VirtualAuthenticatorOptions)

    options = VirtualAuthenticatorOptions()
    options.protocol = Protocol.CTAP2
    options.transport = Transport.INTERNAL
    options.has_resident_key = True
    options.has_user_verification = True
    options.is_user_verified = True
    driver.add_virtual_authenticator(options)


def _wait_text(b, css: str, text: str, timeout: float = 20) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in b.text(css):
            return
        time.sleep(0.1)
    raise AssertionError(f"{css}: no {text!r} in {b.text(css)!r}")


def _use_passkey(b, name: str | None = None) -> None:
    """Clicks the page's passkey button (after naming it) and waits for the next page."""
    if name is not None:
        b.fill("passkey-name", name)
    b.click("#passkey-go", navigates=True)


def _password_step(b, origin: str) -> None:
    b.open(origin + "/")
    b.fill("address", DAN)
    b.fill("password", PASSWORD)
    b.click("#login", navigates=True)


def test_passkey_enrol_login_refusals_and_preferences(passkey_gateway, browser):
    gw = passkey_gateway
    origin = f"https://localhost:{gw.portal_port}"
    send(gw, "alice@example.org", DAN, "Passkey numbers", "Hello Dan, the numbers.")
    seen: set = set()
    outbox_mail(gw, DAN, lambda m: "Secure message from" in str(m["Subject"]), seen=seen)

    b = browser
    _authenticator(b.driver)

    # First visit: code, password, then a passkey instead of TOTP.
    b.open(f"{origin}/code?address={DAN}")
    b.click("#send-code", navigates=True)
    b.fill("code", code_from(gw, DAN, seen))
    b.fill("password", PASSWORD)
    b.fill("password2", PASSWORD)
    b.click("#enrol", navigates=True)
    assert "Or use a passkey" in b.text("#passkey-offer")
    # The script runs: the button shows, the no-JavaScript note does not.
    assert b.driver.find_element("id", "passkey-go").is_displayed()
    assert not b.driver.find_element("id", "passkey-nojs").is_displayed()
    b.shots("portal-passkey-enrol")
    _use_passkey(b, "Laptop <b>one</b>")
    assert b.path == "/inbox", b.text()
    assert "Passkey numbers" in b.text("#inbox")
    track = gw.cli("track", "--to", DAN).stdout
    assert "second factor enrolled: a passkey" in track, track

    # Without JavaScript (plain HTTPS), a passkey-only account stops at the
    # passkey step: the page says so, the button stays hidden, no session.
    plain = Client(gw.portal_port)
    r = plain.post("/", {"address": DAN, "password": PASSWORD, "code": ""})
    assert r.status == 200, (r.status, r.body[:500])
    assert "signs in only with a passkey, and a passkey needs JavaScript" in r.body
    assert re.search(r'<p class="hint passkey-nojs" id="passkey-nojs">', r.body)
    assert re.search(r'id="passkey-go" hidden', r.body)
    assert '<script src="/static/passkey.js"' in r.body and "<script>" not in r.body
    assert "__Host-sealgate-portal" not in plain.cookies
    csp = r.header("content-security-policy")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]

    # Sign out; the password alone opens nothing: the passkey step follows.
    b.click("#portal-account")
    b.click("#logout", navigates=True)
    _password_step(b, origin)
    assert b.path == "/", b.path
    assert "Confirm with your passkey" in b.text()
    assert "only with a passkey" in b.text("#passkey-only")
    b.shots("portal-passkey-login")
    assert b.driver.get_cookie("__Host-sealgate-portal") is None

    # An empty answer is refused.
    b.driver.execute_script(
        "document.querySelector('form.passkey-form').elements.answer.value = '{}';"
        "window.__sgOld = true; document.querySelector('form.passkey-form').submit();")
    b._wait_for_new_page("empty answer")
    assert "The passkey was not accepted" in b.text("#login-error")
    assert b.driver.get_cookie("__Host-sealgate-portal") is None

    # A real assertion with its signature changed is refused.
    _password_step(b, origin)
    tampered = b.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const form = document.querySelector('form.passkey-form');
        const options = JSON.parse(form.dataset.options).publicKey;
        navigator.credentials.get({publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options)})
          .then(c => {
            const answer = c.toJSON();
            const sig = answer.response.signature;
            answer.response.signature = (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1);
            done(JSON.stringify(answer));
          }).catch(e => done('error: ' + e));
    """)
    assert tampered.startswith("{"), tampered
    b.driver.execute_script(
        "const form = document.querySelector('form.passkey-form');"
        "form.elements.answer.value = arguments[0]; window.__sgOld = true; form.submit();", tampered)
    b._wait_for_new_page("tampered answer")
    assert "The passkey was not accepted" in b.text("#login-error")
    assert b.driver.get_cookie("__Host-sealgate-portal") is None

    # Password and the real passkey: in, and the message is there.
    _password_step(b, origin)
    _use_passkey(b)
    assert b.path == "/inbox", b.text()
    assert "Passkey numbers" in b.text("#inbox")
    b.click("a.open-message", navigates=True)
    assert b.text("#subject") == "Passkey numbers"

    # Preferences: the passkey listed by its name (escaped), a second one added.
    b.open(origin + "/preferences")
    passkeys = b.text("#passkeys")
    assert "Laptop <b>one</b>" in passkeys and "added" in passkeys, passkeys
    b.shots("portal-passkey-preferences")
    # The only second factor of a domain that requires one stays.
    b.click("button.passkey-remove", navigates=True)
    assert "only second factor" in b.text("#passkey-error")
    b.click("#add-passkey", navigates=True)
    assert "Add a passkey" in b.text()
    b.shots("portal-passkey-add")
    # The same authenticator is refused a second passkey (the page
    # excludes the account's credentials) and says so.
    b.fill("passkey-name", "Again")
    b.click("#passkey-go")
    _wait_text(b, "#passkey-status", "No passkey was used")
    assert b.path == "/preferences/passkey/new"
    # Another device ("Phone"): a new authenticator in place of the first.
    b.driver.remove_virtual_authenticator()
    _authenticator(b.driver)
    _use_passkey(b, "Phone")
    assert b.path == "/preferences"
    assert "Your passkey is added" in b.text("#notice")
    names = [e.text for e in b.driver.find_elements("css selector", "#passkeys .passkey-name")]
    assert names == ["Laptop <b>one</b>", "Phone"], names
    b.shots("portal-passkey-two")
    # Remove the first; the second stays.
    b.click("#passkeys li:first-child button.passkey-remove", navigates=True)
    assert "The passkey is removed" in b.text("#notice")
    names = [e.text for e in b.driver.find_elements("css selector", "#passkeys .passkey-name")]
    assert names == ["Phone"], names
    track = gw.cli("track", "--to", DAN).stdout
    assert "passkey added by the recipient" in track and "passkey removed by the recipient" in track, track

    # The remaining passkey (Phone) signs in.
    b.click("#portal-account")
    b.click("#logout", navigates=True)
    _password_step(b, origin)
    _use_passkey(b)
    assert b.path == "/inbox", b.text()

    # No script error on any page.
    errors = [e for e in b.driver.get_log("browser") if e.get("level") == "SEVERE"
              and "Failed to load resource" not in e.get("message", "")]
    assert not errors, json.dumps(errors, indent=1)


def test_totp_and_passkey_either_ends_the_second_step(passkey_gateway, browser):
    """An account with TOTP that adds a passkey: after the password, the
    passkey page also takes the TOTP code (a form, no JavaScript needed)."""
    from webtools import fresh_code, secret_from

    gw = passkey_gateway
    origin = f"https://localhost:{gw.portal_port}"
    eve = "eve@partner.example"
    send(gw, "alice@example.org", eve, "Eve's numbers", "Hello Eve.")
    seen: set = set()
    outbox_mail(gw, eve, lambda m: "Secure message from" in str(m["Subject"]), seen=seen)
    b = browser
    _authenticator(b.driver)
    b.open(f"{origin}/code?address={eve}")
    b.click("#send-code", navigates=True)
    b.fill("code", code_from(gw, eve, seen))
    b.fill("password", PASSWORD)
    b.fill("password2", PASSWORD)
    b.click("#enrol", navigates=True)
    secret = secret_from(b.driver.page_source)
    used: set = set()
    b.fill("code", fresh_code(secret, used))
    b.click("#confirm-totp", navigates=True)
    assert b.path == "/inbox"
    b.open(origin + "/preferences")
    b.click("#add-passkey", navigates=True)
    _use_passkey(b, "Desk")
    assert "Your passkey is added" in b.text("#notice")
    assert "you also have an authenticator app" in b.text()

    b.click("#portal-account")
    b.click("#logout", navigates=True)
    b.open(origin + "/")
    b.fill("address", eve)
    b.fill("password", PASSWORD)
    b.click("#login", navigates=True)
    assert "Confirm with your passkey" in b.text()
    assert b.driver.find_element("id", "passkey-totp").is_displayed()
    b.shots("portal-passkey-login-totp")
    # A wrong code is refused; the next login takes the right one.
    b.fill("code", "000000")
    b.click("#login-totp", navigates=True)
    assert "The code was not right" in b.text("#login-error")
    b.fill("address", eve)
    b.fill("password", PASSWORD)
    b.click("#login", navigates=True)
    b.fill("code", fresh_code(secret, used))
    b.click("#login-totp", navigates=True)
    assert b.path == "/inbox", b.text()
    assert "Eve's numbers" in b.text("#inbox")
