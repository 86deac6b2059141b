"""Key discovery benchmark (issue 16): prints a table; no asserts on time.

    SEALGATE_BIN=target/release/sealgate python3 tests/trust/bench_discovery.py [N] [ROUNDS]

One gateway in one run, delivering by MX through the trust suite's small
Internet (tests/trust/conftest.py's World: Knot serving DNSSEC-signed
zones behind a validating Unbound, an HTTPS server with certificates from
a test CA the gateway trusts) to Postfix's smtp-sink on loopback port 25,
real SMTP. Every bench domain is encrypt-required, so every counted
message leaves OpenPGP-encrypted (never in clear). Cells, ROUNDS times
(default 3) in this order, N messages each (default 3000):

(a) to 20 recipients at dir.test whose keys were imported into the
    directory (`sealgate directory import`);
(b) to 20 recipients at wkd.test whose keys are not in the directory but
    published by WKD (advanced method, openpgpkey.wkd.test over HTTPS);
    before the first round one warm-up message each, so discovery has
    found and stored them (warm cache). That no WKD request is made during
    the cells is checked and printed;
(c) the (a) messages while a discovery peer is slow: a WKD server
    (openpgpkey.slow.test) that answers only after 5 s; 40 submissions
    spread evenly between them go to new addresses at slow.test (a fresh
    5 s lookup each: more than the discovery concurrency of 8 lookups at
    once, so slow lookups run through the whole cell). Only dir.test
    deliveries are counted (slow.test has its own MX and sink), and the
    slow mail is drained before the next round.

Interleaving rounds spreads drift of a shared machine over all cells; the
table sums each cell's rounds and lists the per-round rates (their spread
is the run's noise). Rate = counted messages from the first submission
until the sink has them all, per second; 20 SMTP sessions (one connection
each, transactions back to back). CPU = the gateway's user + system time
per counted message (/proc/PID/stat), which other load barely moves.
Needs root (smtp-sink on port 25) and knot, ldnsutils, unbound, postfix,
gnupg (scripts/test-trust installs them). BENCH_KEEP=1 keeps the work dir.
"""

from __future__ import annotations

import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for d in (HERE.parent / "lib", HERE):
    sys.path.insert(0, str(d))

from conftest import SENDER, World  # noqa: E402
from postfix_tls import free_loopback_address  # noqa: E402
from test_discovery import Gpg, wkd_hash  # noqa: E402

DIR, WKD, SLOW = "dir.test", "wkd.test", "slow.test"
RECIPIENTS = 20  # per recipient set
SESSIONS = 20
SLOW_PER_CELL = 40  # (c): this many submissions, spread evenly, go to new slow.test addresses
SLOW_DELAY = 5.0
BODY = ("x" * 70 + "\r\n").encode() * 28  # 2 KB


