"""Crash test: no acknowledged message is ever lost.

10,000 messages go in over 50 concurrent SMTP sessions while the daemon is
killed with SIGKILL every 2 ± 1 s (random, seeded) and restarted at once.
Sealgate relays to Postfix's `smtp-sink`, which dumps every message it
receives to its own file. Each message carries a unique marker; a client
records a message only when it got `250` after the final dot. A client whose
connection dies mid-transaction reconnects and sends the next message (the
interrupted one does not count: it was never acknowledged).

After the sending, the daemon is killed and restarted once more, the queue
must drain (bounded), and then every acknowledged marker must be in the
sink's dumps at least once. Duplicates are allowed (at-least-once delivery)
and reported, with the throughput.

Knobs (environment): SEALGATE_BIN (see tests/lib/harness.py), CRASH_MESSAGES
(10000), CRASH_SESSIONS (50), CRASH_SEED (20261128), CRASH_SEND_TIMEOUT (seconds,
default 200), CRASH_DRAIN_TIMEOUT (120), CRASH_RATE (offered msgs/s, 300).
"""

import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from harness import Gateway, free_port  # noqa: E402

MESSAGES = int(os.environ.get("CRASH_MESSAGES", "10000"))
SESSIONS = int(os.environ.get("CRASH_SESSIONS", "50"))
SEED = int(os.environ.get("CRASH_SEED", "20261128"))
SEND_TIMEOUT = float(os.environ.get("CRASH_SEND_TIMEOUT", "200"))
DRAIN_TIMEOUT = float(os.environ.get("CRASH_DRAIN_TIMEOUT", "120"))
# Offered load cap: a fast machine would otherwise send all messages between
# two kills; at 300 msgs/s the sending spans about 33 s, about 16 crashes.
RATE = float(os.environ.get("CRASH_RATE", "300"))
KILL_MIN, KILL_MAX = 1.0, 3.0  # every 2 ± 1 s
MARKER = re.compile(rb"^X-Crash-Marker: (\d+)\r?$", re.MULTILINE)
SEALGATE_ID = re.compile(rb"\(Sealgate\) with \w+ id ([0-9A-F]{20})")
FILLER = "".join(f"line {i:02d} of the crash test body, padding it to about one kilobyte\r\n" for i in range(14))


