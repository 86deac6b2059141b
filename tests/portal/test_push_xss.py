"""The XSS corpus (tests/web/data/xss-vectors.json) in push: every vector
as the display name of the sender (with an empty envelope sender, the
name the notification and its attachment page show), and as the Subject,
an attachment name, the plain text and the HTML body of a pushed message.
Each notification's HTML attachment, saved to a file and opened in
headless Chromium, and each pushed message opened in the portal
(`/push/{handle}`, its HTML body the sandboxed frame) are inert: no
dialog, no element or handler a payload made, no request that left the
page (Chromium's network log, and a trap every other host name resolves
to)."""

import re
import time
from pathlib import Path

from harness import SmtpDialogue
from portaltools import enrol_over_http
from test_portal_xss import VECTORS, _message, assert_inert_with_body_frame, trapped  # noqa: F401
from test_push import _page_of, push_gateway  # noqa: F401
from webtools import assert_inert

# Posted ciphertexts wait in memory, at most 256 at once (push.rs): the
# gateway restarts between batches.
BATCH = 200


def _pushed_notifications(gw, want: int) -> list:
    """The push notifications in the outbox (those with the attachment)."""
    import email
    import email.policy

    deadline = time.monotonic() + 300
    while True:
        found = []
        for f in sorted(Path(gw.outbox).glob("*.eml")) if Path(gw.outbox).exists() else []:
            m = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
            if any(p.get_filename() == "secure-message.html" for p in m.iter_attachments()):
                found.append((f, m))
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(1)


def test_the_corpus_is_inert_in_push(push_gateway, trapped, tmp_path):
    gw = push_gateway
    b, trap = trapped
    for n, v in enumerate(VECTORS):
        d = SmtpDialogue(gw.port)
        try:
            d.reply()
            d.cmd("EHLO client.example.org", "250")
            d.cmd("MAIL FROM:<>", "250")
            d.cmd("RCPT TO:<dan@partner.example>", "250")
            d.cmd("DATA", "354")
            d.send(_message(v, n) + b".\r\n")
            assert d.reply().startswith("250")
        finally:
            d.close()
    notes = _pushed_notifications(gw, len(VECTORS))
    assert len(notes) == len(VECTORS), len(notes)
    seen = {f for f, _ in notes}
    dan = enrol_over_http(gw, "dan@partner.example", seen, set())
    origin = f"https://127.0.0.1:{gw.portal_port}"
    b.open(origin + "/")
    b.driver.add_cookie({"name": "__Host-sealgate-portal", "value": dan.cookies["__Host-sealgate-portal"],
                         "path": "/", "secure": True})
    opened = named = 0
    for i, (f, note) in enumerate(notes):
        if i and i % BATCH == 0:
            gw.stop()
            gw.start()
        page = _page_of(note)
        saved = tmp_path / f"secure-message-{i}.html"
        saved.write_text(page, encoding="utf-8")
        b.open(saved.as_uri())
        assert "Open the message" in b.text("main"), f.name
        # The sender named is the From header's (the envelope sender is empty).
        named += bool(re.search(r"sender\d+@example\.org", b.text("main")))
        assert_inert(b, trap, "file://", f"attachment page of {f.name}")

        form = {k: re.search(rf'name="{k}" value="([^"]*)"', page).group(1) for k in ("id", "data")}
        r = dan.post("/push/open", form, browser=False)
        assert r.status == 303, (f.name, r.status, r.body[:300])
        b.open(origin + r.header("location"))
        assert b.path.startswith("/push/"), (f.name, b.driver.current_url)
        shown = b.driver.find_element("css selector", "pre.mail-text").get_attribute("textContent")
        assert shown.startswith("vector "), (f.name, shown[:200])
        assert_inert_with_body_frame(b, trap, origin, f"pushed message of {f.name}")
        opened += 1
    assert opened == len(VECTORS)
    assert named == len(VECTORS), named
