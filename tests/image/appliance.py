"""Boot the Sealgate appliance image in QEMU (TCG) and talk to it.

The serial console is a Unix socket; a reader thread drains it at all times
(if nobody reads, the guest's console writes block and shutdown hangs) and
keeps everything in a buffer the tests search with a moving mark. Ports are
forwarded on 127.0.0.1 only. A forwarded port accepts connections before the
guest listens, so readiness is always an expected reply, never a connect.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("SEALGATE_IMAGE_OUT", REPO / "image" / "out"))
BOOT_TIMEOUT = 180  # TCG under load: 120 s per boot plus margin


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Appliance:
    """One appliance VM with its own copy-on-write disk.

    `disk_size` makes the disk bigger than the image (as after `qemu-img
    resize` or on a real drive), so first boot has room to grow the data
    partition.
    """

    def __init__(self, workdir: Path, extra_cmdline: str = "", disk_size: str = ""):
        self.workdir = workdir
        self.disk = workdir / "disk.qcow2"
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
             "-b", str(OUT / "sealgate-x86_64.qcow2"), str(self.disk)] + ([disk_size] if disk_size else []),
            check=True,
        )
        self.smtp_port = free_port()
        self.web_port = free_port()
        self.extra_cmdline = extra_cmdline
        self.serial_path = workdir / "serial.sock"
        self.log_path = workdir / "serial.log"
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._mark = 0
        self.proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self.started_at = 0.0

    # -- lifecycle -------------------------------------------------------
    def start(self) -> None:
        cmdline = (OUT / "cmdline.txt").read_text().strip()
        if self.extra_cmdline:
            cmdline += " " + self.extra_cmdline
        args = [
            "qemu-system-x86_64", "-machine", "q35", "-accel", "tcg",
            "-m", "1024", "-smp", "2", "-display", "none", "-monitor", "none",
            "-kernel", str(OUT / "vmlinuz"), "-initrd", str(OUT / "initrd.img"),
            "-append", cmdline,
            "-drive", f"file={self.disk},if=virtio,format=qcow2",
            "-nic", "user,model=virtio-net-pci,"
                    f"hostfwd=tcp:127.0.0.1:{self.smtp_port}-:25,"
                    f"hostfwd=tcp:127.0.0.1:{self.web_port}-:443",
            "-chardev", f"socket,id=s0,path={self.serial_path},server=on,wait=off",
            "-serial", "chardev:s0",
        ]
        self.serial_path.unlink(missing_ok=True)
        self._qemu_log = open(self.workdir / "qemu.log", "ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=self._qemu_log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(str(self.serial_path))
                break
            except OSError:
                s.close()
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("QEMU did not open its serial socket")
                time.sleep(0.05)
        self._sock = s
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        assert self._sock is not None
        with open(self.log_path, "ab") as log:
            while True:
                try:
                    data = self._sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                log.write(data)
                log.flush()
                with self._lock:
                    self._buf.extend(data)

    def wait_exit(self, timeout: float = BOOT_TIMEOUT) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._sock:
            self._sock.close()

    # -- serial console --------------------------------------------------
    def text(self, since: int = 0) -> str:
        with self._lock:
            return self._buf[since:].decode("utf-8", "replace")

    def mark(self) -> int:
        """Start looking for output from here on."""
        with self._lock:
            self._mark = len(self._buf)
        return self._mark

    def expect(self, pattern: str, timeout: float = 60) -> re.Match:
        """Wait for `pattern` in the output after the mark; move the mark past it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                text = self._buf[self._mark:].decode("utf-8", "replace")
                m = rx.search(text)
                if m:
                    self._mark += len(text[: m.end()].encode("utf-8", "replace"))
                    return m
            if time.monotonic() > deadline:
                tail = text[-2000:]
                raise TimeoutError(f"no {pattern!r} on the serial console within {timeout}s; tail:\n{tail}")
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"QEMU exited while waiting for {pattern!r}")
            time.sleep(0.1)

    def send(self, line: str) -> None:
        assert self._sock is not None
        self._sock.sendall(line.encode() + b"\r")

    def menu(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Wait for the recovery menu prompt."""
        self.expect(r"Enter an option: ", timeout)

    def choose(self, *answers: str, timeout: float = 60) -> None:
        """Send a menu choice followed by answers to its questions."""
        for a in answers:
            self.send(a)
            time.sleep(0.3)

    # -- network ---------------------------------------------------------
    def smtp_banner(self, timeout: float = BOOT_TIMEOUT) -> float:
        """Wait until the forwarded SMTP port greets with 220; return when."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=5) as s:
                    s.settimeout(5)
                    if s.recv(512).startswith(b"220"):
                        return time.monotonic()
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError("SMTP never greeted through the forward")


def make_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="sealgate-image-test-"))


def remove_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
