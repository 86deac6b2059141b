"""The recipient's preferences in the portal, in Chromium: the language
of our notifications, a certificate of their own (the next mail is
S/MIME to it and openssl opens it; the directory holds it at the
`portal` level, for their address alone), and the password."""

import os
import subprocess

from portaltools import PASSWORD, enrol_over_http, outbox_mail, send, text_of
from webtools import Client

DAN = "dan@partner.example"
NEW_PASSWORD = "Quartz-ferry-lemon-71-arc"


def _certificate(tmp_path, name: str, address: str) -> tuple:
    key, cert = tmp_path / f"{name}.key", tmp_path / f"{name}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
         "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
         "-addext", f"subjectAltName=email:{address}",
         "-addext", "basicConstraints=critical,CA:FALSE",
         "-addext", "keyUsage=critical,digitalSignature,keyEncipherment"],
        check=True, capture_output=True)
    return key, cert


def test_language_own_certificate_and_password(portal_gateway, browser, tmp_path):
    gw = portal_gateway
    send(gw, "alice@example.org", DAN, "First", "waits in the portal")
    seen: set = set()
    outbox_mail(gw, DAN, lambda m: "Secure message from" in str(m["Subject"]), seen=seen)
    used: set = set()
    dan = enrol_over_http(gw, DAN, seen, used)

    b = browser
    origin = f"https://127.0.0.1:{gw.portal_port}"
    b.open(origin + "/")
    b.driver.add_cookie({"name": "__Host-sealgate-portal", "value": dan.cookies["__Host-sealgate-portal"],
                         "path": "/", "secure": True})
    b.open(origin + "/inbox")
    b.click("#portal-account")
    b.click("#preferences", navigates=True)
    assert b.path == "/preferences"
    assert "No certificate or key is known for your address" in b.text("#no-keys")
    b.shots("portal-preferences")

    # German notifications from now on.
    from selenium.webdriver.support.ui import Select
    Select(b.driver.find_element("id", "language")).select_by_value("de")
    b.click("#save-language", navigates=True)
    assert "Your language is saved" in b.text("#notice")
    send(gw, "alice@example.org", DAN, "Second", "also waits in the portal")
    note = outbox_mail(gw, DAN, lambda m: "alice@example.org" in str(m["Subject"]), seen=seen)
    assert str(note["Subject"]).startswith("Vertrauliche Nachricht"), note["Subject"]
    assert "Web-Mail-Portal" in text_of(note)

    # A certificate for someone else is refused next to the field; nothing is stored.
    _, eva_cert = _certificate(tmp_path, "eva", "eva@partner.example")
    b.driver.find_element("id", "file").send_keys(str(eva_cert))
    b.click("#upload-key", navigates=True)
    assert "Nothing in this file is for dan@partner.example" in b.text("#key-error")
    assert b.driver.find_element("id", "file").get_attribute("aria-invalid") == "true"
    b.shots("portal-preferences-refused")
    assert "eva@partner.example" not in gw.cli("directory", "list", check=False).stdout

    # Dan's own certificate: stored at the portal level, for his address.
    dan_key, dan_cert = _certificate(tmp_path, "dan", DAN)
    b.driver.find_element("id", "file").send_keys(str(dan_cert))
    b.click("#upload-key", navigates=True)
    assert "Your key is stored" in b.text("#notice")
    assert "S/MIME" in b.text("#keys") and "you, here" in b.text("#keys")
    b.shots("portal-preferences-key")
    shown = gw.cli("directory", "show", DAN).stdout
    assert "portal" in shown, shown
    track = gw.cli("track", "--to", DAN).stdout
    assert "key uploaded by the recipient" in track, track

    # The next mail goes to Dan's mailbox encrypted to it, not to the portal.
    send(gw, "alice@example.org", DAN, "Third", "secret-third-line")
    third = outbox_mail(gw, DAN, lambda m: m.get_content_type() == "application/pkcs7-mime", seen=seen)
    assert "secret-third-line" not in third.as_string()
    opened = subprocess.run(
        ["openssl", "cms", "-decrypt", "-inkey", str(dan_key), "-recip", str(dan_cert)],
        input=third.as_bytes(), capture_output=True, check=True)
    assert b"secret-third-line" in opened.stdout
    # ... and tracking names the certificate and who vouched for it.
    track = gw.cli("track", "--to", DAN).stdout
    assert "encrypted for S/MIME certificate" in track and "trust portal" in track, track

    # Password: the wrong current one is refused next to its field; after
    # the change this session goes on (others end: the unit test) and only
    # the new password logs in.
    b.fill("current", "not-the-password")
    b.fill("new", NEW_PASSWORD)
    b.click("#change-password", navigates=True)
    assert "not right" in b.text("#current-error")
    b.fill("current", PASSWORD)
    b.fill("new", NEW_PASSWORD)
    b.click("#change-password", navigates=True)
    assert "Your password is changed" in b.text("#notice")
    b.open(origin + "/inbox")
    assert b.path == "/inbox"
    fresh = Client(gw.portal_port)
    from webtools import fresh_code
    r = fresh.post("/", {"address": DAN, "password": PASSWORD, "code": "000000"})
    assert r.status == 401
    r = fresh.post("/", {"address": DAN, "password": NEW_PASSWORD, "code": fresh_code(dan.secret, used)})
    assert r.status == 303 and r.header("location") == "/inbox", (r.status, r.body[:300])


def test_own_openpgp_key_pasted(portal_gateway, browser, gnupg):
    """Dan pastes his OpenPGP public key (made by gpg) on /preferences: it
    is stored at the portal level for his address, and the next message
    arrives PGP/MIME that gpg, with his secret key, opens."""
    gw = portal_gateway
    send(gw, "alice@example.org", DAN, "First", "waits in the portal")
    seen: set = set()
    outbox_mail(gw, DAN, lambda m: "Secure message from" in str(m["Subject"]), seen=seen)
    dan = enrol_over_http(gw, DAN, seen, set())

    gnupg("--quick-gen-key", f"Dan <{DAN}>", "default", "default", "never")
    public = gnupg("--armor", "--export", DAN).stdout.decode()
    assert public.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")

    b = browser
    origin = f"https://127.0.0.1:{gw.portal_port}"
    b.open(origin + "/")
    b.driver.add_cookie({"name": "__Host-sealgate-portal", "value": dan.cookies["__Host-sealgate-portal"],
                         "path": "/", "secure": True})
    b.open(origin + "/preferences")
    b.driver.find_element("id", "key-text").send_keys(public)
    b.click("#upload-key", navigates=True)
    assert "Your key is stored" in b.text("#notice"), b.text()
    assert "OpenPGP" in b.text("#keys") and "you, here" in b.text("#keys"), b.text("#keys")
    b.shots("portal-preferences-openpgp")
    shown = gw.cli("directory", "show", DAN).stdout
    assert "portal" in shown, shown

    unique = "secret-pgp-line-" + os.urandom(6).hex()
    send(gw, "alice@example.org", DAN, "Next", unique)
    mail = outbox_mail(gw, DAN, lambda m: m.get_content_type() == "multipart/encrypted", seen=seen)
    assert mail.get_param("protocol") == "application/pgp-encrypted"
    assert unique not in mail.as_string()
    control, body = mail.get_payload()
    assert control.get_content_type() == "application/pgp-encrypted"
    armored = body.get_payload(decode=False)
    assert armored.lstrip().startswith("-----BEGIN PGP MESSAGE-----")
    opened = gnupg("--decrypt", input=armored.encode()).stdout
    assert unique.encode() in opened
    track = gw.cli("track", "--to", DAN).stdout
    assert "trust portal" in track, track
