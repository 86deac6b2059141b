"""A full disk, found by fault injection against a release build (issue 12):
failed spool writes left their temp files behind, the free-space check was
cached so fast senders filled the disk to zero, one ENOSPC left sled
failing every later write until a restart, and a read error could make a
worker spin. Here the data directory is a small tmpfs filled to the last
byte while a message is being retried: the gateway answers 452 (never 250
for what it cannot keep), its verbs keep answering, it does not spin, and
once the disk has room again it works again without a restart: the state
store is reopened, new mail is accepted, everything queued is delivered
and no stale state is left."""

import errno
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import send_message
from harness import Gateway, SmtpDialogue, free_port
from smtp_capture import CaptureSink


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m,mode=0755", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"this test mounts a tmpfs and needs root: {done.stderr}"
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(path: Path) -> None:
    """Writes `path` until the file system has no byte left."""
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 12, 1):
            chunk = b"\0" * size
            while True:
                try:
                    f.write(chunk)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def try_send(port: int, subject: str) -> str:
    """One transaction; returns the first reply that is not positive, or
    the final reply."""
    d = SmtpDialogue(port)
    try:
        d.reply()
        d.cmd("EHLO c.test", "250")
        for line in ("MAIL FROM:<a@example.org>", "RCPT TO:<b@example.net>", "DATA"):
            d.send(line + "\r\n")
            reply = d.reply()
            if not reply.startswith(("250", "354")):
                return reply
        d.send(f"Subject: {subject}\r\n\r\n{('x' * 70 + chr(13) + chr(10)) * 30}\r\n.\r\n")
        return d.reply()
    finally:
        d.close()


def test_full_disk_is_survived_without_a_restart(small_disk, tmp_path):
    sink_port = free_port()
    data = small_disk / "data"
    gw = Gateway(tmp_path / "gw", {
        "data_dir": str(data),
        "smtp": {"max_message_size": 1 << 20},
        # Nobody listens yet: the first message is retried every second.
        "delivery": {"mode": "smarthost", "smarthost": f"127.0.0.1:{sink_port}",
                     "retry_initial_secs": 1, "retry_max_secs": 1},
    })
    with gw:
        send_message(gw.port, "a@example.org", ["b@example.net"], "Subject: before\r\n\r\nqueued first\r\n")
        filler = small_disk / "filler"
        fill(filler)
        try:
            # Retries write tracking events and queue state into a full disk.
            time.sleep(4)
            replies = [try_send(gw.port, f"while-full-{i}") for i in range(5)]
            assert all(r.startswith("452") for r in replies), replies
            # The verbs answer (a listing or a clear error), and nothing spins.
            listing = gw.cli("queue", "list", check=False)
            assert listing.returncode in (0, 1), listing
            tracked = gw.cli("track", "--to", "b@example.net", check=False)
            assert tracked.returncode in (0, 1), tracked
            before = cpu_seconds(gw.proc.pid)
            time.sleep(5)
            used = cpu_seconds(gw.proc.pid) - before
            assert used < 2.5, f"the daemon used {used:.1f} s of CPU in 5 s with a full disk"
            assert not list((data / "spool" / "tmp").iterdir()), "failed spool writes left temp files"
        finally:
            filler.unlink()
        # Room again: the next-hop comes up and the gateway just works.
        sink = CaptureSink(sink_port).start()
        try:
            assert "No space left on device" in gw.log_path.read_text(errors="replace"), \
                "the fault did not reach the state store; the test proves nothing"
            deadline = time.monotonic() + 60
            while not (reply := try_send(gw.port, "after")).startswith("250"):
                assert time.monotonic() < deadline, f"mail still refused with room on the disk: {reply}"
                time.sleep(0.5)
            got = sink.wait_for(lambda t: {b"queued first" in m.data for m in t} == {True, False} or len(t) >= 2,
                                timeout=60)
            bodies = b"".join(m.data for m in got)
            assert b"queued first" in bodies and b"Subject: after" in bodies, bodies[:500]
            deadline = time.monotonic() + 30
            while True:
                entries = json.loads(gw.cli("queue", "list", "--json").stdout)
                if not entries:
                    break
                assert time.monotonic() < deadline, f"stale queue state after recovery: {entries}"
                time.sleep(0.5)
            # What happened while the store was failing is tracked too.
            events = json.loads(gw.cli("track", "--to", "b@example.net", "--json").stdout)
            delivered = [e for e in events if e["kind"] == "delivered"]
            assert len({e["queue_id"] for e in delivered}) == 2, events
            assert not list((data / "spool" / "tmp").iterdir())
        finally:
            sink.stop()
