"""SMTP smuggling (SEC Consult, Timo Longin, December 2023; CVE-2023-51764
class): an end-of-data look-alike inside DATA, followed by a smuggled
MAIL FROM / RCPT TO / DATA / message, and then the real <CRLF>.<CRLF>.

A vulnerable server ends the first message at the look-alike and runs the
smuggled commands as a second transaction. Sealgate must deliver 0
smuggled messages: only <CRLF>.<CRLF> ends DATA, and a message holding a
bare CR or LF is refused (554 5.6.0) after its real end. Checked plain,
under STARTTLS, and while an oversize body is being discarded."""

import email
import email.policy
import itertools
import time

import pytest

from conftest import outbox_messages, subjects, wait_outbox
from harness import Gateway, SmtpDialogue

# The 11 public end-of-data variants.
VARIANTS = [
    # the eight bare-CR / bare-LF combinations of Longin's original research
    ("lf-dot-lf", b"\n.\n"),            # <LF>.<LF>: Cisco Secure Email, Sendmail-style parsers
    ("lf-dot-crlf", b"\n.\r\n"),        # <LF>.<CRLF>: Exchange Online / GMX / Postfix (pre-fix)
    ("crlf-dot-lf", b"\r\n.\n"),        # <CRLF>.<LF>
    ("cr-dot-cr", b"\r.\r"),            # <CR>.<CR>
    ("crlf-dot-cr", b"\r\n.\r"),        # <CRLF>.<CR>
    ("cr-dot-crlf", b"\r.\r\n"),        # <CR>.<CRLF>
    ("lf-dot-cr", b"\n.\r"),            # <LF>.<CR>
    ("cr-dot-lf", b"\r.\n"),            # <CR>.<LF>
    # the follow-ups of the same research and its public checkers
    ("lf-lf-dot-crlf", b"\n\n.\r\n"),     # <LF><LF>.<CRLF>: a bare LF ends the line before
    ("crlf-nul-dot-crlf", b"\r\n\x00.\r\n"),  # <CRLF><NUL>.<CRLF>: parsers that drop NUL
    ("crlf-dot-nul-crlf", b"\r\n.\x00\r\n"),  # <CRLF>.<NUL><CRLF>
]
assert len(VARIANTS) == 11

MODES = ["plain", "starttls", "oversize"]
MAX_SIZE = 4096


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = Gateway(tmp_path_factory.mktemp("smuggling"), {"smtp": {"max_message_size": MAX_SIZE}})
    g.start()
    yield g
    g.stop()


def open_session(gw, mode) -> SmtpDialogue:
    d = SmtpDialogue(gw.port)
    assert d.reply().startswith("220")
    d.cmd("EHLO attacker.test", "250")
    if mode == "starttls":
        d.starttls()
        d.cmd("EHLO attacker.test", "250")
    return d


@pytest.mark.parametrize("mode,variant", list(itertools.product(MODES, VARIANTS)),
                         ids=[f"{m}-{v[0]}" for m, v in itertools.product(MODES, VARIANTS)])
def test_no_smuggled_message(gw, mode, variant):
    name, ending = variant
    tag = f"{mode}-{name}"
    d = open_session(gw, mode)
    d.cmd("MAIL FROM:<outer@example.org>", "250")
    d.cmd("RCPT TO:<victim@example.net>", "250")
    d.cmd("DATA", "354")
    padding = (b"p" * 78 + b"\r\n") * (2 * MAX_SIZE // 80) if mode == "oversize" else b""
    payload = (
        f"Subject: OUTER-{tag}\r\n\r\n".encode() + padding + b"outer body"
        + ending
        + f"MAIL FROM:<smuggler@example.org>\r\nRCPT TO:<smuggled-{tag}@example.net>\r\nDATA\r\n"
          f"From: ceo@example.org\r\nSubject: SMUGGLED-{tag}\r\n\r\nsmuggled body".encode()
        + b"\r\n.\r\n"  # the real end of data
    )
    d.send(payload)
    reply = d.reply()
    if mode == "oversize":
        assert reply.startswith(("554 5.6.0", "552 5.3.4")), reply
    else:
        assert reply.startswith("554 5.6.0"), reply
    # exactly one reply for the whole payload: the next reply answers our NOOP,
    # not a smuggled MAIL/RCPT/DATA
    d.cmd("NOOP", "250 2.0.0 OK")
    # a clean message in the same session still goes through
    d.cmd("MAIL FROM:<outer@example.org>", "250")
    d.cmd("RCPT TO:<victim@example.net>", "250")
    d.cmd("DATA", "354")
    d.cmd(f"Subject: CONTROL-{tag}\r\n\r\nclean\r\n.", "250 2.0.0")
    d.cmd("QUIT", "221")
    msgs = wait_outbox(gw, lambda m: f"CONTROL-{tag}" in subjects(m))
    time.sleep(0.2)
    msgs = outbox_messages(gw)
    # only the control message of this case arrived: no OUTER (refused), no SMUGGLED
    mine = [s for s in subjects(msgs) if s.endswith(f"-{tag}")]
    assert mine == [f"CONTROL-{tag}"], mine
    for raw in msgs:
        assert f"smuggled-{tag}@".encode() not in raw
        assert f"SMUGGLED-{tag}\r".encode() not in raw


def test_smuggling_split_across_writes(gw):
    """The look-alike split over TCP segments changes nothing."""
    d = open_session(gw, "plain")
    d.cmd("MAIL FROM:<outer@example.org>", "250")
    d.cmd("RCPT TO:<victim@example.net>", "250")
    d.cmd("DATA", "354")
    for piece in [b"Subject: OUTER-split\r\n\r\nbody\n", b".", b"\n", b"MAIL FROM:<s@example.org>\r\n",
                  b"RCPT TO:<smuggled-split@example.net>\r\nDATA\r\nSubject: SMUGGLED-split\r\n\r\nx\r",
                  b"\n.", b"\r\n"]:
        d.send(piece)
        time.sleep(0.05)
    assert d.reply().startswith("554 5.6.0")
    d.cmd("NOOP", "250 2.0.0 OK")
    time.sleep(0.5)
    assert not any(b"smuggled-split" in m for m in outbox_messages(gw))


def test_dot_lines_that_are_not_the_end(gw):
    """Lines that start with a dot but are not exactly <CRLF>.<CRLF> are
    content; with dot-stuffing they arrive intact and nothing is split."""
    d = open_session(gw, "plain")
    d.cmd("MAIL FROM:<outer@example.org>", "250")
    d.cmd("RCPT TO:<victim@example.net>", "250")
    d.cmd("DATA", "354")
    d.send(b"Subject: DOTS\r\n\r\n.. \r\n...\r\n..MAIL FROM:<x@example.org>\r\n.\r\n")
    assert d.reply().startswith("250 2.0.0")
    msgs = wait_outbox(gw, lambda m: "DOTS" in subjects(m))
    raw = next(m for m in msgs if b"Subject: DOTS" in m)
    assert raw.endswith(b"\r\n\r\n. \r\n..\r\n.MAIL FROM:<x@example.org>\r\n")
