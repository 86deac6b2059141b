"""What the portal mails and keeps per account, seen from outside: the
password reset by the mailed link (once, then the second factor again),
read receipts to the sender, and the mailbox quota (a full mailbox makes
new mail wait in the queue, and it arrives once there is room)."""

import re
import time

from portaltools import PASSWORD, enrol_over_http, outbox_mail, send, text_of
from webtools import Client, fresh_code

DAN = "dan@partner.example"
NEW_PASSWORD = "Harbor-quill-spruce-38-oval"


def _inbox_ids(client: Client) -> list[str]:
    return re.findall(r'href="/message/([0-9a-f]{32})"', client.get("/inbox").body)


def test_reset_link_works_once_and_asks_the_second_factor_again(portal_gateway, browser):
    gw = portal_gateway
    send(gw, "alice@example.org", DAN, "Before the reset", "waits in the portal")
    seen: set = set()
    used: set = set()
    outbox_mail(gw, DAN, lambda m: "Secure message from" in str(m["Subject"]), seen=seen)
    old = enrol_over_http(gw, DAN, seen, used)
    assert old.get("/inbox").status == 200

    # Forgot the password: the login page's link, the address, a mail.
    b = browser
    origin = f"https://127.0.0.1:{gw.portal_port}"
    b.open(origin + "/")
    b.click("#first-visit", navigates=True)
    b.fill("address", DAN)
    b.click("#send-code", navigates=True)
    assert "with a link that does the same" in b.text("#code-sent")
    mail = outbox_mail(gw, DAN, lambda m: "code" in str(m["Subject"]).lower(), seen=seen)
    found = re.search(r"(https://127\.0\.0\.1:\d+/reset/[A-Za-z0-9_-]{43})\s", text_of(mail))
    assert found, text_of(mail)
    link = found.group(1)

    b.open(link)
    assert b.text("#reset-address") == DAN
    b.shots("portal-reset")
    # Two different passwords: refused, the link still works.
    b.fill("password", NEW_PASSWORD)
    b.fill("password2", NEW_PASSWORD + "x")
    b.click("#reset", navigates=True)
    assert "The two passwords differ" in b.text("#reset-error")
    b.fill("password", NEW_PASSWORD)
    b.fill("password2", NEW_PASSWORD)
    b.click("#reset", navigates=True)
    # partner.example requires TOTP: the second factor is set up again.
    secret = b.text("#totp-secret")
    assert secret and secret != old.secret
    b.fill("code", fresh_code(secret, used))
    b.submit()
    assert b.path == "/inbox", b.path
    assert "Before the reset" in b.text()

    # The old session ended; the link is used up; old password refused.
    assert old.get("/inbox").status != 200
    again = Client(gw.portal_port)
    r = again.get(link.removeprefix(origin))
    assert r.status == 404 and "not valid any more" in r.body, (r.status, r.body[:400])
    b.open(link)
    assert "not valid any more" in b.text("#reset-error")
    b.shots("portal-reset-used")
    r = again.post("/", {"address": DAN, "password": PASSWORD, "code": fresh_code(secret, used)})
    assert r.status == 401
    time.sleep(1)
    r = again.post("/", {"address": DAN, "password": NEW_PASSWORD, "code": fresh_code(secret, used)})
    assert r.status == 303 and r.header("location") == "/inbox", (r.status, r.body[:300])
    assert "password set with the mailed link" in gw.cli("track", "--to", DAN).stdout


def test_read_receipt_and_quota(portal_gateway, browser):
    gw = portal_gateway
    gw.cli("settings", "set", "portal.read_receipts", "true")
    gw.cli("settings", "set", "portal.quota_mb", "1")
    # ~0.95 MB as MIME: the mailbox is then nearly full, and a second one
    # does not fit.
    big = bytes(range(256)) * (700 * 4)
    first_id = send(gw, "alice@example.org", DAN, "Quarterly figures", "the first one", attachment=big)
    seen: set = set()
    used: set = set()
    outbox_mail(gw, DAN, lambda m: "Secure message from" in str(m["Subject"]), seen=seen)
    dan = enrol_over_http(gw, DAN, seen, used)

    send(gw, "alice@example.org", DAN, "Second batch", "does not fit yet", attachment=big)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = gw.cli("queue", "list").stdout
        if "mailbox is full" in listed:
            break
        time.sleep(0.5)
    assert DAN in listed and "mailbox is full" in listed, listed
    assert "mailbox is full" in gw.cli("track", "--to", DAN).stdout
    assert len(_inbox_ids(dan)) == 1

    # The preferences page says how full it is.
    prefs = dan.get("/preferences").body
    assert re.search(r'id="usage">Your messages take <strong>[0-9.]+ (KB|MB)</strong> of '
                     r'<strong>1\.0 MB</strong>', prefs), prefs[:2000]
    assert 'id="usage-warning"' in prefs
    b = browser
    origin = f"https://127.0.0.1:{gw.portal_port}"
    b.open(origin + "/")
    b.driver.add_cookie({"name": "__Host-sealgate-portal", "value": dan.cookies["__Host-sealgate-portal"],
                         "path": "/", "secure": True})
    b.open(origin + "/preferences")
    assert "nearly full" in b.text("#usage-warning")
    b.shots("portal-preferences-quota")

    # Opening the message tells the sender, once, threaded with the original.
    (msg,) = _inbox_ids(dan)
    assert dan.get(f"/message/{msg}").status == 200
    receipt = outbox_mail(gw, "alice@example.org",
                          lambda m: str(m["Subject"]) == "Read: Quarterly figures", seen=seen)
    assert receipt["In-Reply-To"] == first_id, receipt["In-Reply-To"]
    assert receipt["Auto-Submitted"] == "auto-generated"
    assert DAN in text_of(receipt) and "was opened by them" in text_of(receipt)
    assert "the first one" not in receipt.as_string()
    assert dan.get(f"/message/{msg}").status == 200
    time.sleep(2)
    try:
        outbox_mail(gw, "alice@example.org", lambda m: str(m["Subject"]).startswith("Read:"),
                    timeout=2, seen=seen)
        raise AssertionError("a second receipt for the same message")
    except AssertionError as e:
        assert "no matching mail" in str(e), e
    assert "read receipt to the sender queued as" in gw.cli("track", "--to", DAN).stdout

    # Trash counts: a deleted message still takes its room until it is
    # deleted for good; then the waiting message arrives when the queue
    # tries it.
    for _ in ("to Trash", "for good"):
        page = dan.get(f"/message/{msg}").body
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        form = {"csrf": token.group(1)} if token else {}
        r = dan.post(f"/message/{msg}/delete", form)
        assert r.status in (200, 303), (r.status, r.body[:300])
    assert dan.get(f"/message/{msg}").status == 404
    # The queue's own retry may come first (the mail waits only for room);
    # otherwise ask for one now.
    queued = re.findall(r"^(\S+)\s", gw.cli("queue", "list").stdout, re.M)
    ids = [q for q in queued if re.fullmatch(r"[0-9A-Za-z-]{8,}", q)]
    if ids:
        gw.cli("queue", "retry", *ids)
    note = outbox_mail(gw, DAN, lambda m: "Secure message from" in str(m["Subject"]), seen=seen)
    assert note is not None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(_inbox_ids(dan)) != 1:
        time.sleep(0.5)
    assert "Second batch" in dan.get("/inbox").body
