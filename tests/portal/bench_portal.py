"""Portal benchmark (prints a table; no asserts on time).

    SEALGATE_BIN=target/release/sealgate python3 tests/portal/bench_portal.py [N] [READERS] [THINK] [ROUNDS]

1. Store rate: N messages of 10 KB, one recipient each, sent over one SMTP
   connection to an encrypt-required recipient without a key (portal:
   sealed, key wrapped on the SoftHSM token, notification delivered to the
   outbox) and, in the same run, N to one with an imported S/MIME
   certificate (encrypted, delivered to the outbox). Rate = messages from
   the first send until the last outbox file, per second. ROUNDS (default
   3) portal runs, each between two S/MIME runs (S, P, S, P, S, ...): a
   portal run is compared with the mean of its neighbours, so a machine
   that slows down or speeds up during the bench shifts both sides; the
   table gives each round's ratio and their median.
2. Readers: READERS logged-in readers (one keep-alive HTTPS connection
   each, from its own loopback address, one account) opening a 100 KB
   message; latency per request (session, unwrap on the token, open,
   parse, render, TLS), in two runs:
   - paced, for 20 s: like people reading, each reader waits a random
     time (exponential, mean THINK seconds, default 1) before each
     opening, so together they ask for about READERS/THINK pages a second;
   - back to back: each reader opens the message 10 times, the next the
     moment the last arrived. This measures the most the portal serves
     (requests/s, from the first request to the last answer); latency
     there is about READERS / throughput (Little's law) whatever a
     request costs, and the Python client on the same cores is part of
     what limits it.
N = 0 runs the readers only.
"""

import http.client
import os
import random
import smtplib
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for d in (HERE.parent / "lib", HERE.parent / "web", HERE.parent / "policy", HERE):
    sys.path.insert(0, str(d))

from harness import free_port  # noqa: E402
from hsm_token import token_gateway  # noqa: E402
from portaltools import PASSWORD, code_from, outbox_mail  # noqa: E402
from webtools import Client  # noqa: E402


def make_cert(tmp: Path, name: str, email: str) -> str:
    import subprocess
    key, crt = tmp / f"{name}.key", tmp / f"{name}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(crt), "-days", "30", "-subj", f"/CN={name}",
                    "-addext", "keyUsage=critical,keyEncipherment",
                    "-addext", "extendedKeyUsage=emailProtection",
                    "-addext", "basicConstraints=critical,CA:FALSE",
                    "-addext", f"subjectAltName=email:{email}"], check=True, capture_output=True)
    return str(crt)


