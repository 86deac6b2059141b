"""Policy end to end: a real daemon decides per recipient; what must be
encrypted is never written out in clear (held instead), quarantine and
rejection take effect, keywords are stripped, the trigger header counts only
from a trusted host, and `sealgate policy explain` agrees with delivery.

There is no key directory yet, so no recipient has an encryption method:
"encrypt-required" recipients are held, "encrypt-if-possible" ones get clear.
"""

import email
import email.policy
import json
import re
import time

from smtp_conftest import outbox_messages, send_message, wait_outbox

POLICY = {
    "trusted_trigger_hosts": ["127.0.0.5/32"],
    "domain": {"bank.example": {"action": "encrypt-required"}},
    "rule": [
        {"name": "no executables", "attachment_name": ["*.exe"], "action": "reject"},
        {"name": "dlp", "trigger": ["quarantine"], "action": "quarantine"},
        {"name": "secure subject", "subject_keyword": ["[secure]"], "action": "encrypt-required"},
        {"name": "plugin", "trigger": ["yes"], "action": "encrypt-required"},
        {"name": "legal", "sender": ["lee@example.org"], "recipient_internal": False,
         "action": "encrypt-required"},
    ],
}

SENDER = "alice@example.org"


def gw_with_policy(gateway_factory, **delivery):
    return gateway_factory({"policy": POLICY, "delivery": delivery} if delivery else {"policy": POLICY})


def msg(subject: str, body: str = "hello", extra: str = "", sender: str = SENDER) -> str:
    return (f"From: {sender}\r\nTo: someone@ext.example\r\nSubject: {subject}\r\n{extra}"
            f"Message-ID: <{time.monotonic_ns()}@example.org>\r\n\r\n{body}\r\n")


def envelope_to(raw: bytes) -> list[str]:
    """The recipients the outbox file was delivered to."""
    return [r.decode() for r in re.findall(rb"(?m)^X-Sealgate-Envelope-To: <?([^>\r\n]*)>?", raw)]


