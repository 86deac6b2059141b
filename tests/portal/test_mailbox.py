"""The portal mailbox in headless Chromium against a real daemon with a
SoftHSM token: three messages from different senders; search by
subject; sort by sender (column header links); an own folder
("Projects"), a move into it, delete into Trash and delete from Trash
(its page then 404s); reply-all to a message with internal Cc
recipients reaches the sender and the internal recipients in the
thread, and a sealed copy is in Sent. Screenshots at 375 and 1280 px."""

import email.policy
import smtplib
import time
from email.message import EmailMessage

from portaltools import PASSWORD, code_from, outbox_mail, raw_get, text_of
from webtools import fresh_code, secret_from

DAN = "dan@partner.example"


def _send(gw, name: str, sender: str, subject: str, cc: list[str] | None = None) -> str:
    m = EmailMessage()
    m["From"] = f"{name} <{sender}>"
    m["To"] = DAN
    if cc:
        m["Cc"] = ", ".join(cc)
    m["Subject"] = subject
    m["Message-ID"] = f"<{time.time_ns()}@example.org>"
    m.set_content(f"{subject}: the text.")
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.sendmail(sender, [DAN], m.as_bytes(policy=email.policy.SMTP))
    return m["Message-ID"]


def _enrol(b, gw, seen: set) -> None:
    b.open(f"https://127.0.0.1:{gw.portal_port}/?address={DAN}")
    b.click("#first-visit", navigates=True)
    b.click("#send-code", navigates=True)
    b.fill("code", code_from(gw, DAN, seen))
    b.fill("password", PASSWORD)
    b.fill("password2", PASSWORD)
    b.click("#enrol", navigates=True)
    secret = secret_from(b.driver.page_source)
    b.fill("code", fresh_code(secret, set()))
    b.click("#confirm-totp", navigates=True)
    assert b.path == "/inbox"


def _column(b, css: str) -> list[str]:
    return [e.text for e in b.driver.find_elements("css selector", f"#inbox tbody {css}")]


def _open(b, subject: str) -> str:
    link = b.driver.find_element("link text", subject)
    msg_id = link.get_attribute("href").rsplit("/", 1)[1]
    b.driver.execute_script("window.__sgOld = true;")
    link.click()
    b._wait_for_new_page(subject)
    return msg_id


def test_mailbox_folders_search_sort_trash_and_reply_all(portal_gateway, browser):
    gw = portal_gateway
    b = browser
    base = f"https://127.0.0.1:{gw.portal_port}"
    parent = _send(gw, "Carol Lane", "carol@example.org", "Project kickoff",
                   cc=["alice@example.org", "bob@example.org"])
    _send(gw, "Alice Sender", "alice@example.org", "Quarterly numbers")
    _send(gw, "Bob Builder", "bob@example.org", "Holiday plans")
    seen: set = set()
    for _ in range(3):
        outbox_mail(gw, DAN, lambda m: "Secure message" in str(m["Subject"]), seen=seen)
    _enrol(b, gw, seen)
    assert sorted(_column(b, "td.subject a")) == ["Holiday plans", "Project kickoff", "Quarterly numbers"]

    # Search by subject (case aside): one of three.
    b.fill("q", "QUARTERLY")
    b.click("#search-button", navigates=True)
    assert _column(b, "td.subject a") == ["Quarterly numbers"]
    b.shots("portal-mailbox-search")
    b.click("#clear-search", navigates=True)

    # Sort by sender with the column header, then the other way round.
    b.click("#sort-sender", navigates=True)
    assert [w.split(" <")[0] for w in _column(b, "td.who")] == ["Alice Sender", "Bob Builder", "Carol Lane"]
    b.click("#sort-sender", navigates=True)
    assert [w.split(" <")[0] for w in _column(b, "td.who")] == ["Carol Lane", "Bob Builder", "Alice Sender"]
    b.shots("portal-mailbox")

    # An own folder; a message moved there is listed there, not in the inbox.
    b.click("#new-folder")
    b.fill("folder-name", "Projects")
    b.click("#create-folder", navigates=True)
    assert "The folder was created" in b.text()
    assert b.text("#folder-title") == "Projects"
    b.open(f"{base}/inbox")
    holiday = _open(b, "Holiday plans")
    from selenium.webdriver.support.ui import Select
    Select(b.driver.find_element("id", "move-to")).select_by_value("Projects")
    b.shots("portal-message-actions")
    b.click("#move", navigates=True)
    assert "The message was moved" in b.text()
    assert "Holiday plans" not in _column(b, "td.subject a")
    b.click("a[data-folder='Projects']", navigates=True)
    assert _column(b, "td.subject a") == ["Holiday plans"]
    b.shots("portal-folder")

    # Delete: into Trash; delete there: gone, its page 404s.
    _open(b, "Holiday plans")
    b.click("#delete", navigates=True)
    assert "in Trash" in b.text()
    assert "Holiday plans" not in _column(b, "td.subject a")
    b.click("a[data-folder='trash']", navigates=True)
    assert _column(b, "td.subject a") == ["Holiday plans"]
    _open(b, "Holiday plans")
    assert b.text("#delete") == "Delete for good"
    b.click("#delete", navigates=True)
    assert "deleted for good" in b.text()
    assert _column(b, "td.subject a") == []
    cookies = {c["name"]: c["value"] for c in b.driver.get_cookies()}
    assert raw_get(gw.portal_port, f"/message/{holiday}", cookies)[0] == 404

    # The empty folder can be deleted.
    b.click("a[data-folder='Projects']", navigates=True)
    b.click("#manage-folder")
    b.click("#delete-folder", navigates=True)
    assert "The folder was deleted" in b.text()
    assert b.driver.find_elements("css selector", "a[data-folder='Projects']") == []

    # Reply all: the sender and the internal Cc recipients, in the thread.
    b.open(f"{base}/inbox")
    _open(b, "Project kickoff")
    b.fill("text", "Agreed, let us start on Monday.")
    b.click("#send-reply-all", navigates=True)
    assert "Your reply was sent" in b.text()
    for rcpt in ("carol@example.org", "alice@example.org", "bob@example.org"):
        reply = outbox_mail(gw, rcpt, lambda m: str(m["Subject"]) == "Re: Project kickoff")
        assert reply["In-Reply-To"] == parent, rcpt
        assert parent in reply["References"]
        assert str(reply["From"]) == DAN
        assert "carol@example.org" in str(reply["To"])
        assert "alice@example.org" in str(reply["Cc"]) and "bob@example.org" in str(reply["Cc"])
        assert DAN not in str(reply["Cc"])
        assert "let us start on Monday" in text_of(reply)
    # A sealed copy in Sent, listed by whom it went to.
    b.click("a[data-folder='sent']", navigates=True)
    assert _column(b, "td.subject a") == ["Re: Project kickoff"]
    assert "carol@example.org" in _column(b, "td.who")[0]
    b.shots("portal-sent")
    _open(b, "Re: Project kickoff")
    assert "let us start on Monday" in b.driver.page_source
    assert b.driver.find_elements("id", "send-reply") == []
    # Moved out of Sent, it still is no message to answer: refused.
    sent_id = b.driver.current_url.rsplit("/", 1)[1]
    cookies = {c["name"]: c["value"] for c in b.driver.get_cookies()}
    from webtools import Client
    c = Client(gw.portal_port, cookies=cookies)
    assert c.post(f"/message/{sent_id}/move", {"folder": "inbox", "back": "sent"}).status == 303
    r = c.post(f"/message/{sent_id}/reply", {"text": "to myself"})
    assert r.status == 422 and "copy of your own reply" in r.body, (r.status, r.body[:300])
    track = gw.cli("track", "--to", DAN).stdout
    for what in ("moved", "moved to Trash", "its key is destroyed", "replied to all", "kept in Sent"):
        assert what in track, (what, track)


