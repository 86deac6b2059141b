"""Portal benchmark (prints a table; no asserts on time).

    SEALGATE_BIN=target/release/sealgate python3 tests/portal/bench_portal.py [N] [READERS]

1. Store rate: N messages of 10 KB, one recipient each, sent over one SMTP
   connection to an encrypt-required recipient without a key (portal:
   sealed, key wrapped on the SoftHSM token, notification delivered to the
   outbox) and, in the same run, N to one with an imported S/MIME
   certificate (encrypted, delivered to the outbox). Rate = messages from
   the first send until the last outbox file, per second.
2. Readers: READERS concurrent HTTPS clients (one keep-alive connection
   each, one account), each opening a 100 KB message 10 times; latency
   per request (unwrap on the token, open, parse, sanitise, render).
"""

import http.client
import os
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
        smime = store_rate(gw, "bob@partner.example", n)
        portal = store_rate(gw, "dan@partner.example", n)
        smime2 = store_rate(gw, "bob@partner.example", n)
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
        latencies: list[float] = []
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
            barrier.wait(timeout=120)
            mine = []
            for _ in range(10):
                t = time.perf_counter()
                conn.request("GET", f"/message/{msg_id}", headers={"Cookie": cookie})
                resp = conn.getresponse()
                resp.read()
                mine.append(time.perf_counter() - t)
                if resp.status != 200:
                    with lock:
                        errors.append(str(resp.status))
            conn.close()
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(readers)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - start
        lat = sorted(latencies)
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
        cores = os.cpu_count()
        print(f"\n| measure ({cores} cores, {n} messages, {readers} readers) | value |")
        print("| --- | ---: |")
        print(f"| S/MIME delivery, 10 KB, msg/s (before) | {smime:.1f} |")
        print(f"| portal store + notification, 10 KB, msg/s | {portal:.1f} |")
        print(f"| S/MIME delivery, 10 KB, msg/s (after) | {smime2:.1f} |")
        print(f"| portal / mean S/MIME | {portal / ((smime + smime2) / 2):.2f}x |")
        print(f"| readers: requests | {len(lat)} ({len(errors)} errors) |")
        print(f"| readers: p50 ms | {p(0.50):.1f} |")
        print(f"| readers: p99 ms | {p(0.99):.1f} |")
        print(f"| readers: mean ms | {statistics.mean(lat) * 1000:.1f} |")
        print(f"| readers: requests/s | {len(lat) / wall:.0f} |")
    finally:
        gw.stop()


if __name__ == "__main__":
    main()