def parsed(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def queue_json(gw) -> list[dict]:
    return json.loads(gw.cli("queue", "list", "--json").stdout)


def wait_status(gw, predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        entries = queue_json(gw)
        if predicate(entries):
            return entries
        if time.monotonic() > deadline:
            raise AssertionError(f"queue condition not met: {json.dumps(entries)[:2000]}")
        time.sleep(0.1)


def statuses(entries) -> dict[str, str]:
    out = {}
    for e in entries:
        for r in e["recipients"]:
            out[r["address"]] = r["state"]
    return out


def test_keyword_holds_external_and_strips_subject_for_internal(gateway_factory):
    gw = gw_with_policy(gateway_factory)
    send_message(gw.port, SENDER, ["bob@ext.example", "carol@example.org"],
                 msg("[secure] contract terms", "the secret terms"))
    got = wait_outbox(gw, lambda m: any(b"carol@example.org" in x and b"contract" in x for x in m))
    # The internal recipient (boundary only) gets it in clear, keyword removed.
    carol = [x for x in got if "carol@example.org" in envelope_to(x)]
    assert len(carol) == 1
    assert parsed(carol[0])["Subject"] == "contract terms"
    # The external one is held: never written out, and the queue says why.
    entries = wait_status(gw, lambda e: statuses(e).get("bob@ext.example") == "held")
    held = [r for e in entries for r in e["recipients"] if r["state"] == "held"]
    assert "encryption required" in held[0]["reason"]["text"]
    time.sleep(1.5)
    for raw in outbox_messages(gw):
        if "bob@ext.example" in envelope_to(raw):
            raise AssertionError("held recipient was written out")
        if b"the secret terms" in raw:
            assert "carol@example.org" in envelope_to(raw) or b"Delivery Status" in raw
    # The sender got a delay notice (RFC 3464 action: delayed) naming bob.
    dsn = wait_outbox(gw, lambda m: any(b"Action: delayed" in x for x in m))
    notice = [x for x in dsn if b"Action: delayed" in x][0]
    assert SENDER in envelope_to(notice)
    assert b"bob@ext.example" in notice


def test_release_of_a_held_recipient_never_sends_in_clear(gateway_factory):
    gw = gw_with_policy(gateway_factory)
    send_message(gw.port, SENDER, ["ceo@bank.example"], msg("quarterly numbers", "numbers"))
    entries = wait_status(gw, lambda e: statuses(e).get("ceo@bank.example") == "held")
    qid = entries[0]["queue_id"]
    out = gw.cli("queue", "release", qid)
    assert "released" in out.stdout
    # Decided again: still no key, so held again, and nothing went out.
    wait_status(gw, lambda e: statuses(e).get("ceo@bank.example") == "held")
    time.sleep(1)
    assert not any("ceo@bank.example" in envelope_to(x) for x in outbox_messages(gw))
    show = gw.cli("queue", "show", qid).stdout
    assert "held since" in show and "no certificate or key" in show
    # Tracking has the policy's reason.
    track = gw.cli("track", "--to", "ceo@bank.example").stdout
    assert "settings of domain bank.example" in track


def test_hold_expires_with_a_failure_notice(gateway_factory):
    gw = gw_with_policy(gateway_factory, hold_lifetime_secs=2)
    send_message(gw.port, SENDER, ["bob@ext.example"], msg("[secure] short-lived", "x"))
    got = wait_outbox(gw, lambda m: any(b"Action: failed" in x for x in m), timeout=20)
    failed = [x for x in got if b"Action: failed" in x][0]
    assert SENDER in envelope_to(failed) and b"bob@ext.example" in failed
    wait_status(gw, lambda e: not e)
    assert not any("bob@ext.example" in envelope_to(x) for x in got)


def test_reject_bounces_and_quarantine_waits_until_released(gateway_factory):
    gw = gw_with_policy(gateway_factory)
    exe = ("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n", (
        "--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        "--b\r\nContent-Type: application/octet-stream\r\n"
        "Content-Disposition: attachment; filename=\"tool.exe\"\r\n\r\nTVqQ\r\n--b--"))
    send_message(gw.port, SENDER, ["bob@ext.example"], msg("tool", exe[1], exe[0]))
    got = wait_outbox(gw, lambda m: any(b"Action: failed" in x for x in m))
    assert b"refused by policy" in [x for x in got if b"Action: failed" in x][0]
    assert not any("bob@ext.example" in envelope_to(x) for x in got)

    # Quarantine comes from the trigger header, believed only from 127.0.0.5.
    send_message(gw.port, SENDER, ["dan@ext.example"], msg("report", "q", "X-Sealgate-Encrypt: quarantine\r\n"),
                 source="127.0.0.5")
    entries = wait_status(gw, lambda e: statuses(e).get("dan@ext.example") == "quarantined")
    qid = [e for e in entries if "dan@ext.example" in json.dumps(e)][0]["queue_id"]
    assert not any("dan@ext.example" in envelope_to(x) for x in outbox_messages(gw))
    gw.cli("queue", "release", qid)
    got = wait_outbox(gw, lambda m: any("dan@ext.example" in envelope_to(x) for x in m))


def test_trigger_header_counts_only_from_a_trusted_host(gateway_factory):
    gw = gw_with_policy(gateway_factory)
    # From an internal but untrusted host: the header is ignored, mail goes out.
    send_message(gw.port, SENDER, ["erin@ext.example"], msg("untrusted", "u", "X-Sealgate-Encrypt: yes\r\n"),
                 source="127.0.0.1")
    wait_outbox(gw, lambda m: any("erin@ext.example" in envelope_to(x) for x in m))
    # From the trusted plug-in host: encryption required, so held.
    send_message(gw.port, SENDER, ["fay@ext.example"], msg("trusted", "t", "X-Sealgate-Encrypt: yes\r\n"),
                 source="127.0.0.5")
    wait_status(gw, lambda e: statuses(e).get("fay@ext.example") == "held")
    time.sleep(1)
    assert not any("fay@ext.example" in envelope_to(x) for x in outbox_messages(gw))


def test_sender_rule_and_explain_agree_with_delivery(gateway_factory, tmp_path):
    gw = gw_with_policy(gateway_factory)
    body = msg("minutes", "m", sender="lee@example.org")
    explain = gw.cli("policy", "explain", "--from", "lee@example.org",
                     "--to", "x@ext.example", "--to", "y@example.org", input_text=body)
    lines = explain.stdout.splitlines()
    assert any(l.startswith("x@ext.example: encrypt-required") and 'rule 5 "legal"' in l for l in lines), lines
    assert any(l.startswith("y@example.org: clear") for l in lines), lines
    send_message(gw.port, "lee@example.org", ["x@ext.example", "y@example.org"], body)
    wait_outbox(gw, lambda m: any("y@example.org" in envelope_to(x) for x in m))
    wait_status(gw, lambda e: statuses(e).get("x@ext.example") == "held")


def test_explain_json_and_bad_input(gateway_factory):
    gw = gw_with_policy(gateway_factory)
    out = gw.cli("policy", "explain", "--json", "--to", "bob@ext.example",
                 input_text=msg("[secure] x"))
    d = json.loads(out.stdout)[0]
    assert d["action"] == "encrypt-required" and d["decided_by"] == 'rule 3 "secure subject"', d
    assert d["strip_keyword"] == "[secure]"
    assert d["outcome"].startswith("held: encryption required"), d
    deep = "From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n" + "".join(
        f"--b{i}\r\nContent-Type: multipart/mixed; boundary=b{i + 1}\r\n\r\n" for i in range(60))
    bad = gw.cli("policy", "explain", "--to", "bob@ext.example", input_text=deep, check=False)
    assert bad.returncode == 65 and "nest deeper" in bad.stderr


def test_bad_policy_is_refused_naming_the_key(gateway_factory):
    gw = gateway_factory({"policy": {"rule": [{"name": "x", "action": "clear", "body_regex": ["("]}]}},
                         start=False)
    out = gw.cli("check-config", check=False)
    assert out.returncode == 2 and "policy.rule.body_regex" in out.stderr, out.stderr


def test_forged_verdict_headers_are_removed(gateway_factory):
    gw = gw_with_policy(gateway_factory)
    forged = "X-Sealgate-Verdict: decrypted; signature=valid\r\n"
    send_message(gw.port, "mallory@ext.example", ["carol@example.org"],
                 msg("trust me", "X-Sealgate-Verdict: in the body is fine", forged, sender="mallory@ext.example"),
                 source="127.0.0.9")
    got = wait_outbox(gw, lambda m: any("carol@example.org" in envelope_to(x) for x in m))
    raw = [x for x in got if "carol@example.org" in envelope_to(x)][0]
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"x-sealgate-verdict" not in head.lower()
    assert b"X-Sealgate-Verdict: in the body is fine" in body
