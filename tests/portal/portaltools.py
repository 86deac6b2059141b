"""Helpers of the portal suite: send mail into the gateway, find what
the outbox received, log in over plain HTTPS."""

import email
import email.policy
import re
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path

from webtools import Client, fresh_code, secret_from

PASSWORD = "Vm4-tolu-rapid-cedar-92"


def portal_settings(port: int) -> dict:
    """The portal suite's gateway: external domain partner.example is
    encrypt-required, nobody there has a key, the portal listens on
    127.0.0.1:`port` (TOTP required for partner.example)."""
    return {
        "relay": {"domains": ["example.org"], "internal_networks": ["127.0.0.0/8"]},
        "policy": {"domain": {"partner.example": {"action": "encrypt-required"}}},
        "portal": {
            "listen": [f"127.0.0.1:{port}"],
            "enabled": True,
            "url": f"https://127.0.0.1:{port}",
            "require_totp_domains": ["partner.example"],
            "lockout_after": 3,
        },
    }


def send(gw, sender: str, rcpt: str, subject: str, text: str, attachment: bytes | None = None,
         html: str | None = None, message_id: str | None = None) -> str:
    m = EmailMessage()
    m["From"] = f"Alice Sender <{sender}>"
    m["To"] = rcpt
    m["Subject"] = subject
    m["Message-ID"] = message_id or f"<{time.time_ns()}@example.org>"
    m.set_content(text)
    if html:
        m.add_alternative(html, subtype="html")
    if attachment is not None:
        m.add_attachment(attachment, maintype="application", subtype="pdf", filename="report.pdf")
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.sendmail(sender, [rcpt], m.as_bytes(policy=email.policy.SMTP))
    return m["Message-ID"]


def outbox_mail(gw, rcpt: str, predicate=lambda m: True, timeout: float = 30.0,
                seen: set | None = None) -> email.message.EmailMessage:
    """The first outbox message for `rcpt` that `predicate` accepts."""
    seen = seen if seen is not None else set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for f in sorted(Path(gw.outbox).glob("*.eml")) if Path(gw.outbox).exists() else []:
            if f in seen:
                continue
            raw = f.read_bytes()
            if f"X-Sealgate-Envelope-To: {rcpt}".encode() not in raw and \
               f"X-Sealgate-Envelope-To: <{rcpt}>".encode() not in raw:
                continue
            m = email.message_from_bytes(raw, policy=email.policy.default)
            if predicate(m):
                seen.add(f)
                return m
        time.sleep(0.2)
    raise AssertionError(f"no matching mail for {rcpt} in the outbox")


def text_of(m) -> str:
    part = m.get_body(preferencelist=("plain",))
    return part.get_content() if part else ""


def code_from(gw, rcpt: str, seen: set) -> str:
    return code_in(outbox_mail(gw, rcpt, lambda m: "code" in str(m["Subject"]).lower(), seen=seen))


def code_in(m) -> str:
    """The six-digit code of a code mail."""
    found = re.search(r"\b(\d{6})\b", text_of(m))
    assert found, text_of(m)
    return found.group(1)


def enrol_in_browser(b, link: str, address: str, code_for, used: set) -> str:
    """First visit in the browser from the notification's link: ask for a
    code, enrol with it (`code_for()` returns the mailed code) and the
    password, then TOTP; ends on /inbox. Returns the TOTP secret."""
    b.open(link)
    assert b.driver.execute_script("return document.getElementById('address').value") == address
    b.shots("portal-login")
    b.click("#first-visit", navigates=True)
    b.shots("portal-code-request")
    b.click("#send-code", navigates=True)
    assert "we have sent a code" in b.text()
    b.shots("portal-code-enter")
    b.fill("code", code_for())
    b.fill("password", PASSWORD)
    b.fill("password2", PASSWORD)
    b.click("#enrol", navigates=True)
    secret = secret_from(b.driver.page_source)
    b.shots("portal-totp")
    b.fill("code", fresh_code(secret, used))
    b.click("#confirm-totp", navigates=True)
    assert b.path == "/inbox"
    return secret


def enrol_over_http(gw, rcpt: str, seen: set, used: set) -> Client:
    """First visit without a browser: code, password, TOTP."""
    c = Client(gw.portal_port)
    assert c.post("/code", {"address": rcpt}).status == 200
    code = code_from(gw, rcpt, seen)
    r = c.post("/enrol", {"address": rcpt, "code": code, "password": PASSWORD, "password2": PASSWORD})
    assert r.status == 200, r.body[:1000]
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', r.body).group(1)
    r = c.post("/enrol/totp", {"enrolment": re.search(r'name="enrolment" value="([^"]+)"', r.body).group(1),
                               "code": fresh_code(secret, used)})
    assert r.status == 303 and r.header("location") == "/inbox", (r.status, r.body[:500])
    c.secret = secret
    return c


def raw_get(port, path, cookies):
    """GET over HTTPS with these cookies: (status, body bytes, headers lower-cased)."""
    import http.client
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    conn.request("GET", path, headers={"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})
    r = conn.getresponse()
    data = r.read()
    headers = {k.lower(): v for k, v in r.getheaders()}
    conn.close()
    return r.status, data, headers
