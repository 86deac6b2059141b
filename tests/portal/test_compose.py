"""Sending from the portal, against a real daemon with a SoftHSM token
and headless Chromium: a reply with a file uploaded through the browser
form reaches the internal sender (outbox) byte-identical, threaded, its
name encoded; its sealed copy in Sent shows the file; files over
`portal.attachment_max_mb` are refused on the page (the text kept) and
nothing is queued. `portal.compose` off: no button, /compose is 404;
on: a new message to an internal address arrives, one to an external
address is refused naming it. A pushed message opened from its saved
attachment answers Reply (threaded, with a file), and its first opening
sends exactly one read receipt. Screenshots at 375 and 1280 px."""

import email.policy
import os
import smtplib
import time
from email.message import EmailMessage

from portaltools import PASSWORD, code_from, outbox_mail, raw_get, text_of
from test_mailbox import _enrol, _open
from test_push import _page_of, push_gateway  # noqa: F401  (the fixture)
from webtools import Client, fresh_code, secret_from

DAN = "dan@partner.example"


def _send(gw, subject: str, sender: str = "alice@example.org") -> str:
    m = EmailMessage()
    m["From"] = f"Alice Sender <{sender}>"
    m["To"] = DAN
    m["Subject"] = subject
    m["Message-ID"] = f"<{time.time_ns()}@example.org>"
    m.set_content(f"{subject}: the text.")
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.sendmail(sender, [DAN], m.as_bytes(policy=email.policy.SMTP))
    return m["Message-ID"]


def _files(m) -> dict[str, bytes]:
    return {p.get_filename(): p.get_payload(decode=True) for p in m.iter_attachments()}


def _nothing_more(gw, rcpt: str, predicate, seen: set, wait: float = 3) -> None:
    try:
        got = outbox_mail(gw, rcpt, predicate, timeout=wait, seen=seen)
    except AssertionError as e:
        assert "no matching mail" in str(e), e
        return
    raise AssertionError(f"unexpected mail for {rcpt}: {got['Subject']}")


def _cookies(b) -> dict[str, str]:
    return {c["name"]: c["value"] for c in b.driver.get_cookies()}


def test_reply_with_an_attachment_and_the_size_limit(portal_gateway, browser, tmp_path):
    gw = portal_gateway
    b = browser
    parent = _send(gw, "Contract draft")
    seen: set = set()
    outbox_mail(gw, DAN, lambda m: "Secure message" in str(m["Subject"]), seen=seen)
    _enrol(b, gw, seen)

    # A file with a name that needs encoding, uploaded through the form.
    data = b"%PDF-1.4\n" + os.urandom(40_000)
    upload = tmp_path / "Größe – Bericht.pdf"
    upload.write_bytes(data)
    _open(b, "Contract draft")
    assert "Up to 10 MB in all" in b.text("#attachments-hint")
    b.fill("text", "Signed copy attached.")
    b.driver.find_element("id", "attachments").send_keys(str(upload))
    b.shots("portal-reply-attachment")
    b.click("#send-reply", navigates=True)
    assert "Your reply was sent" in b.text("#notice")
    reply = outbox_mail(gw, "alice@example.org", lambda m: str(m["Subject"]) == "Re: Contract draft",
                        seen=seen)
    assert reply["In-Reply-To"] == parent and parent in reply["References"]
    assert str(reply["From"]) == DAN
    assert reply.get_content_type() == "multipart/mixed"
    assert "Signed copy attached." in text_of(reply)
    assert _files(reply) == {"Größe – Bericht.pdf": data}
    assert "with 1 attachment" in gw.cli("track", "--to", DAN).stdout

    # The sealed copy in Sent lists the file and downloads it unchanged.
    b.click("a[data-folder='sent']", navigates=True)
    _open(b, "Re: Contract draft")
    assert b.text("a.attachment") == "Größe – Bericht.pdf"
    href = b.driver.find_element("css selector", "a.attachment").get_attribute("href")
    status, got, _ = raw_get(gw.portal_port, "/" + href.split("/", 3)[3], _cookies(b))
    assert status == 200 and got == data
    b.shots("portal-sent-attachment")

    # Over the limit: refused on the page with the reason, the text kept,
    # nothing queued.
    gw.cli("settings", "set", "portal.attachment_max_mb", "1")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1_300_000))
    b.open(f"https://127.0.0.1:{gw.portal_port}/inbox")
    _open(b, "Contract draft")
    assert "Up to 1 MB in all" in b.text("#attachments-hint")
    b.fill("text", "Here is the big one.")
    b.driver.find_element("id", "attachments").send_keys(str(big))
    b.click("#send-reply", navigates=True)
    error = b.text("#reply-error")
    assert "at most 1.0 MB" in error and "Nothing was sent" in error, error
    assert b.driver.find_element("id", "text").get_attribute("value") == "Here is the big one."
    b.shots("portal-reply-too-large")
    _nothing_more(gw, "alice@example.org", lambda m: "Re:" in str(m["Subject"]), seen)
    assert gw.cli("track", "--to", DAN).stdout.count("replied to") == 1


