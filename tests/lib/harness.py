"""Shared test harness: start a real `sealgate` daemon on loopback with a
generated configuration, find free ports, talk raw SMTP, run a downstream
sink. Every test process binds only 127.0.0.0/8.

The binary comes from $SEALGATE_BIN (scripts/test builds the release binary
and sets it); default: target/release/sealgate, then target/debug/sealgate.
"""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def sealgate_bin() -> str:
    env = os.environ.get("SEALGATE_BIN")
    if env:
        return env
    for profile in ("release", "debug"):
        candidate = REPO / "target" / profile / "sealgate"
        if candidate.exists():
            return str(candidate)
    raise RuntimeError("no sealgate binary: run cargo build or set SEALGATE_BIN")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        # An inline table; keys quoted so domains and addresses work as keys.
        return "{ " + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, settings: dict) -> None:
    """Writes a TOML file from {"key": value, "table": {"key": value}}."""
    lines = []
    tables = []
    for key, value in settings.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {toml_value(value)}")
    for name, table in tables:
        lines.append(f"\n[{name}]")
        for key, value in table.items():
            bare = re.fullmatch(r"[A-Za-z0-9_-]+", key)
            lines.append(f"{key if bare else toml_value(key)} = {toml_value(value)}")
    path.write_text("\n".join(lines) + "\n")


class Gateway:
    """A sealgate daemon in its own data directory.

    `settings` overrides the generated config (same shape as the TOML);
    by default it listens on a free loopback port and writes to the outbox.
    """

    def __init__(self, workdir: Path, settings: dict | None = None, port: int | None = None,
                 env: dict | None = None):
        self.workdir = Path(workdir)
        # Extra environment for the daemon and the CLI. SOFTHSM2_CONF is never
        # inherited: the bootstrap file says where the token is.
        self.env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}
        self.env.update(env or {})
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.data_dir = self.workdir / "data"
        base = {
            "hostname": "gw.test",
            "node_name": "test-node",
            "data_dir": str(self.data_dir),
            "smtp": {"listen": [f"127.0.0.1:{self.port}"]},
            "relay": {"domains": ["example.org"], "internal_networks": ["127.0.0.0/8"]},
            "delivery": {"mode": "outbox", "retry_initial_secs": 1, "retry_max_secs": 2},
            # No web listener unless a test asks: 8443 would clash between gateways.
            "web": {"listen": []},
        }
        for key, value in (settings or {}).items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        self.settings = base
        self.config_path = self.workdir / "sealgate.toml"
        write_config(self.config_path, base)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "sealgate.log"

    @property
    def outbox(self) -> Path:
        return self.data_dir / "outbox"

    def start(self, timeout: float = 30.0) -> "Gateway":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sealgate_bin(), "--config", str(self.config_path), "run"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=self.env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sealgate exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.settimeout(2)
                    if s.recv(512).startswith(b"220"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("sealgate did not answer in time")

    def kill(self) -> None:
        """SIGKILL: the crash the queue must survive."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def cli(self, *args: str, check: bool = True, input_text: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sealgate_bin(), "--config", str(self.config_path), *args],
            capture_output=True, text=True, check=check, timeout=60, input=input_text, env=self.env,
        )

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class SmtpDialogue:
    """Raw SMTP over a socket, for line-by-line dialogue tests."""

    def __init__(self, port: int, host: str = "127.0.0.1", source: str | None = None, timeout: float = 10):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source:
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buffer = b""

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def reply(self) -> str:
        """Reads one complete (possibly multi-line) reply; returns it as text."""
        lines = []
        while True:
            while b"\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed; got " + repr(lines))
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\n", 1)
            text = line.decode(errors="replace").rstrip("\r")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return "\n".join(lines)

    def cmd(self, line: str, expect: str) -> str:
        """Sends a command line and asserts the reply starts with `expect`."""
        self.send(line + "\r\n")
        got = self.reply()
        last = got.split("\n")[-1]
        assert last.startswith(expect), f"{line!r}: expected {expect!r}, got {got!r}"
        return got

    def starttls(self) -> None:
        """STARTTLS (expects 220), then a TLS handshake without certificate
        checks. Anything the server had sent and we had not read is dropped."""
        import ssl

        self.cmd("STARTTLS", "220")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.buffer = b""
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True if the server closes the connection within `timeout` seconds
        (any bytes it sends first are kept in the buffer)."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except (socket.timeout, TimeoutError):
            return False
        except OSError:
            return True
        finally:
            try:
                self.sock.settimeout(old)
            except OSError:
                pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
