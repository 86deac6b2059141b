"""Postfix as the receiving MTA of a recipient domain, with the TLS
certificate a test gives it (right name, wrong name, self-signed), on its
own loopback address and port 25 like a real MX. Every message it accepts
is appended to one mailbox file; Postfix's Received header says whether
and how TLS was used.

    with PostfixReceiver(tmp_path, "127.3.4.5", cert, key) as mx:
        ...; mx.wait_for(b"subject text"); mx.messages()
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

MASTER_CF = """\
{listen} inet  n       -       n       -       -       smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
virtual   unix  -       n       n       -       -       virtual
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def free_loopback_address(port: int = 25) -> str:
    """A random 127.x.y.z on which `port` is free (tests share the machine)."""
    for _ in range(200):
        ip = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
        with socket.socket() as s:
            try:
                s.bind((ip, port))
                return ip
            except OSError:
                continue
    raise RuntimeError(f"no free loopback address for port {port}")


class PostfixReceiver:
    def __init__(self, address: str, cert: Path | None, key: Path | None, hostname: str = "mx.test",
                 port: int = 25, starttls: bool = True):
        self.address = address
        self.port = port
        self.cert = cert
        self.key = key
        self.hostname = hostname
        self.starttls = starttls
        # Postfix's unprivileged daemons must reach these directories.
        self.root = Path(tempfile.mkdtemp(prefix="sg-mx-"))
        self.root.chmod(0o755)
        self.config_dir = self.root / "etc"
        self.queue_dir = self.root / "queue"
        self.data_dir = self.root / "data"
        self.mail_dir = self.root / "mail"
        self.log = self.root / "maillog"
        self.started = False

    def _postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["postfix", "-c", str(self.config_dir), *args],
                              capture_output=True, text=True, timeout=60, check=check)

    def start(self) -> "PostfixReceiver":
        for d in (self.config_dir, self.queue_dir, self.data_dir, self.mail_dir):
            d.mkdir()
        shutil.chown(self.data_dir, "postfix", "postfix")
        shutil.chown(self.mail_dir, "postfix", "postfix")
        uid = pwd.getpwnam("postfix").pw_uid
        gid = pwd.getpwnam("postfix").pw_gid
        tls = ""
        if self.cert and self.starttls:
            # Postfix reads the key as root before dropping privileges.
            tls = f"""smtpd_tls_cert_file = {self.cert}
smtpd_tls_key_file = {self.key}
smtpd_tls_security_level = may
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
"""
        (self.config_dir / "master.cf").write_text(MASTER_CF.format(listen=f"{self.address}:{self.port}"))
        (self.config_dir / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {self.queue_dir}
data_directory = {self.data_dir}
mail_owner = postfix
setgid_group = postdrop
myhostname = {self.hostname}
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = all
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = static:all
virtual_mailbox_maps = static:mbox
virtual_mailbox_base = {self.mail_dir}
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_transport = virtual
{tls}maillog_file = {self.log}
maillog_file_prefixes = /tmp, /var
biff = no
smtputf8_enable = yes
queue_run_delay = 1s
""")
        r = self._postfix("start", check=False)
        if r.returncode != 0:
            raise RuntimeError(f"postfix start failed: {r.stdout}{r.stderr}{self.log_text()}")
        self.started = True
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.address, self.port), timeout=1) as s:
                    s.settimeout(5)
                    if s.recv(512).startswith(b"220"):
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("postfix smtpd did not answer: " + self.log_text())

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def mailbox(self) -> bytes:
        try:
            return (self.mail_dir / "mbox").read_bytes()
        except OSError:
            return b""

    def messages(self) -> list[bytes]:
        """The delivered messages (mbox split on its From_ lines)."""
        box = self.mailbox()
        parts = [p for p in box.split(b"\nFrom ") if p.strip()]
        return [p if p.startswith(b"From ") else b"From " + p for p in parts]

    def wait_for(self, needle: bytes, timeout: float = 30.0) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            for m in self.messages():
                if needle in m:
                    return m
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.hostname}: no message with {needle!r} in {timeout}s; "
                                     f"log: {self.log_text()[-1500:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.started:
            self._postfix("stop", check=False)
            deadline = time.monotonic() + 10
            pidfile = self.queue_dir / "pid" / "master.pid"
            while pidfile.exists() and time.monotonic() < deadline:
                try:
                    os.kill(int(pidfile.read_text().split()[0]), 0)
                except (ProcessLookupError, ValueError, IndexError, OSError):
                    break
                time.sleep(0.05)
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