def smtp_sink_path() -> str:
    for candidate in (shutil.which("smtp-sink"), "/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("smtp-sink not found: install the postfix package (scripts/test does)")


class Sink:
    """Postfix's smtp-sink writing one dump file per received message."""

    def __init__(self):
        # smtp-sink drops root privileges (-u nobody), so its dump directory
        # must be reachable and writable by that user: not under pytest's 0700 tmp.
        self.dir = Path(tempfile.mkdtemp(prefix="sealgate-crash-sink-"))
        self.dir.chmod(0o777)
        self.port = free_port()
        cmd = [smtp_sink_path()]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]
        cmd += ["-d", f"{self.dir}/%H%M%S.", f"127.0.0.1:{self.port}", "1024"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.settimeout(2)
                    if s.recv(512).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("smtp-sink did not start")

    def files(self) -> list[Path]:
        return [p for p in self.dir.iterdir() if p.is_file()]

    def markers(self) -> dict[int, int]:
        """marker -> how many times it was received."""
        seen: dict[int, int] = {}
        for path in self.files():
            for m in MARKER.finditer(path.read_bytes()):
                n = int(m.group(1))
                seen[n] = seen.get(n, 0) + 1
        return seen

    def sealgate_queue_ids(self) -> set[str]:
        """Queue ids from Sealgate's Received: headers in the dumps."""
        ids: set[str] = set()
        for path in self.files():
            ids.update(m.decode() for m in SEALGATE_ID.findall(path.read_bytes()))
        return ids

    def settle(self, timeout: float = 10.0) -> None:
        """Waits until no new dump file appears for a second (bounded)."""
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            count = len(self.files())
            if count == last:
                return
            last = count
            time.sleep(1.0)

    def stop(self, keep: bool = False) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if keep:
            print(f"smtp-sink dumps kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


class Counter:
    """Hands out message numbers 0..total-1 to the client threads."""

    def __init__(self, total: int, rate: float):
        self.next = 0
        self.total = total
        self.rate = rate
        self.start = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> int | None:
        """The next message number, once its send time (n / rate) has come."""
        with self.lock:
            if self.next >= self.total:
                return None
            n = self.next
            self.next += 1
        delay = self.start + n / self.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return n


class Client(threading.Thread):
    """One SMTP session at a time, reconnecting whenever the daemon dies."""

    def __init__(self, port: int, counter: Counter, deadline: float):
        super().__init__(daemon=True)
        self.port = port
        self.counter = counter
        self.deadline = deadline
        self.acked: list[int] = []
        self.interrupted = 0  # transactions cut by a crash (not acknowledged)
        self.refused = 0  # transactions answered with an error reply
        self.sock: socket.socket | None = None
        self.buf = b""

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.buf = b""

    def reply(self) -> str:
        assert self.sock is not None
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("connection closed")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            text = line.decode(errors="replace").rstrip("\r")
            if len(text) < 4 or text[3] != "-":
                return text

    def connect(self) -> None:
        """Connects and greets; retries (bounded by the deadline) while the daemon restarts."""
        while time.monotonic() < self.deadline:
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                self.sock.settimeout(60)
                if not self.reply().startswith("220"):
                    raise ConnectionError("no 220 greeting")
                self.sock.sendall(b"EHLO crash-client.test\r\n")
                if not self.reply().startswith("250"):
                    raise ConnectionError("EHLO refused")
                return
            except OSError:
                self.close()
                time.sleep(0.05)
        raise TimeoutError("could not reconnect before the deadline")

    def send_one(self, n: int) -> None:
        assert self.sock is not None
        message = (
            f"From: <crash@example.org>\r\nTo: <sink@example.net>\r\n"
            f"Subject: crash test message {n}\r\nMessage-ID: <crash-{SEED}-{n}@example.org>\r\n"
            f"X-Crash-Marker: {n}\r\n\r\n{FILLER}"
        )
        # PIPELINING: the envelope and DATA in one write.
        self.sock.sendall(b"MAIL FROM:<crash@example.org>\r\nRCPT TO:<sink@example.net>\r\nDATA\r\n")
        replies = [self.reply(), self.reply(), self.reply()]
        if not (replies[0].startswith("250") and replies[1].startswith("250") and replies[2].startswith("354")):
            self.refused += 1
            if replies[2].startswith("354"):
                self.sock.sendall(b".\r\n")
                self.reply()
            self.sock.sendall(b"RSET\r\n")
            self.reply()
            return
        self.sock.sendall(message.encode() + b".\r\n")
        final = self.reply()
        if final.startswith("250"):
            self.acked.append(n)
        else:
            self.refused += 1

    def run(self) -> None:
        n = self.counter.take()
        while n is not None and time.monotonic() < self.deadline:
            try:
                if self.sock is None:
                    self.connect()
                self.send_one(n)
            except TimeoutError:
                return
            except OSError:
                # Killed mid-transaction: this one is not acknowledged; go on with the next.
                self.interrupted += 1
                self.close()
            n = self.counter.take()
        self.close()


def queue_is_empty(gw: Gateway) -> bool:
    result = gw.cli("queue", "list", check=False)
    return result.returncode == 0 and "Queue is empty." in result.stdout


def test_no_acknowledged_message_is_lost_under_sigkill(tmp_path):
    sink = Sink()
    gw = Gateway(
        tmp_path / "gw",
        settings={
            "smtp": {"max_connections_per_ip": 4 * SESSIONS + 20, "max_connections": 4 * SESSIONS + 100},
            "delivery": {
                "mode": "smarthost",
                "smarthost": f"127.0.0.1:{sink.port}",
                "retry_initial_secs": 1,
                "retry_max_secs": 2,
                "timeout_secs": 20,
            },
        },
    )
    rng = random.Random(SEED)
    kills = 0
    passed = False
    try:
        gw.start()
        counter = Counter(MESSAGES, RATE)
        started = counter.start
        clients = [Client(gw.port, counter, started + SEND_TIMEOUT) for _ in range(SESSIONS)]
        for c in clients:
            c.start()
        # The killer: SIGKILL every 2 ± 1 s, restart immediately.
        while any(c.is_alive() for c in clients):
            wake = time.monotonic() + rng.uniform(KILL_MIN, KILL_MAX)
            while time.monotonic() < wake and any(c.is_alive() for c in clients):
                time.sleep(0.05)
            if not any(c.is_alive() for c in clients):
                break
            gw.kill()
            kills += 1
            gw.start()
        send_seconds = time.monotonic() - started
        for c in clients:
            c.join()
        assert counter.next >= MESSAGES, (
            f"sending did not finish in {SEND_TIMEOUT:.0f} s: {counter.next} of {MESSAGES} messages attempted"
        )

        # One more crash and restart, then the queue must drain.
        gw.kill()
        kills += 1
        gw.start()
        drain_started = time.monotonic()
        spool_queue = gw.data_dir / "spool" / "queue"
        spool_empty_since = None
        drained = False
        while time.monotonic() - drain_started < DRAIN_TIMEOUT:
            if queue_is_empty(gw):
                drained = True
                break
            # Every spool file gone but the state still lists messages: give the
            # state 5 s to follow, then stop waiting (reported below).
            if any(spool_queue.iterdir()):
                spool_empty_since = None
            elif spool_empty_since is None:
                spool_empty_since = time.monotonic()
            elif time.monotonic() - spool_empty_since > 5:
                break
            time.sleep(0.5)
        drain_seconds = time.monotonic() - drain_started
        total_seconds = time.monotonic() - started
        sink.settle()

        acked = sorted(n for c in clients for n in c.acked)
        assert len(acked) == len(set(acked)), "a marker was acknowledged twice: the test itself is broken"
        received = sink.markers()
        lost = [n for n in acked if n not in received]
        duplicates = sum(count - 1 for count in received.values() if count > 1)
        unacked_delivered = len(set(received) - set(acked))
        leftovers = sorted(p.name for p in spool_queue.iterdir())
        listing = "" if drained else gw.cli("queue", "list", check=False).stdout
        stale_ids = re.findall(r"^([0-9A-F]{20}) ", listing, re.MULTILINE)
        stale = len(stale_ids)
        stale_delivered = len(set(stale_ids) & sink.sealgate_queue_ids()) if stale_ids else 0
        corrupt = sorted(p.name for p in (gw.data_dir / "spool" / "corrupt").iterdir())
        summary = (
            f"crash test: {MESSAGES} messages, {SESSIONS} sessions, offered {RATE:.0f} msgs/s, seed {SEED}, {kills} SIGKILLs\n"
            f"  acknowledged (250):             {len(acked)}\n"
            f"  interrupted by a crash:         {sum(c.interrupted for c in clients)}\n"
            f"  refused with an error reply:    {sum(c.refused for c in clients)}\n"
            f"  received by the sink (unique):  {len(received)}\n"
            f"  lost (acknowledged, never received): {len(lost)}\n"
            f"  duplicates (extra copies):      {duplicates}\n"
            f"  delivered but never acknowledged: {unacked_delivered}\n"
            f"  spool files left: {len(leftovers)}, quarantined in corrupt/: {len(corrupt)}, "
            f"entries left in `queue list`: {stale} (of which delivered by the sink: {stale_delivered})\n"
            f"  throughput: {len(acked) / send_seconds:.0f} acknowledged msgs/s over {send_seconds:.1f} s of sending; "
            f"{len(received) / total_seconds:.0f} delivered msgs/s end to end ({total_seconds:.1f} s, drain {drain_seconds:.1f} s)"
        )
        print("\n" + summary)
        (tmp_path / "summary.txt").write_text(summary + "\n")
        if lost:
            (tmp_path / "lost.txt").write_text("\n".join(map(str, lost)) + "\n")
        assert not lost, (
            f"{len(lost)} acknowledged messages were never delivered (first: {lost[:20]}); "
            f"daemon log: {gw.log_path}\n{summary}"
        )
        assert acked, "no message was acknowledged at all"
        assert drained, (
            f"queue not empty {drain_seconds:.0f} s after the last restart ({len(leftovers)} spool files, "
            f"{stale} entries in `sealgate queue list`, {stale_delivered} of them delivered by the sink):\n{listing[:2000]}"
        )
        assert not corrupt, f"spool files quarantined: {corrupt[:10]}"
        passed = True
    finally:
        gw.stop()
        sink.stop(keep=not passed)
