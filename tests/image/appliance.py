"""Boot the Sealgate appliance in QEMU (TCG) and talk to it.

A VM starts from the firmware, the way a VM host or a machine starts it:
UEFI (Debian's OVMF) or BIOS (SeaBIOS, QEMU's default), from its disk or
from the ISO in its CD drive. `firmware="kernel"` starts the kernel
directly (slot A, no boot loader) for quick experiments.

The serial console is a Unix socket; a reader thread drains it at all times
(if nobody reads, the guest's console writes block and shutdown hangs) and
keeps everything in a buffer the tests search with a moving mark. Ports are
forwarded on 127.0.0.1 only. A forwarded port accepts connections before the
guest listens, so readiness is always an expected reply, never a connect.
The smart host is handed to the guest as a system credential over SMBIOS
(render-config reads it), so no boot path needs a changed command line.
"""

from __future__ import annotations

import functools
import http.server
import json
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
OVMF = Path("/usr/share/ovmf/OVMF.fd")
BOOT_TIMEOUT = 240  # TCG on a loaded 2-core machine, first boot, plus margin


# Every boot of the run, in order: (what, firmware, seconds from power-on or
# from the reboot command to the event named in `what`). conftest.py prints
# them as a table at the end; they are figures to read, not assertions.
BOOT_TIMES: list[tuple[str, str, float]] = []


def record_boot(what: str, firmware: str, seconds: float) -> None:
    BOOT_TIMES.append((what, firmware, seconds))
    print(f"\n{what} ({firmware}): {seconds:.1f} s", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Appliance:
    """One appliance VM.

    `disk` is its system disk: by default a copy-on-write overlay of the
    built qcow2, `disk_size` bigger than the image (as after `qemu-img
    resize` or on a real drive) so first boot has room to grow the data
    partition; `blank=True` makes an empty disk of `disk_size` instead (to
    install onto). `cdrom` puts an ISO in the CD drive and boots from it.
    """

    def __init__(self, workdir: Path, firmware: str = "uefi", disk_size: str = "",
                 blank: bool = False, smarthost: str = "", memory: int = 1024):
        self.workdir = workdir
        self.firmware = firmware
        self.disk = workdir / "disk.qcow2"
        if blank:
            cmd = ["qemu-img", "create", "-q", "-f", "qcow2", str(self.disk), disk_size or "4G"]
        else:
            base = OUT / "sealgate-x86_64.qcow2"
            cmd = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(self.disk)]
            if disk_size:
                # A disk smaller than the image cuts off the data partition
                # and the backup GPT: no machine boots that.
                info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(base)],
                                                 check=True, capture_output=True, text=True).stdout)
                wanted = subprocess.run(["numfmt", "--from=iec", disk_size.rstrip("B")],
                                        check=True, capture_output=True, text=True).stdout
                if int(wanted) < info["virtual-size"]:
                    raise ValueError(f"disk_size {disk_size} is smaller than the image ({info['virtual-size']} bytes)")
                cmd.append(disk_size)
        subprocess.run(cmd, check=True)
        self.cdrom: Path | None = None
        self.smtp_port = free_port()
        self.web_port = free_port()
        self.smarthost = smarthost
        self.memory = memory
        self.serial_path = workdir / "serial.sock"
        self.log_path = workdir / "serial.log"
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._mark = 0
        self.proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self.started_at = 0.0

    # -- lifecycle -------------------------------------------------------
    def qemu_args(self) -> list[str]:
        args = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg",
                "-m", str(self.memory), "-smp", "2", "-display", "none", "-monitor", "none"]
        if self.firmware == "uefi":
            args += ["-bios", str(OVMF)]
        elif self.firmware == "kernel":
            args += ["-kernel", str(OUT / "vmlinuz"), "-initrd", str(OUT / "initrd.img"),
                     "-append", (OUT / "cmdline.txt").read_text().strip()]
        disk_index = 1 if self.cdrom else 0
        disk = f"file={self.disk},if=none,id=disk0,format=qcow2"
        if self.disk.suffix == ".iso":  # an ISO written to a USB stick
            disk = f"file={self.disk},if=none,id=disk0,format=raw,readonly=on"
        args += ["-drive", disk, "-device", f"virtio-blk-pci,drive=disk0,bootindex={disk_index}"]
        if self.cdrom:
            args += ["-drive", f"file={self.cdrom},if=none,id=cd0,media=cdrom,readonly=on",
                     "-device", "ide-cd,drive=cd0,bootindex=0"]
        if self.smarthost:
            args += ["-smbios", f"type=11,value=io.systemd.credential:sealgate.smarthost={self.smarthost}"]
        args += ["-nic", "user,model=virtio-net-pci,"
                         f"hostfwd=tcp:127.0.0.1:{self.smtp_port}-:25,"
                         f"hostfwd=tcp:127.0.0.1:{self.web_port}-:443",
                 "-chardev", f"socket,id=s0,path={self.serial_path},server=on,wait=off",
                 "-serial", "chardev:s0"]
        return args

    def start(self) -> None:
        self.serial_path.unlink(missing_ok=True)
        self._qemu_log = open(self.workdir / "qemu.log", "ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(["nice", "-n", "10"] + self.qemu_args(),
                                     stdout=self._qemu_log, stderr=subprocess.STDOUT)
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
        code = self.proc.wait(timeout=timeout)
        if self._sock:
            self._sock.close()
        return code

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

    def size(self) -> int:
        with self._lock:
            return len(self._buf)

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
                # surrogateescape: the firmware writes bytes that are not
                # UTF-8, and the mark must move by exactly the bytes matched
                # ("replace" turns one such byte into three and overshoots).
                text = self._buf[self._mark:].decode("utf-8", "surrogateescape")
                m = rx.search(text)
                if m:
                    self._mark += len(text[: m.end()].encode("utf-8", "surrogateescape"))
                    return m
            if time.monotonic() > deadline:
                tail = text[-3000:].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                raise TimeoutError(f"no {pattern!r} on the serial console within {timeout}s; tail:\n{tail}")
            if self.proc and self.proc.poll() is not None:
                tail = text[-3000:].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                raise RuntimeError(f"QEMU exited while waiting for {pattern!r}; tail:\n{tail}")
            time.sleep(0.1)

    def send(self, line: str) -> None:
        assert self._sock is not None
        self._sock.sendall(line.encode() + b"\r")

    def menu(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Wait for the recovery menu prompt."""
        self.expect(r"Enter an option: ", timeout)

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
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError("QEMU exited while waiting for SMTP")
            time.sleep(1)
        raise TimeoutError("SMTP never greeted through the forward")


class FileServer:
    """Serves a directory over HTTP on 127.0.0.1 (the guest's 10.0.2.2)."""

    def __init__(self, directory: Path):
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "FileServer":
        self.thread.start()
        return self

    def url(self, name: str) -> str:
        return f"http://10.0.2.2:{self.port}/{name}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def make_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="sealgate-image-test-"))


def remove_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
