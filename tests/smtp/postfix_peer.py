"""Real Postfix peers for the end-to-end tests: a private Postfix instance
(its own config and queue directories, smtpd on 127.0.0.1:<port>) that
relays everything to Sealgate, and Postfix's `smtp-sink` writing each
message it receives to a dump file.

Runs as root (Postfix's daemons drop to the `postfix` user), binds only
127.0.0.1, and is torn down completely by stop()."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

POSTFIX_SBIN = Path("/usr/lib/postfix/sbin")


def smtp_sink_bin() -> str:
    for candidate in ("/usr/sbin/smtp-sink", str(POSTFIX_SBIN / "smtp-sink")):
        if os.path.exists(candidate):
            return candidate
    found = shutil.which("smtp-sink")
    if not found:
        raise RuntimeError("smtp-sink not found (apt-get install postfix)")
    return found


def _world_readable_tmpdir(prefix: str) -> Path:
    # pytest's tmp_path is 0700 root: Postfix's unprivileged daemons could
    # not reach it, so these directories live directly under /tmp.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


MASTER_CF = """\
{listen} inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
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
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixRelay:
    """Postfix accepting on 127.0.0.1:`port` from loopback and relaying
    every message to [127.0.0.1]:`relay_port` (Sealgate)."""

    def __init__(self, port: int, relay_port: int):
        self.port = port
        self.relay_port = relay_port
        self.root = _world_readable_tmpdir("sg-postfix-")
        self.config_dir = self.root / "etc"
        self.queue_dir = self.root / "queue"
        self.data_dir = self.root / "data"
        self.log = self.root / "maillog"
        self.started = False

    def _postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["postfix", "-c", str(self.config_dir), *args],
                              capture_output=True, text=True, timeout=60, check=check)

    def start(self) -> "PostfixRelay":
        self.config_dir.mkdir()
        self.queue_dir.mkdir()
        self.data_dir.mkdir()
        shutil.chown(self.data_dir, "postfix", "postfix")
        (self.config_dir / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
        (self.config_dir / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {self.queue_dir}
data_directory = {self.data_dir}
mail_owner = postfix
setgid_group = postdrop
myhostname = upstream.test
mydomain = upstream.test
myorigin = upstream.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:{self.relay_port}
smtp_tls_security_level = may
smtp_tls_loglevel = 1
smtputf8_enable = yes
maillog_file = {self.log}
maillog_file_prefixes = /tmp, /var
biff = no
disable_dns_lookups = yes
smtp_host_lookup = native
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
""")
        r = self._postfix("start", check=False)
        if r.returncode != 0:
            raise RuntimeError(f"postfix start failed: {r.stdout}{r.stderr}{self.log_text()}")
        self.started = True
        import socket
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
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

    def queue_is_empty(self) -> bool:
        r = subprocess.run(["postqueue", "-c", str(self.config_dir), "-p"],
                           capture_output=True, text=True, timeout=30)
        return "Mail queue is empty" in r.stdout

    def flush(self) -> None:
        subprocess.run(["postqueue", "-c", str(self.config_dir), "-f"],
                       capture_output=True, text=True, timeout=30)

    def stop(self) -> None:
        if self.started:
            try:
                pid = int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pid = None
            self._postfix("stop", check=False)
            # master exits asynchronously; wait for the process to go
            deadline = time.monotonic() + 10
            while pid and time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)


class SmtpSink:
    """Postfix's smtp-sink on 127.0.0.1:`port`, dumping every message to
    its own file (-d); the dump is the message with LF line ends, after
    X-Client-Addr/X-Mail-Args/X-Rcpt-Args/Received lines of its own."""

    def __init__(self, port: int, extra_args: tuple[str, ...] = ()):
        self.port = port
        self.root = _world_readable_tmpdir("sg-sink-")
        self.dump_dir = self.root / "dump"
        self.dump_dir.mkdir()
        shutil.chown(self.dump_dir, "postfix", "postfix")
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None

    def start(self) -> "SmtpSink":
        self.proc = subprocess.Popen(
            [smtp_sink_bin(), "-u", "postfix", "-d", f"{self.dump_dir}/msg.", *self.extra_args,
             f"127.0.0.1:{self.port}", "50"],
            stdout=subprocess.DEVNULL, stderr=open(self.root / "stderr", "wb"),
        )
        import socket
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("smtp-sink exited: " + (self.root / "stderr").read_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.settimeout(5)
                    if s.recv(512).startswith(b"220"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("smtp-sink did not answer")

    def dumps(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.dump_dir.glob("msg.*"))]

    def wait_for(self, needle: bytes, timeout: float = 30.0) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            for d in self.dumps():
                if needle in d:
                    return d
            if time.monotonic() > deadline:
                raise AssertionError(f"smtp-sink: no message with {needle!r} in {timeout}s "
                                     f"({len(self.dumps())} dumps)")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)


def split_dump(dump: bytes) -> tuple[dict[str, list[str]], bytes]:
    """smtp-sink dump -> ({X-Mail-Args: [...], X-Rcpt-Args: [...]}, message).
    The message starts after smtp-sink's own three-line Received header."""
    lines = dump.split(b"\n")
    meta: dict[str, list[str]] = {}
    i = 0
    while i < len(lines) and not lines[i].startswith(b"Received: "):
        key, _, value = lines[i].decode(errors="replace").partition(": ")
        meta.setdefault(key, []).append(value)
        i += 1
    i += 1  # "Received: from ..."
    while i < len(lines) and lines[i][:1] in (b"\t", b" "):
        i += 1
    return meta, b"\n".join(lines[i:])
