"""Fail closed when the SoftHSM2 token is unavailable, through real peers
(Postfix upstream, Sealgate, smtp-sink downstream). A message the internal
sender encrypted for the gateway must be opened on the token before it can
be encrypted for the external recipient; while the token directory
(`<data>/hsm/tokens`) is moved away nothing reaches smtp-sink (no plaintext
in any dump; in fact no copy at all) and the message stays queued; once the
token is back it goes out encrypted for the recipient, exactly as written."""

import json
import shutil
import time

from helpers import (arrivals, crlf, inner_entity, openssl_decrypt, plain_message, smime_for, submit,
                     wait_arrivals)
from test_directory import events, make_cert
from test_policy import POLICY, statuses, wait_status

BOB = "bob@ext.example"
MARKER = "TOKEN-OUTAGE-PLAINTEXT-e6b7"


def assert_nothing_for_bob_yet(sink):
    dumps = sink.dumps()
    assert not any(MARKER.encode() in d for d in dumps), "plaintext reached the sink"
    assert not [a for a in arrivals(sink) if BOB in a.rcpts], "a copy for bob left without the token"


def wait_tracking(gw, predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        ev = events(gw, BOB)
        if predicate(ev):
            return ev
        assert time.monotonic() < deadline, f"tracking condition not met in {timeout}s: {json.dumps(ev)[:2000]}"
        time.sleep(0.2)


def kinds(ev):
    return [e["kind"] for e in ev]


def assert_delivered_encrypted_for_bob(sink, tmp_path, inner):
    got = wait_arrivals(sink, {BOB}, timeout=60)
    assert len(got[BOB]) == 1
    for d in sink.dumps():
        assert MARKER.encode() not in d
    raw = got[BOB][0].raw
    assert crlf(openssl_decrypt(tmp_path, raw, tmp_path / "bob.key", tmp_path / "bob.pem")) == inner


def setup(peers, tmp_path):
    sink = peers.sink()
    gw = peers.gateway("gw", sink)
    gw.cli("directory", "import", make_cert(tmp_path, "bob", BOB))
    inner = inner_entity(MARKER)
    message = smime_for(tmp_path, gw.home / "gateway.pem", inner, BOB, "outage")
    return sink, gw, inner, message


def test_token_gone_while_running_defers_until_it_is_back(peers, tmp_path):
    sink, gw, inner, message = setup(peers, tmp_path)
    postfix = peers.postfix(gw)
    tokens = gw.data_dir / "hsm" / "tokens"
    away = tmp_path / "tokens-away"
    shutil.move(str(tokens), str(away))
    try:
        submit(postfix, [BOB], message)
        # Tried at least three times, each deferred: the key store is unavailable.
        ev = wait_tracking(gw, lambda ev: kinds(ev).count("deferred") >= 3)
        assert "key store is unavailable" in json.dumps(ev)
        assert "delivered" not in kinds(ev)
        wait_status(gw, lambda e: statuses(e).get(BOB) == "deferred", timeout=60)
        assert_nothing_for_bob_yet(sink)
    finally:
        shutil.move(str(away), str(tokens))
    # The token is back: the next retry opens it and encrypts it for bob.
    assert_delivered_encrypted_for_bob(sink, tmp_path, inner)
    wait_status(gw, lambda e: not e, timeout=60)


def test_token_missing_at_start_defers_until_it_is_back(peers, tmp_path):
    sink, gw, inner, message = setup(peers, tmp_path)
    tokens = gw.data_dir / "hsm" / "tokens"
    away = tmp_path / "tokens-away"
    gw.stop()
    shutil.move(str(tokens), str(away))
    try:
        gw.start()
        postfix = peers.postfix(gw)
        submit(postfix, [BOB], message)
        # The first decision, whichever it is, within the bound.
        ev = wait_tracking(gw, lambda ev: {"deferred", "delivered", "bounced"} & set(kinds(ev)))
        assert_nothing_for_bob_yet(sink)
        assert "delivered" not in kinds(ev), ev
        wait_tracking(gw, lambda ev: kinds(ev).count("deferred") >= 2)
        assert statuses(wait_status(gw, lambda e: bool(e), timeout=60)).get(BOB) == "deferred"
        assert_nothing_for_bob_yet(sink)
        # Two more tries of the key store (every 15 s): the outage is
        # logged once, not on every try.
        time.sleep(31)
        log = gw.log_path.read_text(errors="replace")
        assert log.count("key store unavailable") == 1, log[-3000:]
        assert "not reachable at start" not in log
    finally:
        if away.exists():
            shutil.move(str(away), str(tokens))
    # No restart: the gateway tries the key store again on its own
    # (every 15 s) and the retried message then goes out encrypted.
    assert_delivered_encrypted_for_bob(sink, tmp_path, inner)


SIGNED = "signed@ext.example"


def test_token_gone_then_sighup_defers_what_needs_the_token(peers, tmp_path):
    """Found by fault injection: with the token's storage gone, a SIGHUP
    (systemctl reload) reloaded the keys as "not set up", and from then on
    mail encrypted for the gateway left unopened and mail to be signed
    left unsigned, even after the token was back. A token error at load
    time is never "no keys": both wait, and go out right once the token
    is back, without a second SIGHUP."""
    import signal

    sink = peers.sink()
    policy = {**POLICY, "address": {SIGNED: {"sign": True}}}
    gw = peers.gateway("gw", sink, policy=policy)
    gw.cli("directory", "import", make_cert(tmp_path, "bob", BOB))
    inner = inner_entity(MARKER)
    message = smime_for(tmp_path, gw.home / "gateway.pem", inner, BOB, "outage")
    tokens = gw.data_dir / "hsm" / "tokens"
    away = tmp_path / "tokens-away"
    shutil.move(str(tokens), str(away))
    try:
        gw.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "SIGHUP" not in gw.log_path.read_text(errors="replace"):
            assert time.monotonic() < deadline, "the daemon did not log the SIGHUP"
            time.sleep(0.2)
        time.sleep(1)
        postfix = peers.postfix(gw)
        submit(postfix, [BOB], message)
        submit(postfix, [SIGNED], plain_message(b"Content-Type: text/plain\r\n\r\nsign me\r\n", SIGNED, "to sign"))
        for rcpt in (BOB, SIGNED):
            deadline = time.monotonic() + 60
            while [e["kind"] for e in events(gw, rcpt)].count("deferred") < 2:
                assert time.monotonic() < deadline, f"{rcpt}: not deferred twice: {events(gw, rcpt)}"
                time.sleep(0.3)
        assert not arrivals(sink), "mail that needs the token left while the token was gone"
    finally:
        shutil.move(str(away), str(tokens))
    # No second SIGHUP: the key store is tried again on its own.
    got = wait_arrivals(sink, {BOB, SIGNED}, timeout=90)
    raw = got[BOB][0].raw
    assert crlf(openssl_decrypt(tmp_path, raw, tmp_path / "bob.key", tmp_path / "bob.pem")) == inner
    signed = got[SIGNED][0]
    assert signed.parsed.get_content_type() == "multipart/signed", signed.parsed.get_content_type()
    assert MARKER.encode() not in b"".join(sink.dumps())