def test_compose_only_when_allowed_and_only_to_internal_addresses(portal_gateway, browser, tmp_path):
    gw = portal_gateway
    b = browser
    base = f"https://127.0.0.1:{gw.portal_port}"
    _send(gw, "Welcome")
    seen: set = set()
    outbox_mail(gw, DAN, lambda m: "Secure message" in str(m["Subject"]), seen=seen)
    _enrol(b, gw, seen)

    # Off (the default): no button, the page and its form are not there.
    assert b.driver.find_elements("id", "new-message") == []
    c = Client(gw.portal_port, cookies=_cookies(b))
    assert c.get("/compose").status == 404
    r = c.post("/compose", {"to": "alice@example.org", "subject": "x", "text": "x"})
    assert r.status == 404
    _nothing_more(gw, "alice@example.org", lambda m: str(m["Subject"]) == "x", seen, wait=1)

    gw.cli("settings", "set", "portal.compose", "true")
    b.open(base + "/inbox")
    b.shots("portal-inbox-compose")
    b.click("#new-message", navigates=True)
    assert b.path == "/compose"
    b.shots("portal-compose")

    # An external address is refused by name; what was typed stays.
    b.fill("to", "alice@example.org, mallory@elsewhere.example")
    b.fill("subject", "Question about the invoice")
    b.fill("text", "Could you check the amount?")
    b.click("#send-message", navigates=True)
    error = b.text("#compose-error")
    assert "mallory@elsewhere.example" in error and "own addresses" in error, error
    assert b.driver.find_element("id", "text").get_attribute("value") == "Could you check the amount?"
    b.shots("portal-compose-refused")
    _nothing_more(gw, "alice@example.org", lambda m: "invoice" in str(m["Subject"]), seen, wait=1)

    # Internal addresses only: sent from Dan's address, with the file.
    data = os.urandom(5000)
    upload = tmp_path / "invoice.pdf"
    upload.write_bytes(data)
    b.fill("to", "alice@example.org, bob@example.org")
    b.driver.find_element("id", "attachments").send_keys(str(upload))
    b.click("#send-message", navigates=True)
    assert "Your message was sent" in b.text("#notice")
    for rcpt in ("alice@example.org", "bob@example.org"):
        # One outbox file for both recipients: each looks at it afresh.
        m = outbox_mail(gw, rcpt, lambda m: str(m["Subject"]) == "Question about the invoice", seen=set())
        assert str(m["From"]) == DAN
        assert m["In-Reply-To"] is None and m["Message-ID"].startswith("<portal-")
        assert "alice@example.org" in str(m["To"]) and "bob@example.org" in str(m["To"])
        assert "Could you check the amount?" in text_of(m)
        assert _files(m) == {"invoice.pdf": data}
    track = gw.cli("track", "--to", DAN).stdout
    assert "new message with 1 attachment to alice@example.org, bob@example.org" in track, track
    b.click("a[data-folder='sent']", navigates=True)
    assert "Question about the invoice" in b.text("#inbox")


def test_reply_from_a_pushed_message_and_its_one_read_receipt(push_gateway, browser, tmp_path):
    gw = push_gateway
    gw.cli("settings", "set", "portal.read_receipts", "true")
    parent = _send(gw, "Pushed plans")
    seen: set = set()
    note = outbox_mail(gw, DAN, lambda m: "Secure message from" in str(m["Subject"]), seen=seen)
    saved = tmp_path / "secure-message.html"
    saved.write_text(_page_of(note), encoding="utf-8")

    b = browser
    b.open(saved.as_uri())
    b.click("#open-message", navigates=True)
    push_path = b.path
    b.click("#first-visit", navigates=True)
    b.fill("address", DAN)
    b.click("#send-code", navigates=True)
    b.fill("code", code_from(gw, DAN, seen))
    b.fill("password", PASSWORD)
    b.fill("password2", PASSWORD)
    b.click("#enrol", navigates=True)
    secret = secret_from(b.driver.page_source)
    b.fill("code", fresh_code(secret, set()))
    b.click("#confirm-totp", navigates=True)
    assert b.path == push_path and b.text("#subject") == "Pushed plans"

    # The first opening: one receipt, threaded; opening again sends none.
    receipt = outbox_mail(gw, "alice@example.org", lambda m: str(m["Subject"]) == "Read: Pushed plans",
                          seen=seen)
    assert receipt["In-Reply-To"] == parent
    b.open(f"https://127.0.0.1:{gw.portal_port}{push_path}")
    assert b.text("#subject") == "Pushed plans"
    _nothing_more(gw, "alice@example.org", lambda m: str(m["Subject"]).startswith("Read:"), seen)
    assert gw.cli("track", "--to", DAN).stdout.count("read receipt to the sender queued") == 1

    # Reply, with a file, from the pushed message.
    data = os.urandom(3000)
    upload = tmp_path / "answers.txt"
    upload.write_bytes(data)
    b.fill("text", "Answering the pushed one.")
    b.driver.find_element("id", "attachments").send_keys(str(upload))
    b.shots("push-reply")
    b.click("#send-reply", navigates=True)
    assert "Your reply was sent" in b.text("#notice")
    reply = outbox_mail(gw, "alice@example.org", lambda m: str(m["Subject"]) == "Re: Pushed plans", seen=seen)
    assert reply["In-Reply-To"] == parent and parent in reply["References"]
    assert str(reply["From"]) == DAN
    assert "Answering the pushed one." in text_of(reply)
    assert _files(reply) == {"answers.txt": data}
    assert "replied to pushed" in gw.cli("track", "--to", DAN).stdout
    # Its sealed copy is in Sent, as for a stored message's reply.
    b.click("a[data-folder='sent']", navigates=True)
    assert "Re: Pushed plans" in b.text("#inbox")
