"""The portal between real Postfix peers: the internal sender submits to
a Postfix upstream that relays to Sealgate; Sealgate delivers by SMTP,
external mail (the notification, the one-time code) to Postfix's
smtp-sink, internal mail (`delivery.internal_server`) to a second
Postfix that relays to its own smtp-sink, the internal mailbox. Headless
Chromium follows the captured link, enrols with the captured code and
TOTP, reads, downloads the attachment byte-identical and replies; the
reply reaches alice@example.org through Postfix in the thread.

The Postfix peers are tests/smtp/postfix_peer.py's (root: Postfix's
daemons drop to the `postfix` user; loopback only)."""

import email
import email.policy
import os
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "smtp"))

from harness import free_port  # noqa: E402
from hsm_token import token_gateway  # noqa: E402
from portaltools import code_in, enrol_in_browser, portal_settings, raw_get, send, text_of  # noqa: E402
from postfix_peer import PostfixRelay, SmtpSink, split_dump  # noqa: E402

DAN = "dan@partner.example"
ALICE = "alice@example.org"


def _arrived(sink: SmtpSink, rcpt: str, predicate, timeout: float = 60.0):
    """The first message smtp-sink received for `rcpt` that `predicate`
    accepts (parsed), polling at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        for dump in sink.dumps():
            meta, raw = split_dump(dump)
            rcpts = [a.split(" ")[0].strip("<>").lower() for a in meta.get("X-Rcpt-Args", [])]
            if rcpt in rcpts:
                m = email.message_from_bytes(raw, policy=email.policy.default)
                if predicate(m):
                    return m
        if time.monotonic() > deadline:
            raise AssertionError(f"smtp-sink: nothing for {rcpt} matched in {timeout}s "
                                 f"({len(sink.dumps())} dumps)")
        time.sleep(0.2)


@pytest.fixture
def chain(tmp_path):
    """Postfix upstream -> Sealgate (token, portal) -> smtp-sink outside,
    Postfix -> smtp-sink inside; everything stopped at teardown."""
    started: list = []
    try:
        outside = SmtpSink(free_port()).start()
        started.append(outside)
        mailbox = SmtpSink(free_port()).start()
        started.append(mailbox)
        internal = PostfixRelay(free_port(), mailbox.port).start()
        started.append(internal)
        port = free_port()
        settings = portal_settings(port)
        settings["delivery"] = {"mode": "smarthost", "smarthost": f"127.0.0.1:{outside.port}",
                                "internal_server": f"127.0.0.1:{internal.port}",
                                "retry_initial_secs": 1, "retry_max_secs": 2}
        gw = token_gateway(tmp_path / "gw", settings)
        gw.portal_port = port
        started.append(gw)
        gw.start()
        upstream = PostfixRelay(free_port(), gw.port).start()
        started.append(upstream)
        yield SimpleNamespace(gw=gw, outside=outside, mailbox=mailbox, internal=internal, upstream=upstream)
    finally:
        for peer in reversed(started):
            try:
                if isinstance(peer, PostfixRelay):
                    print(f"--- postfix maillog ---\n{peer.log_text()}")
                peer.stop()
            except Exception as e:  # keep stopping the others
                print(f"stopping {peer!r}: {e}")
        gw_log = tmp_path / "gw" / "sealgate.log"
        if gw_log.exists():
            print(f"--- gateway log tail ---\n{gw_log.read_text(errors='replace')[-3000:]}")


def test_portal_between_postfix_peers(chain, browser):
    gw = chain.gw
    unique = "unique-line-" + os.urandom(6).hex()
    pdf = b"%PDF-1.4\n" + os.urandom(3000)
    # The internal sender's client submits to the upstream Postfix.
    parent = send(SimpleNamespace(port=chain.upstream.port), ALICE, DAN, "Quarterly numbers",
                  f"Hello Dan,\n{unique}\nRegards", attachment=pdf)

    note = _arrived(chain.outside, DAN, lambda m: "Secure message from alice@example.org" in str(m["Subject"]))
    assert unique not in note.as_string() and "Quarterly" not in note.as_string()
    link = re.search(r"https://127\.0\.0\.1:\d+/\?address=\S+", text_of(note)).group(0)
    track = gw.cli("track", "--to", DAN).stdout
    assert "method portal" in track and "stored in the portal" in track, track

    b = browser
    used: set = set()
    enrol_in_browser(b, link, DAN, lambda: code_in(
        _arrived(chain.outside, DAN, lambda m: "code" in str(m["Subject"]).lower())), used)
    assert "Quarterly numbers" in b.text("#inbox")
    b.click("a.open-message", navigates=True)
    assert b.text("#subject") == "Quarterly numbers"
    assert unique in b.text("main")

    # The attachment with the browser's session cookie: byte-identical.
    href = b.driver.find_element("css selector", "a.attachment").get_attribute("href")
    cookie = {c["name"]: c["value"] for c in b.driver.get_cookies()}
    status, data, headers = raw_get(gw.portal_port, "/" + href.split("/", 3)[3], cookie)
    assert status == 200 and data == pdf
    assert headers["content-disposition"].startswith("attachment;")

    # The reply: through the pipeline, Sealgate, the internal Postfix, to
    # alice's mailbox, in the thread.
    b.fill("text", "Thanks Alice, received through Postfix.")
    b.click("#send-reply", navigates=True)
    assert "Your reply was sent" in b.text()
    reply = _arrived(chain.mailbox, ALICE, lambda m: str(m["Subject"]) == "Re: Quarterly numbers")
    assert reply["In-Reply-To"] == parent
    assert parent in reply["References"]
    assert str(reply["From"]) == DAN
    assert "Thanks Alice, received through Postfix." in text_of(reply)
    # It passed the internal Postfix (its Received line), not only Sealgate.
    assert "upstream.test" in " ".join(str(r) for r in reply.get_all("Received", [])), reply.get_all("Received")
    # Nothing for alice went to the outside sink.
    assert not [d for d in chain.outside.dumps() if b"Re: Quarterly numbers" in d]