def message(rcpt: str, n: int, size: int) -> bytes:
    line = ("x" * 70 + "\r\n").encode()
    body = line * (size // len(line))
    return (f"From: alice@example.org\r\nTo: {rcpt}\r\nSubject: bench {n}\r\n"
            f"Message-ID: <bench-{n}-{time.time_ns()}@example.org>\r\n\r\n").encode() + body


def store_rate(gw, rcpt: str, n: int) -> float:
    before = len(list(gw.outbox.glob("*.eml"))) if gw.outbox.exists() else 0
    start = time.monotonic()
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=60) as s:
        for i in range(n):
            s.sendmail("alice@example.org", [rcpt], message(rcpt, i, 10_000))
    while len(list(gw.outbox.glob("*.eml"))) < before + n:
        time.sleep(0.05)
    return n / (time.monotonic() - start)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    readers = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    think = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    tmp = Path(tempfile.mkdtemp(prefix="portal-bench-"))
    port = free_port()
    gw = token_gateway(tmp / "gw", {
        "relay": {"domains": ["example.org"], "internal_networks": ["127.0.0.0/8"]},
        "policy": {"domain": {"partner.example": {"action": "encrypt-required"}}},
        "portal": {"listen": [f"127.0.0.1:{port}"], "enabled": True, "url": f"https://127.0.0.1:{port}"},
        "delivery": {"mode": "outbox", "concurrency": 16},
    })
    gw.portal_port = port
    gw.start()
    try:
        gw.cli("directory", "import", make_cert(tmp, "bob", "bob@partner.example"))
        # N = 0: the readers only.
        smime = [store_rate(gw, "bob@partner.example", n)] if n else []
        portal = []
        for _ in range(rounds if n else 0):
            portal.append(store_rate(gw, "dan@partner.example", n))
            smime.append(store_rate(gw, "bob@partner.example", n))
        # One account, one 100 KB message.
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=60) as s:
            s.sendmail("alice@example.org", ["reader@partner.example"],
                       message("reader@partner.example", 0, 100_000))
        seen: set = set()
        outbox_mail(gw, "reader@partner.example", lambda m: "Secure message" in str(m["Subject"]), seen=seen)
        c = Client(port)
        c.post("/code", {"address": "reader@partner.example"})
        r = c.post("/enrol", {"address": "reader@partner.example",
                              "code": code_from(gw, "reader@partner.example", seen),
                              "password": PASSWORD, "password2": PASSWORD})
        assert r.status == 303, r.body[:300]
        import re
        msg_id = re.search(r'href="/message/([0-9a-f]{32})"', c.get("/inbox").body).group(1)
        cookie = "__Host-sealgate-portal=" + c.cookies["__Host-sealgate-portal"]

        def readers_run(think: float) -> tuple[list[float], int, float]:
            """READERS readers opening the message: paced (`think` > 0),
            each waits an exponential time of mean `think` s before each
            opening, for 20 s; back to back, 10 openings each.
            Answers the sorted latencies, the errors and the time from the
            first request to the last answer."""
            latencies: list[float] = []
            spans: list[tuple[float, float]] = []
            errors: list[str] = []
            lock = threading.Lock()
            barrier = threading.Barrier(readers)

            def reader(i: int) -> None:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                # Each reader from its own loopback address: the listener
                # allows 32 connections per address, as in production.
                source = (f"127.1.{i // 250}.{i % 250 + 1}", 0)
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=60,
                                                   source_address=source)
                conn.connect()
                rng = random.Random(i)
                barrier.wait(timeout=120)
                mine = []
                first = None
                end = time.perf_counter() + 20
                for n in range(10**6):
                    if think > 0:
                        time.sleep(rng.expovariate(1 / think))
                        if time.perf_counter() > end:
                            break
                    elif n == 10:
                        break
                    t = time.perf_counter()
                    first = first or t
                    conn.request("GET", f"/message/{msg_id}", headers={"Cookie": cookie})
                    resp = conn.getresponse()
                    resp.read()
                    mine.append(time.perf_counter() - t)
                    if resp.status != 200:
                        with lock:
                            errors.append(str(resp.status))
                last = min(time.perf_counter(), end)
                conn.close()
                with lock:
                    latencies.extend(mine)
                    spans.append((first, last))

            threads = [threading.Thread(target=reader, args=(i,)) for i in range(readers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            window = max(e for _, e in spans) - min(s for s, _ in spans)
            return sorted(latencies), len(errors), window

        runs = [("paced", readers_run(think)), ("back to back", readers_run(0))]
        cores = os.cpu_count()
        print(f"\n| measure ({cores} cores, {n} messages, {readers} readers) | value |")
        print("| --- | ---: |")
        if portal:
            ratios = [p / ((smime[i] + smime[i + 1]) / 2) for i, p in enumerate(portal)]
            print(f"| S/MIME delivery, 10 KB, msg/s (each run) | {', '.join(f'{r:.0f}' for r in smime)} |")
            print(f"| portal store + notification, 10 KB, msg/s (each run) | {', '.join(f'{r:.0f}' for r in portal)} |")
            print(f"| portal / mean of the S/MIME runs beside it | {', '.join(f'{r:.2f}x' for r in ratios)} |")
            print(f"| portal / S/MIME, median of {len(ratios)} | {statistics.median(ratios):.2f}x |")
        for name, (lat, errors, wall) in runs:
            p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731,B023
            label = f"readers {name}" + (f" (think {think:g} s)" if name == "paced" else "")
            print(f"| {label}: requests | {len(lat)} ({errors} errors) |")
            print(f"| {label}: p50 ms | {p(0.50):.1f} |")
            print(f"| {label}: p99 ms | {p(0.99):.1f} |")
            print(f"| {label}: max ms | {lat[-1] * 1000:.1f} |")
            print(f"| {label}: requests/s | {len(lat) / wall:.0f} |")
    finally:
        gw.stop()


if __name__ == "__main__":
    main()