class Sink:
    """Postfix's smtp-sink on its own loopback address, port 25 (an MX);
    `-c` writes "sess=N quit=N mesg=N" after every message."""

    def __init__(self, tmp: Path, name: str):
        tool = shutil.which("smtp-sink") or "/usr/lib/postfix/sbin/smtp-sink"
        self.address = free_loopback_address(25)
        self.out = tmp / f"{name}.count"
        self.proc = subprocess.Popen([tool, "-u", "nobody", "-c", f"{self.address}:25", "1024"],
                                     stdout=open(self.out, "wb"), stderr=open(tmp / f"{name}.err", "wb"),
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((self.address, 25), timeout=1) as s:
                    s.settimeout(2)
                    if s.recv(512).startswith(b"220"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"smtp-sink on {self.address} did not answer")
            time.sleep(0.05)

    def count(self) -> int:
        with open(self.out, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 200))
            found = re.findall(rb"mesg=(\d+)", f.read())
        return int(found[-1]) if found else 0

    def wait(self, target: int, timeout: float, what: str) -> float:
        """Polls until the sink has `target` messages; the time it saw them."""
        deadline = time.monotonic() + timeout
        while self.count() < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: the sink has {self.count()} of {target} after {timeout:.0f}s")
            time.sleep(0.01)
        return time.monotonic()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def cpu_secs(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def submit(port: int, rcpts: list[str]) -> tuple[float, list[str]]:
    """One message to each address of `rcpts`, spread over SESSIONS
    connections opened beforehand; returns when all are accepted, with the
    time of the first submission and the errors."""
    conns = []
    for _ in range(SESSIONS):
        c = smtplib.SMTP("127.0.0.1", port, timeout=60)
        c.ehlo("bench.example.org")
        conns.append(c)
    errors: list[str] = []

    def session(c: smtplib.SMTP, mine: list[tuple[int, str]]) -> None:
        try:
            for i, rcpt in mine:
                msg = (f"From: <{SENDER}>\r\nTo: <{rcpt}>\r\nSubject: bench {i}\r\n"
                       f"Message-ID: <bench-{i}-{time.time_ns()}@example.org>\r\n\r\n").encode() + BODY
                c.sendmail(SENDER, [rcpt], msg)
            c.quit()
        except (smtplib.SMTPException, OSError) as e:
            errors.append(f"{type(e).__name__}: {e}")

    numbered = list(enumerate(rcpts))
    threads = [threading.Thread(target=session, args=(c, numbered[k::SESSIONS])) for k, c in enumerate(conns)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return start, errors


def cell(gw, sink: Sink, rcpts: list[str], counted: int) -> tuple[float, float]:
    """Sends `rcpts`; (seconds until the sink has `counted` more, gateway
    CPU seconds meanwhile)."""
    base = sink.count()
    cpu0 = cpu_secs(gw.proc.pid)
    start, errors = submit(gw.port, rcpts)
    if errors:
        raise RuntimeError(f"{len(errors)} sessions failed: {errors[:3]}")
    end = sink.wait(base + counted, timeout=min(240.0, 60 + counted / 5), what="cell")
    return end - start, cpu_secs(gw.proc.pid) - cpu0


def load_now() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def requests_to(web, domain: str) -> int:
    return sum(1 for host, _ in web.requests if host == f"openpgpkey.{domain}")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    load_before = load_now()
    per_cell = min(SLOW_PER_CELL, n)
    tmp = Path(tempfile.mkdtemp(prefix="discovery-bench-"))
    tmp.chmod(0o755)
    world = World(tmp)
    sinks: list[Sink] = []
    gpg = Gpg(tmp / "gnupg")
    failed = True
    try:
        fast, slow = Sink(tmp, "fast"), Sink(tmp, "slow")
        sinks += [fast, slow]
        web = world.web_server()
        for domain in (WKD, SLOW):
            cert, key = world.ca.server(f"openpgpkey.{domain}")
            web.certificate(f"openpgpkey.{domain}", cert, key)
        dir_rcpts = [f"d{i:02d}@{DIR}" for i in range(RECIPIENTS)]
        wkd_rcpts = [f"w{i:02d}@{WKD}" for i in range(RECIPIENTS)]
        slow_rcpts = [f"s{i:04d}@{SLOW}" for i in range(per_cell * rounds)]
        print(f"bench: making {2 * RECIPIENTS + len(slow_rcpts)} OpenPGP keys...", file=sys.stderr)
        dir_keys = {}
        for a in dir_rcpts:
            dir_keys[a] = tmp / f"{a}.pgp"
            dir_keys[a].write_bytes(gpg.key_for(a))
        for a in wkd_rcpts:
            web.put(f"openpgpkey.{WKD}", f"/.well-known/openpgpkey/{WKD}/hu/{wkd_hash(a.split('@')[0])}",
                    gpg.key_for(a))
        for a in slow_rcpts:
            web.put(f"openpgpkey.{SLOW}", f"/.well-known/openpgpkey/{SLOW}/hu/{wkd_hash(a.split('@')[0])}",
                    gpg.key_for(a), delay=SLOW_DELAY)
        for domain, sink in ((DIR, fast), (WKD, fast), (SLOW, slow)):
            world.dns.zone(domain, [f"@ MX 10 mx.{domain}.", f"mx A {sink.address}",
                                    f"openpgpkey A {web.address}"])
        world.start()
        gw = world.gateway({
            "smtp": {"max_connections_per_ip": 200},
            "policy": {"domain": {d: {"action": "encrypt-required"} for d in (DIR, WKD, SLOW)}},
            "discovery": {"order": ["wkd"], "timeout_secs": 10},
        }, env={"SEALGATE_LOG": os.environ.get("SEALGATE_LOG", "warn")})
        for a in dir_rcpts:
            gw.cli("directory", "import", str(dir_keys[a]))

        # Warm-up: one message to each recipient of (a) and (b); WKD finds
        # and stores the (b) keys.
        print("bench: warm-up (WKD lookups for the (b) recipients)...", file=sys.stderr)
        base = fast.count()
        _, errors = submit(gw.port, dir_rcpts + wkd_rcpts)
        if errors:
            raise RuntimeError(f"warm-up: {errors[:3]}")
        fast.wait(base + 2 * RECIPIENTS, 120, "warm-up")
        listed = gw.cli("directory", "list").stdout
        found = [a for a in wkd_rcpts if any(a in line and "wkd" in line for line in listed.splitlines())]
        if len(found) != RECIPIENTS:
            raise RuntimeError(f"only {len(found)} of {RECIPIENTS} WKD keys in the directory:\n{listed}")

        warm = [dir_rcpts[i % RECIPIENTS] for i in range(min(n, 2000))]
        cell(gw, fast, warm, len(warm))

        plain = [dir_rcpts[i % RECIPIENTS] for i in range(n)]
        wkd_mail = [wkd_rcpts[i % RECIPIENTS] for i in range(n)]
        every = max(1, n // per_cell)
        names = ["(a) keys in the directory", "(b) keys found by WKD discovery, warm cache",
                 f"(c) as (a), {per_cell} messages interleaved whose WKD lookups take {SLOW_DELAY:.0f} s"]
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        wkd_during_b, slow_notes, slow_next = 0, [], 0
        for r in range(1, rounds + 1):
            print(f"bench: round {r}/{rounds}: (a) {n} messages, keys in the directory...", file=sys.stderr)
            results[names[0]].append(cell(gw, fast, plain, n))
            print(f"bench: round {r}/{rounds}: (b) {n} messages, keys found by WKD (warm cache)...",
                  file=sys.stderr)
            before = requests_to(web, WKD)
            results[names[1]].append(cell(gw, fast, wkd_mail, n))
            wkd_during_b += requests_to(web, WKD) - before
            mixed, interleaved = [], 0
            for i, rcpt in enumerate(plain):
                mixed.append(rcpt)
                if i % every == every // 2 and interleaved < per_cell:
                    mixed.append(slow_rcpts[slow_next])
                    slow_next, interleaved = slow_next + 1, interleaved + 1
            print(f"bench: round {r}/{rounds}: (c) {n} messages as (a), {per_cell} to a WKD peer "
                  f"answering after {SLOW_DELAY:.0f} s...", file=sys.stderr)
            slow_base, slow_asked = slow.count(), requests_to(web, SLOW)
            c_start = time.monotonic()
            results[names[2]].append(cell(gw, fast, mixed, n))
            asked, delivered = requests_to(web, SLOW) - slow_asked, slow.count() - slow_base
            # Drained before the next round, so no slow lookup overlaps (a) or (b).
            drained = slow.wait(slow_base + interleaved, 240, "slow.test mail") - c_start
            slow_notes.append(f"{asked} started, {delivered} delivered; all delivered after {drained:.0f} s")

        ref = sum(x[0] for x in results[names[0]]) / (n * rounds)  # seconds per message in (a)
        print(f"\nKey discovery: {rounds} rounds of (a) (b) (c), {n} messages per cell and round, {SESSIONS} "
              f"sessions, 2 KB, OpenPGP, delivery by MX to smtp-sink ({os.cpu_count()} cores, "
              f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, load average {load_before} before, "
              f"{load_now()} after)\n")
        print("| cell | messages | seconds | msgs/s | ratio to (a) | msgs/s per round | gateway CPU ms/msg |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name in names:
            secs = sum(x[0] for x in results[name])
            cpu = sum(x[1] for x in results[name])
            total = n * len(results[name])
            per_round = " · ".join(f"{n / x[0]:.0f}" for x in results[name])
            print(f"| {name} | {total} | {secs:.2f} | {total / secs:.0f} | {ref * total / secs:.2f} | "
                  f"{per_round} | {cpu * 1000 / total:.2f} |")
        print(f"\nWKD requests during (b): {wkd_during_b}. Slow peer, per round, when (c)'s last counted "
              f"message had arrived: {' | '.join(slow_notes)} (of {per_cell}; discovery concurrency 8).")
        failed = False
    finally:
        if failed:
            print(world.logs(), file=sys.stderr)
        world.stop()
        for s in sinks:
            s.stop()
        subprocess.run(["gpgconf", "--homedir", str(gpg.home), "--kill", "gpg-agent"], capture_output=True)
        if os.environ.get("BENCH_KEEP") == "1":
            print(f"bench: work dir kept: {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
