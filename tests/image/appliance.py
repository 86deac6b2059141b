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

Every reboot is a cold boot. QEMU runs with `-no-reboot`: when the guest
resets (the kernel's reboot, or the firmware's own reset), QEMU exits, and
the harness starts a new QEMU process on the same disk (and, under UEFI,
the same variable store); only the kernel's power off ends the machine. A real appliance comes
back from `reboot` through its firmware either way; what the tests need
from a reboot is on the disk (GRUB's slot state in grubenv on the ESP) and
in the EFI variables, and both survive. The guest's warm reset under TCG
with OVMF hung in the firmware in about one run in four (no output after
"reboot: Restarting system"), and a hung VM failed every later test.

UEFI is Debian's OVMF as a machine has it: the firmware code read-only in
the first flash chip, and a per-VM copy of the variable store, writable,
in the second; EFI variables (boot entries, boot order) persist across
reboots of that VM. (`-bios OVMF.fd` would keep them in RAM only.)
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
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
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
        # (buffer length after a read, when): when each piece of console
        # output arrived, for the boot phase figures.
        self._arrivals: list[tuple[int, float]] = []
        self._lock = threading.Lock()
        self._mark = 0
        self.proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self.started_at = 0.0
        # Power-on to power-off: QEMU processes come and go with the guest's
        # reboots; `_off` is set when the machine is off for good.
        self._off = threading.Event()
        self._off.set()
        self._stopping = False
        self.exit_code: int | None = None
        self.boot_offset = 0  # where the current QEMU process's output starts
        self.reboots = 0  # guest resets followed by a new QEMU process
        self.resets: list[str] = []  # what each of them was
        self.vars = workdir / "OVMF_VARS.fd"

    # -- lifecycle -------------------------------------------------------
    def qemu_args(self) -> list[str]:
        args = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg",
                "-m", str(self.memory), "-smp", "2", "-display", "none", "-monitor", "none",
                # A guest reset ends this QEMU process; the supervisor starts
                # the next one (see the module's docstring).
                "-no-reboot"]
        if self.firmware == "uefi":
            if not self.vars.exists():
                shutil.copyfile(OVMF_VARS, self.vars)
            args += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                     "-drive", f"if=pflash,format=raw,unit=1,file={self.vars}"]
        elif self.firmware == "kernel":
            args += ["-kernel", str(OUT / "vmlinuz"), "-initrd", str(OUT / "initrd.img"),
                     "-append", (OUT / "cmdline.txt").read_text().strip()]
        disk_index = 1 if self.cdrom else 0
        disk = f"file={self.disk},if=none,id=disk0,format=qcow2"
        if self.disk.suffix == ".iso":  # an ISO written to a USB stick
            disk = f"file={self.disk},if=none,id=disk0,format=raw,readonly=on"
        # -kernel takes boot index 0 itself (QEMU's linuxboot option ROM).
        bootindex = "" if self.firmware == "kernel" else f",bootindex={disk_index}"
        args += ["-drive", disk, "-device", f"virtio-blk-pci,drive=disk0{bootindex}"]
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
        """Power on."""
        if not self._off.is_set():
            raise RuntimeError("the VM is running")
        self._off.clear()
        self._stopping = False
        self.exit_code = None
        self.started_at = time.monotonic()
        self._spawn()
        threading.Thread(target=self._supervise, daemon=True).start()

    def _spawn(self) -> None:
        """One QEMU process, its serial socket and the thread that drains it."""
        self.serial_path.unlink(missing_ok=True)
        if getattr(self, "_qemu_log", None) is None:
            self._qemu_log = open(self.workdir / "qemu.log", "ab")
        self.boot_offset = self.size()
        proc = subprocess.Popen(["nice", "-n", "10"] + self.qemu_args(),
                                stdout=self._qemu_log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(str(self.serial_path))
                break
            except OSError:
                s.close()
                if time.monotonic() > deadline or proc.poll() is not None:
                    proc.kill()
                    proc.wait()
                    raise RuntimeError("QEMU did not open its serial socket")
                time.sleep(0.05)
        self._sock = s
        self._reader_thread = threading.Thread(target=self._reader, args=(s,), daemon=True)
        self._reader_thread.start()
        self.proc = proc

    def _supervise(self) -> None:
        """Follow the guest's resets until it powers off (or is killed).

        With `-no-reboot` QEMU exits (code 0) on every reset: the kernel's
        reboot, and also the firmware's own (OVMF resets once when its
        memory-type settings change, e.g. on a fresh variable store). So
        every exit with code 0 is a reset and the next QEMU process starts,
        except after the kernel's "reboot: Power down", which is final; so
        is a QEMU failure (another exit code) or a kill."""
        try:
            while True:
                assert self.proc is not None
                code = self.proc.wait()
                self._reader_thread.join(10)  # the console's last words
                powered_off = "reboot: Power down" in self.text(self.boot_offset)
                if self._stopping or powered_off or code != 0:
                    self.exit_code = code
                    return
                self.reboots += 1
                by = ("the kernel's reboot" if "reboot: Restarting system" in self.text(self.boot_offset)
                      else "a reset without the kernel's reboot line (firmware, or early in boot)")
                self.resets.append(by)
                with self._lock:
                    self._buf.extend(f"\n[harness: {by}; a new QEMU process boots the same disk]\n".encode())
                with open(self.log_path, "ab") as log:
                    log.write(f"\n[harness: {by}; a new QEMU process boots the same disk]\n".encode())
                self._spawn()
        except Exception as e:  # noqa: BLE001 - whatever it was, the machine is off
            self.exit_code = -1
            with open(self.log_path, "ab") as log:
                log.write(f"\n[harness: could not start the next QEMU process: {e}]\n".encode())
        finally:
            if self._sock:
                self._sock.close()
            self._off.set()

    def _reader(self, sock: socket.socket) -> None:
        with open(self.log_path, "ab") as log:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                log.write(data)
                log.flush()
                with self._lock:
                    self._buf.extend(data)
                    self._arrivals.append((len(self._buf), time.monotonic()))

    @property
    def running(self) -> bool:
        return not self._off.is_set()

    def wait_exit(self, timeout: float = BOOT_TIMEOUT) -> int:
        """Wait until the machine is off (not merely rebooting); its exit code."""
        if not self._off.wait(timeout):
            raise TimeoutError(f"the VM did not power off within {timeout}s")
        assert self.exit_code is not None
        return self.exit_code

    def kill(self) -> None:
        self._stopping = True
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        self._off.wait(30)
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
            if not self.running:
                tail = text[-3000:].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                raise RuntimeError(f"the VM is off (QEMU exit {self.exit_code}) while waiting for {pattern!r};"
                                   f" tail:\n{tail}")
            time.sleep(0.1)

    def seen_at(self, pattern: str, since: int = 0) -> float | None:
        """When the first match of `pattern` after offset `since` arrived on
        the console (monotonic seconds), or None."""
        with self._lock:
            text = self._buf[since:].decode("utf-8", "surrogateescape")
            m = re.search(pattern, text)
            if not m:
                return None
            end = since + len(text[: m.end()].encode("utf-8", "surrogateescape"))
            for length, when in self._arrivals:
                if length >= end:
                    return when
        return None

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
            if not self.running:
                raise RuntimeError(f"the VM is off (QEMU exit {self.exit_code}) while waiting for SMTP")
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
