"""MX delivery against real peers: Unbound serves the zones on loopback,
Postfix's smtp-sink is every mail exchanger. Covers MX preference, implicit
MX (A record only), null MX (RFC 7505) and a non-existent domain, both of
which bounce with an RFC 3464 report that itself travels by MX.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from harness import Gateway, SmtpDialogue, free_port  # noqa: E402

SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"


def wait_for(predicate, timeout=30.0, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(step)
    return predicate()


@pytest.fixture
def dns(tmp_path):
    port = free_port()
    conf = tmp_path / "unbound.conf"
    conf.write_text(f"""
server:
    interface: 127.0.0.1
    port: {port}
    do-ip6: no
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{tmp_path}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 0
    access-control: 127.0.0.0/8 allow
    local-zone: "example.net." static
    local-data: "example.net. IN MX 20 backup.example.net."
    local-data: "example.net. IN MX 10 mx1.example.net."
    local-data: "mx1.example.net. IN A 127.0.0.1"
    local-data: "backup.example.net. IN A 127.0.0.2"
    local-zone: "example.org." static
    local-data: "example.org. IN MX 10 mail.example.org."
    local-data: "mail.example.org. IN A 127.0.0.1"
    local-zone: "amx.test." static
    local-data: "amx.test. IN A 127.0.0.1"
    local-zone: "nullmx.test." static
    local-data: "nullmx.test. IN MX 0 ."
    local-zone: "nope.test." static
""")
    proc = subprocess.Popen([UNBOUND, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Ready when it answers.
    ok = wait_for(lambda: subprocess.run(
        ["python3", "-c", f"import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(0.5);"
         f"s.sendto(bytes.fromhex('abcd01000001000000000000076578616d706c65036e657400000f0001'),('127.0.0.1',{port}));s.recv(512)"],
        capture_output=True).returncode == 0, timeout=20)
    assert ok, "unbound did not start"
    yield port
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def sink(tmp_path):
    port = free_port()
    dump = tmp_path / "sink"
    dump.mkdir()
    os.chmod(dump, 0o777)
    proc = subprocess.Popen(
        [SMTP_SINK, "-u", "root", "-d", f"{dump}/%H%M%S.", f"127.0.0.1:{port}", "64"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    assert wait_for(lambda: _answers(port), timeout=10), "smtp-sink did not start"
    yield port, dump
    proc.terminate()
    proc.wait(timeout=10)


def _answers(port):
    try:
        d = SmtpDialogue(port, timeout=2)
        banner = d.reply()
        d.close()
        return banner.startswith("220")
    except OSError:
        return False


def dumped(dump: Path) -> list[str]:
    return [p.read_text(errors="replace") for p in sorted(dump.iterdir()) if p.is_file()]


def send(gw: Gateway, sender: str, rcpt: str, subject: str) -> None:
    d = SmtpDialogue(gw.port)
    d.reply()
    d.cmd("EHLO client.test", "250")
    d.cmd(f"MAIL FROM:<{sender}>", "250")
    d.cmd(f"RCPT TO:<{rcpt}>", "250")
    d.cmd("DATA", "354")
    d.cmd(f"Subject: {subject}\r\nFrom: <{sender}>\r\nTo: <{rcpt}>\r\n\r\nbody of {subject}\r\n.", "250")
    d.cmd("QUIT", "221")
    d.close()


def test_mx_delivery_implicit_mx_null_mx_and_nxdomain(tmp_path, dns, sink):
    sink_port, dump = sink
    settings = {
        "delivery": {"mode": "mx", "dns_server": f"127.0.0.1:{dns}", "mx_port": sink_port,
                     "timeout_secs": 5},
    }
    with Gateway(tmp_path / "gw", settings) as gw:
        send(gw, "alice@example.org", "bob@example.net", "via-mx-preference")
        send(gw, "alice@example.org", "carol@amx.test", "via-implicit-mx")
        send(gw, "alice@example.org", "dave@nullmx.test", "to-null-mx")
        send(gw, "alice@example.org", "erin@nope.test", "to-nxdomain")

        def have_all():
            texts = dumped(dump)
            return len(texts) >= 4 and texts
        texts = wait_for(have_all, timeout=60)
        assert texts, f"sink got {len(dumped(dump))} messages; log: {gw.log_path.read_text()[-3000:]}"
        joined = "\n".join(texts)
        assert "Subject: via-mx-preference" in joined
        assert "Subject: via-implicit-mx" in joined
        # The two failures are not delivered themselves but reported to the sender by MX.
        reports = [t for t in texts if "report-type=delivery-status" in t]
        assert len(reports) == 2, joined[:4000]
        null_mx = next(t for t in reports if "dave@nullmx.test" in t)
        assert "Action: failed" in null_mx and "null MX" in null_mx
        nx = next(t for t in reports if "erin@nope.test" in t)
        assert "Action: failed" in nx and "does not exist" in nx
        assert not any("Subject: to-null-mx" in t and "delivery-status" not in t for t in texts)
        # Tracking shows the delivery to the preferred exchanger's address.
        track = gw.cli("track", "--to", "bob@example.net").stdout
        assert "delivered" in track and f"127.0.0.1:{sink_port}" in track, track
