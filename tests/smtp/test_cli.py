"""The operator's verbs: `sealgate queue list|show|delete|retry` and
`sealgate track`, against a running daemon (control socket) and with the
daemon stopped (data directory opened directly); and a bad configuration
file refused with exit code 2, naming the key and the line."""

import json
import re
import socket
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import send_message
from harness import Gateway, free_port, sealgate_bin

QUEUE_ID = re.compile(r"^([0-9A-F]{20})  ", re.M)


def queued_ids(gw) -> list[str]:
    return QUEUE_ID.findall(gw.cli("queue", "list").stdout)


def wait(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not met in {timeout}s"
        time.sleep(0.2)


@pytest.fixture
def stuck(gateway_factory):
    """A daemon whose smart host never answers, holding two messages."""
    gw = gateway_factory({"delivery": {"mode": "smarthost", "smarthost": f"127.0.0.1:{free_port()}",
                                       "retry_initial_secs": 300, "retry_max_secs": 300}})
    r1 = send_message(gw.port, "alice@example.org", ["xavier@example.net"], "Subject: cli-one\r\n\r\n1\r\n")
    r2 = send_message(gw.port, "bob@example.org", ["yvonne@example.net", "zoe@example.net"],
                      "Subject: cli-two\r\n\r\n2\r\n")
    ids = [r.split("queued as ")[1].strip() for r in (r1, r2)]
    wait(lambda: gw.cli("queue", "list").stdout.count("deferred: ") == 3, what="3 deferred recipients")
    return gw, ids


def test_queue_verbs_with_daemon_running(stuck):
    gw, (one, two) = stuck
    listing = gw.cli("queue", "list").stdout
    assert sorted(queued_ids(gw)) == sorted([one, two]), listing
    assert "from alice@example.org" in listing and "from bob@example.org" in listing
    assert re.search(r"xavier@example\.net\s+deferred: .*(refused|connect)", listing, re.I), listing
    entries = {e["queue_id"]: e for e in json.loads(gw.cli("queue", "list", "--json").stdout)}
    assert entries[two]["sender"] == "bob@example.org"
    assert [r["address"] for r in entries[two]["recipients"]] == ["yvonne@example.net", "zoe@example.net"]

    show = gw.cli("queue", "show", one).stdout
    assert f"Queue id:  {one}" in show
    assert "Sender:    alice@example.org" in show
    assert "Subject: cli-one" in show
    assert "Received: from client.test" in show
    missing = gw.cli("queue", "show", "0" * 20, check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr, missing

    before = entries[one]["attempts"]
    r = gw.cli("queue", "retry", one)
    assert f"{one}: scheduled for immediate retry" in r.stdout
    wait(lambda: {e["queue_id"]: e for e in json.loads(gw.cli("queue", "list", "--json").stdout)}
         [one]["attempts"] > before, what="retry attempt")

    r = gw.cli("queue", "delete", two)
    assert f"{two}: deleted" in r.stdout
    assert queued_ids(gw) == [one]
    assert not (gw.data_dir / "spool" / "queue" / two).exists()
    events = json.loads(gw.cli("track", "--id", two, "--json").stdout)
    assert sorted(e["kind"] for e in events if e["kind"] == "deleted") == ["deleted", "deleted"]
    again = gw.cli("queue", "delete", two, check=False)
    assert again.returncode != 0 and "not found" in again.stderr


def test_queue_verbs_with_daemon_stopped(stuck):
    gw, (one, two) = stuck
    gw.stop()
    assert not (gw.data_dir / "control.sock").exists()
    assert sorted(queued_ids(gw)) == sorted([one, two])
    assert "Subject: cli-two" in gw.cli("queue", "show", two).stdout
    r = gw.cli("queue", "retry", one)
    assert f"{one}: scheduled for immediate retry" in r.stdout
    entry = [e for e in json.loads(gw.cli("queue", "list", "--json").stdout) if e["queue_id"] == one][0]
    assert entry["next_attempt_ms"] == 0
    r = gw.cli("queue", "delete", two)
    assert f"{two}: deleted" in r.stdout
    assert queued_ids(gw) == [one]
    # the change holds when the daemon comes back
    gw.start()
    assert queued_ids(gw) == [one]
    assert not (gw.data_dir / "spool" / "queue" / two).exists()


def track(gw, *args) -> list[dict]:
    return json.loads(gw.cli("track", *args, "--json").stdout)


def check_track(gw, t0: datetime):
    alice = track(gw, "--from", "alice@")
    assert alice and all(e["sender"] == "alice@example.org" for e in alice), alice
    assert {"received", "delivered"} <= {e["kind"] for e in alice}
    zoe = track(gw, "--to", "zoe@example.net")
    assert zoe and all(e["recipient"] == "zoe@example.net" for e in zoe)
    assert {e["sender"] for e in zoe} == {"bob@example.org"}
    both = track(gw, "--from", "bob@", "--to", "yvonne@")
    assert both and all(e["recipient"] == "yvonne@example.net" for e in both)
    assert track(gw, "--from", "nobody@") == []
    # time ranges: RFC 3339, Unix seconds and ages
    since = (t0 - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(track(gw, "--since", since)) == len(track(gw))
    assert track(gw, "--since", "2100-01-01T00:00:00Z") == []
    assert track(gw, "--until", "1d") == []  # everything is younger than a day
    assert len(track(gw, "--since", "1h")) == len(track(gw))
    lo, hi = int(t0.timestamp()) - 5, int(time.time()) + 5
    window = track(gw, "--since", str(lo), "--until", str(hi))
    assert window and len(window) == len(track(gw))
    assert all(lo * 1000 <= e["time_ms"] <= hi * 1000 for e in window)
    text = gw.cli("track", "--to", "xavier@").stdout
    assert "alice@example.org -> xavier@example.net" in text and "delivered" in text
    assert "No events match." in gw.cli("track", "--since", "2100-01-01T00:00:00Z").stdout
    bad = gw.cli("track", "--since", "yesterday", check=False)
    assert bad.returncode == 2 and "yesterday" in bad.stderr


def test_track_running_and_stopped(gateway):
    t0 = datetime.now(timezone.utc)
    send_message(gateway.port, "alice@example.org", ["xavier@example.net"], "Subject: t1\r\n\r\n1\r\n")
    send_message(gateway.port, "bob@example.org", ["yvonne@example.net", "zoe@example.net"], "Subject: t2\r\n\r\n2\r\n")
    wait(lambda: len([e for e in track(gateway) if e["kind"] == "delivered"]) == 3, what="3 deliveries")
    check_track(gateway, t0)
    gateway.stop()
    check_track(gateway, t0)


BAD_CONFIGS = [
    # (file text, key the message must name, line it must name)
    ('hostname = "gw"\n\n[smtp]\nlisten = ["127.0.0.1:2525"]\nmax_mesage_size = 10\n', "max_mesage_size", 5),
    ('hostname = "gw"\n[smtp]\nmax_message_size = "big"\n', "smtp.max_message_size", 3),
    ('[relay]\ndomains = ["example.org"]\ninternal_networks = ["10.0.0.0/33"]\n', "relay.internal_networks", 3),
    ('node_name = "n"\n[delivery]\nmode = "pigeon"\n', "delivery.mode", 3),
    ('hostname = "gw"\n[smtp]\nlisten = ["localhost"]\n', "smtp.listen", 3),
    # values of the right type that the daemon's own checks refuse
    ('hostname = "gw"\n[smtp]\nmax_message_size = 10\n', "smtp.max_message_size", 3),
    ('hostname = "gw"\n\n[delivery]\nmode = "smarthost"\n', "delivery.smarthost", 4),
    ('[relay]\ndomains = ["bad domain"]\n', "relay.domains", 2),
    ('[delivery]\nretry_initial_secs = 0\n', "delivery.retry_initial_secs", 2),
]


@pytest.mark.parametrize("text,key,line", BAD_CONFIGS, ids=[c[1] + str(i) for i, c in enumerate(BAD_CONFIGS)])
def test_bad_config_exit_2_names_key_and_line(tmp_path, text, key, line):
    path = tmp_path / "bad.toml"
    port = free_port()
    path.write_text(text.replace("127.0.0.1:2525", f"127.0.0.1:{port}"))
    for verb in (["run"], ["check-config"], ["queue", "list"]):
        r = subprocess.run([sealgate_bin(), "--config", str(path), *verb],
                           capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert r.returncode == 2, (verb, r.returncode, r.stderr)
        assert str(path) in r.stderr, r.stderr
        assert f"`{key}`" in r.stderr or f" {key}" in r.stderr, f"key {key} not named: {r.stderr}"
        assert f"line {line}" in r.stderr, f"line {line} not named: {r.stderr.strip()}"
    # the daemon did not start
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert not (tmp_path / "sealgate-data").exists()


def test_good_config_is_reported_ok(tmp_path):
    gw = Gateway(tmp_path / "ok")
    r = gw.cli("check-config")
    assert r.returncode == 0 and "configuration OK" in r.stdout


def test_queue_verbs_after_a_crash_leave_a_stale_socket(stuck):
    """SIGKILL leaves control.sock behind; the verbs must notice nobody
    listens and open the data directory themselves."""
    gw, (one, two) = stuck
    time.sleep(0.5)  # let sled's periodic flush (200 ms) write the state
    gw.kill()
    assert (gw.data_dir / "control.sock").exists()
    r = gw.cli("queue", "list")
    assert sorted(queued_ids(gw)) == sorted([one, two]), r.stdout
    assert "Subject: cli-one" in gw.cli("queue", "show", one).stdout
    gw.start()
    assert sorted(queued_ids(gw)) == sorted([one, two])


def test_offline_queue_list_shows_spooled_messages_without_index(stuck):
    """The spool files are the truth and sled only the index (DESIGN.md):
    with the daemon stopped and the index gone (as after a SIGKILL before
    sled flushed), `sealgate queue list` must still show what the spool
    holds, not "Queue is empty." The daemon itself re-queues them at start."""
    import shutil

    gw, (one, two) = stuck
    gw.stop()
    shutil.rmtree(gw.data_dir / "db")
    listing = gw.cli("queue", "list").stdout
    assert sorted(queued_ids(gw)) == sorted([one, two]), listing
    gw.start()
    assert sorted(queued_ids(gw)) == sorted([one, two])


def test_run_fails_clearly_when_the_port_is_taken(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        gw = Gateway(tmp_path / "busy", port=port)
        r = subprocess.run([sealgate_bin(), "--config", str(gw.config_path), "run"],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr, r.stderr[-1000:]


def test_second_daemon_on_the_same_data_dir_is_refused(gateway):
    other = Gateway(gateway.workdir.parent / "second", {"data_dir": str(gateway.data_dir)})
    r = subprocess.run([sealgate_bin(), "--config", str(other.config_path), "run"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "another sealgate" in r.stderr, r.stderr[-1000:]
    # the first one is unharmed
    assert send_message(gateway.port, "a@example.org", ["b@example.net"], "Subject: still-up\r\n\r\n1\r\n")


def test_data_directory_is_private(gateway):
    """The state store holds message metadata and the key directory: a
    development data dir's db/ was world-readable (0755 and 0644 files)."""
    import os
    import stat

    send_message(gateway.port, "a@example.org", ["b@example.net"], "Subject: x\r\n\r\ny\r\n")
    wait(lambda: gateway.outbox.exists() and list(gateway.outbox.glob("*.eml")), what="delivery")
    db = gateway.data_dir / "db"
    assert stat.S_IMODE(db.stat().st_mode) & 0o077 == 0, oct(db.stat().st_mode)
    for root, dirs, files in os.walk(gateway.data_dir):
        for name in dirs + files:
            mode = stat.S_IMODE((Path(root) / name).lstat().st_mode)
            assert mode & 0o007 == 0, f"{Path(root) / name} is readable by others: {oct(mode)}"


def test_verb_piped_into_head_stops_quietly(tmp_path):
    """`sealgate check-config | head` used to panic with a backtrace when
    head closed the pipe."""
    proc = subprocess.Popen([sealgate_bin(), "check-config"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the verb writes
    _, err = proc.communicate(timeout=30)
    assert b"panicked" not in err and b"Broken pipe" not in err, err.decode(errors="replace")


def test_partial_outbox_files_from_a_crash_are_removed_at_start(tmp_path):
    gw = Gateway(tmp_path / "gw")
    gw.outbox.mkdir(parents=True)
    partial = gw.outbox / ".0123456789ABCDEF0123-s.eml.tmp"
    partial.write_bytes(b"Return-Path: <a@example.org>\r\nSubject: half")
    whole = gw.outbox / "0123456789ABCDEF0124-s.eml"
    whole.write_bytes(b"Return-Path: <a@example.org>\r\n\r\nwhole\r\n")
    with gw:
        assert not partial.exists(), "the partial outbox file was left"
        assert whole.exists(), "a delivered outbox file was removed"