def test_another_recipient_cannot_move_delete_or_reply_all(portal_gateway):
    """The mailbox's new doors check the session's address like the old ones."""
    import re

    from portaltools import enrol_over_http

    gw = portal_gateway
    _send(gw, "Carol Lane", "carol@example.org", "For Dan only", cc=["alice@example.org"])
    m = EmailMessage()
    m["From"] = "alice@example.org"
    m["To"] = "eve@partner.example"
    m["Subject"] = "For Eve"
    m.set_content("eve's mail")
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.sendmail("alice@example.org", ["eve@partner.example"], m.as_bytes(policy=email.policy.SMTP))
    seen: set = set()
    used: set = set()
    for rcpt in (DAN, "eve@partner.example"):
        outbox_mail(gw, rcpt, lambda m: "Secure message" in str(m["Subject"]), seen=seen)
    dan = enrol_over_http(gw, DAN, seen, used)
    eve = enrol_over_http(gw, "eve@partner.example", seen, used)
    dan_id = re.search(r'href="/message/([0-9a-f]{32})"', dan.get("/inbox").body).group(1)
    assert eve.post("/folders", {"name": "Projects"}).status == 303
    for path, form in ((f"/message/{dan_id}/move", {"folder": "Projects"}),
                       (f"/message/{dan_id}/move", {"folder": "trash"}),
                       (f"/message/{dan_id}/delete", {"folder": "trash"}),
                       (f"/message/{dan_id}/reply-all", {"text": "hi"})):
        r = eve.post(path, form)
        assert r.status == 404, (path, form, r.status)
    # Eve's folder is not Dan's; Dan's message is still in his inbox.
    assert dan.get("/inbox?folder=Projects").status == 404
    assert "For Dan only" in dan.get("/inbox").body
    assert "For Dan only" not in eve.get("/inbox?folder=trash").body
    # A folder name the mailbox refuses is said on the page.
    r = dan.post("/folders", {"name": "Trash"})
    assert r.status == 422 and "Inbox, Sent and Trash are there already" in r.body
    # The date window (whole UTC days) and a date that is none.
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert "For Dan only" in dan.get(f"/inbox?from={today}&to={today}").body
    r = dan.get("/inbox?from=2000-01-01&to=2000-01-02")
    assert "For Dan only" not in r.body and "No message here matches" in r.body
    r = dan.get("/inbox?from=yesterday")
    assert "For Dan only" in r.body and "is not a date like" in r.body
