"""DSN status codes from typed reasons (issue 13), read in the delivery
status notifications a real run writes: each reason that reaches a DSN
carries its RFC 3463 code; nothing is recovered by parsing text."""

import re
import shutil

from smtp_conftest import send_message, wait_outbox
from smtp_capture import CaptureSink
from harness import free_port
from test_policy import POLICY, SENDER, msg
from test_unwrap import encrypt_for, provisioned_gateway


def notices(messages: list[bytes], action: str) -> list[bytes]:
    return [m for m in messages if f"Action: {action}".encode() in m]


def status_of(notice: bytes) -> list[str]:
    return [s.decode() for s in re.findall(rb"(?m)^Status: (\S+)", notice)]


def wait_notice(gw, action: str, marker: bytes, timeout: float = 30.0) -> bytes:
    got = wait_outbox(gw, lambda m: any(marker in x for x in notices(m, action)), timeout=timeout)
    return [x for x in notices(got, action) if marker in x][0]


def test_policy_refusal_is_5_7_1(gateway_factory):
    gw = gateway_factory({"policy": POLICY})
    send_message(gw.port, SENDER, ["bob@ext.example"],
                 msg("tool", extra="Content-Type: multipart/mixed; boundary=b\r\n",
                     body="--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; "
                          "filename=\"tool.exe\"\r\n\r\nMZ\r\n--b--"))
    notice = wait_notice(gw, "failed", b"tool")
    assert status_of(notice) == ["5.7.1"], notice


def test_held_for_want_of_a_key_is_4_7_5_then_5_7_5(gateway_factory):
    gw = gateway_factory({"policy": POLICY, "delivery": {"hold_lifetime_secs": 3}})
    send_message(gw.port, SENDER, ["dan@bank.example"], msg("[secure] figures", "the figures"))
    delayed = wait_notice(gw, "delayed", b"figures")
    assert status_of(delayed) == ["4.7.5"], delayed
    failed = wait_notice(gw, "failed", b"figures", timeout=60)
    assert status_of(failed) == ["5.7.5"], failed
    assert b"the figures" not in failed


def test_next_hop_codes_are_kept_and_the_queue_lifetime_is_5_4_7(gateway_factory):
    sink = CaptureSink(free_port())
    sink.policy.rcpt_rules = [("nosuch@", "550 5.1.1 no such user here")]
    sink.start()
    dead = free_port()
    try:
        gw = gateway_factory({"delivery": {
            "mode": "smarthost", "smarthost": f"127.0.0.1:{sink.port}",
            "routes": {"slow.example": f"127.0.0.1:{dead}"},
            "queue_lifetime_secs": 3, "retry_initial_secs": 1, "retry_max_secs": 1}})
        # The notices go by the smart host too (the sender's domain has no route of its own).
        def notice_at_sink(marker: bytes, timeout: float = 30.0) -> bytes:
            got = sink.wait_for(lambda ts: any(b"Action: failed" in t.data and marker in t.data for t in ts),
                                timeout=timeout)
            return [t.data for t in got if b"Action: failed" in t.data and marker in t.data][0]

        send_message(gw.port, SENDER, ["nosuch@ext.example"], msg("unknown user"))
        refused = notice_at_sink(b"unknown user")
        assert status_of(refused) == ["5.1.1"], refused
        assert b"Diagnostic-Code: smtp; 550 5.1.1 no such user here" in refused
        send_message(gw.port, SENDER, ["anyone@slow.example"], msg("never reached"))
        expired = notice_at_sink(b"never reached", timeout=60)
        assert status_of(expired) == ["5.4.7"], expired
    finally:
        sink.stop()


def test_undecryptable_is_5_7_5_and_unprocessable_is_5_6_0(tmp_path):
    gw = provisioned_gateway(tmp_path)
    gw.start()
    try:
        message = encrypt_for(tmp_path, tmp_path / "gateway.pem", "z" * 2000, "bob@ext.example", "broken one")
        head, _, body = message.partition(b"\r\n\r\n")
        lines = body.split(b"\r\n")
        lines[len(lines) // 2] = b"A" * len(lines[len(lines) // 2])
        send_message(gw.port, SENDER, ["bob@ext.example"], head + b"\r\n\r\n" + b"\r\n".join(lines))
        broken = wait_notice(gw, "failed", b"broken one")
        assert status_of(broken) == ["5.7.5"], broken
        deep = (f"From: {SENDER}\r\nSubject: too deep\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
                + "".join(f"--b{i}\r\nContent-Type: multipart/mixed; boundary=b{i + 1}\r\n\r\n" for i in range(60)))
        send_message(gw.port, SENDER, ["bob@ext.example"], deep)
        unprocessable = wait_notice(gw, "failed", b"too deep")
        assert status_of(unprocessable) == ["5.6.0"], unprocessable
    finally:
        gw.stop()


def test_token_unavailable_is_4_7_5(tmp_path):
    gw = provisioned_gateway(tmp_path, {"delivery": {"delay_warning_secs": 2, "retry_initial_secs": 1,
                                                      "retry_max_secs": 1}})
    tokens = gw.data_dir / "hsm" / "tokens"
    away = tmp_path / "tokens-away"
    message = encrypt_for(tmp_path, tmp_path / "gateway.pem", "waiting", "bob@ext.example", "needs the token")
    shutil.move(str(tokens), str(away))
    gw.start()
    try:
        send_message(gw.port, SENDER, ["bob@ext.example"], message)
        delayed = wait_notice(gw, "delayed", b"needs the token", timeout=60)
        assert status_of(delayed) == ["4.7.5"], delayed
        assert b"waiting" not in delayed
    finally:
        gw.stop()
        shutil.move(str(away), str(tokens))
