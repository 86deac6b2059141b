"""Helpers of the portal suite: send mail into the gateway, find what
the outbox received, log in over plain HTTPS."""

import email
import email.policy
import re
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path

from webtools import Client, fresh_code

PASSWORD = "Vm4-tolu-rapid-cedar-92"


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
    m = outbox_mail(gw, rcpt, lambda m: "code" in str(m["Subject"]).lower(), seen=seen)
    found = re.search(r"\b(\d{6})\b", text_of(m))
    assert found, text_of(m)
    return found.group(1)


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
