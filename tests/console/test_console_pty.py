"""The recovery console's actions on the host, through a pseudo-terminal.

Runs `sealgate console` the way the serial unit does (stdin/stdout on a
terminal) with a temporary data directory and SEALGATE_CONSOLE_DRY_RUN=1,
so privileged commands (restart, reboot, power off, network reload) are
printed instead of run. The binary is $SEALGATE_BIN, else target/release or
target/debug `sealgate`; tests skip if it has no `console` subcommand yet.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def find_binary() -> str:
    candidates = [os.environ.get("SEALGATE_BIN", "")]
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    candidates += [str(target / "debug" / "sealgate"), str(target / "release" / "sealgate")]
    for c in candidates:
        if c and Path(c).is_file():
            probe = subprocess.run([c, "console", "--help"], capture_output=True)
            if probe.returncode == 0:
                return c
    pytest.skip("no sealgate binary with a `console` subcommand (build it first)")


@pytest.fixture(scope="module")
def binary() -> str:
    return find_binary()


class Pty:
    """A child process on a pseudo-terminal, read with a deadline."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            os.execve(argv[0], argv, env)
        self.buf = b""

    def read_until(self, pattern: str, timeout: float = 10) -> str:
        rx = re.compile(pattern.encode())
        deadline = time.monotonic() + timeout
        while not rx.search(self.buf):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{pattern!r} not seen; got:\n{self.buf.decode(errors='replace')}")
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise EOFError(self.buf.decode(errors="replace"))
                self.buf += chunk
        return self.buf.decode(errors="replace")

    def send(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    def wait(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def run_on_pty(binary: str, data_dir: Path, *args: str) -> tuple[int, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "vt100",
           "SEALGATE_CONSOLE_DRY_RUN": "1"}
    p = Pty([binary, "console", "--data-dir", str(data_dir), *args], env)
    out = b""
    while True:
        try:
            chunk = os.read(p.fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return p.wait(), out.decode(errors="replace").replace("\r\n", "\n")


def test_token_reset_then_show(binary, tmp_path):
    code, out = run_on_pty(binary, tmp_path, "token", "show")
    assert code == 0 and "No setup token" in out
    code, out = run_on_pty(binary, tmp_path, "token", "reset")
    assert code == 0
    token = re.search(r"New setup token: ([0-9a-f]{32})\b", out).group(1)
    assert (tmp_path / "setup-token").read_text().strip() == token
    assert (tmp_path / "setup-token").stat().st_mode & 0o777 == 0o640
    code, out = run_on_pty(binary, tmp_path, "token", "show")
    assert code == 0 and f"Setup token: {token}" in out


def test_status_reports_token_and_queue(binary, tmp_path):
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "m1").write_text("x")
    run_on_pty(binary, tmp_path, "token", "reset")
    code, out = run_on_pty(binary, tmp_path, "status")
    assert code == 0
    assert re.search(r"Setup token:\s+present", out), out
    assert re.search(r"Queue:\s+1 message file", out), out
    assert re.search(r"Gateway:\s+\S+", out), out
    assert all(len(line) <= 80 for line in out.splitlines())


def test_network_static_is_saved_and_shown(binary, tmp_path):
    code, out = run_on_pty(binary, tmp_path, "network", "static", "--address", "192.168.7.10/24",
                           "--gateway", "192.168.7.1", "--dns", "192.168.7.2")
    assert code == 0, out
    assert "dry run: would run `systemctl restart systemd-networkd.service`" in out
    saved = (tmp_path / "network" / "20-wired.network").read_text()
    assert "Address=192.168.7.10/24" in saved and "Gateway=192.168.7.1" in saved
    code, out = run_on_pty(binary, tmp_path, "network", "show")
    assert "Saved setting: static 192.168.7.10/24 gateway 192.168.7.1 dns 192.168.7.2" in out
    code, out = run_on_pty(binary, tmp_path, "network", "dhcp")
    assert code == 0 and "DHCP=yes" in (tmp_path / "network" / "20-wired.network").read_text()


def test_network_rejects_shell_metacharacters(binary, tmp_path):
    code, out = run_on_pty(binary, tmp_path, "network", "static", "--address", "10.0.0.1/8;reboot")
    assert code != 0 and "not a valid" in out
    assert not (tmp_path / "network").exists()


def test_privileged_actions_are_allow_listed(binary, tmp_path):
    for args, cmd in ((["restart"], "systemctl restart sealgate.service"),
                      (["reboot"], "systemctl reboot"),
                      (["power-off"], "systemctl poweroff")):
        code, out = run_on_pty(binary, tmp_path, *args)
        assert code == 0 and f"dry run: would run `{cmd}`" in out, out


def test_factory_reset_requires_the_word(binary, tmp_path):
    code, out = run_on_pty(binary, tmp_path, "factory-reset")
    assert code != 0 and "type ERASE to confirm" in out
    code, out = run_on_pty(binary, tmp_path, "factory-reset", "--confirm", "erase")
    assert code != 0 and not (tmp_path / ".factory-reset").exists()
    code, out = run_on_pty(binary, tmp_path, "factory-reset", "--confirm", "ERASE")
    assert code == 0 and (tmp_path / ".factory-reset").exists()
    assert "dry run: would run `systemctl reboot`" in out


def test_log_action_never_fails(binary, tmp_path):
    code, out = run_on_pty(binary, tmp_path, "log")
    assert code == 0 and out.strip()


def test_interactive_menu_on_a_terminal(binary, tmp_path):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "vt100",
           "SEALGATE_CONSOLE_DRY_RUN": "1"}
    p = Pty([binary, "console", "--data-dir", str(tmp_path)], env)
    p.read_until(r"Enter an option: ")
    p.send("3")
    p.read_until(r"Reset admin access")
    p.send("1")
    p.read_until(r"\[y/N\]: ")
    p.send("y")
    out = p.read_until(r"Press Enter to continue")
    token = re.search(r"New setup token: ([0-9a-f]{32})", out).group(1)
    p.send("")
    out = p.read_until(rf"Setup token: {token}[\s\S]*Enter an option: ")
    p.send("6")
    p.read_until(r"Type ERASE to confirm")
    p.send("no")
    p.read_until(r"Cancelled\.[\s\S]*Press Enter")
    p.send("")
    p.read_until(r"Enter an option: [\s\S]*Enter an option: ")
    p.send("x")
    p.read_until(r"Unknown option")
    # End of input (^D on the terminal) ends the menu cleanly.
    os.write(p.fd, b"\x04")
    assert p.wait() == 0
    for line in p.buf.decode(errors="replace").splitlines():
        assert len(line.rstrip("\r")) <= 80, line


def test_update_sources_are_checked_before_rauc_sees_them(binary, tmp_path):
    for bad in ("update.raucb", "http://", "http://x/a b", "/nonexistent.raucb", "http://x/$(reboot)'"):
        code, out = run_on_pty(binary, tmp_path, "update", "install", bad)
        assert code != 0 and "would run" not in out, (bad, out)
    bundle = tmp_path / "u.raucb"
    bundle.write_bytes(b"x")
    code, out = run_on_pty(binary, tmp_path, "update", "install", str(bundle))
    assert code == 0, out
    assert f"dry run: would run `rauc install {bundle}`" in out
    code, out = run_on_pty(binary, tmp_path, "update", "install", "https://updates.example/s.raucb")
    assert code == 0 and "dry run: would run `rauc install https://updates.example/s.raucb`" in out, out
    code, out = run_on_pty(binary, tmp_path, "update", "rollback")
    assert code == 0 and "dry run: would run `rauc status mark-active other`" in out, out


def test_install_to_disk_only_takes_a_listed_disk_and_its_name(binary, tmp_path):
    code, out = run_on_pty(binary, tmp_path, "install-disk")
    assert code == 0 and out.strip(), out
    code, out = run_on_pty(binary, tmp_path, "install-disk", "nosuchdisk", "--confirm", "nosuchdisk")
    assert code != 0 and "no disk" in out and "install-disk /dev" not in out, out


def test_certificates_show_what_first_boot_exported(binary, tmp_path):
    code, out = run_on_pty(binary, tmp_path, "certificates")
    assert code == 0 and "not made yet" in out
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "smime-rsa.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    code, out = run_on_pty(binary, tmp_path, "certificates")
    assert code == 0 and "S/MIME certificate (RSA)" in out and "AAAA" in out, out


def test_live_menu_offers_install_to_disk_instead_of_updates(binary, tmp_path):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "vt100",
           "SEALGATE_CONSOLE_DRY_RUN": "1", "SEALGATE_CONSOLE_LIVE": "1"}
    p = Pty([binary, "console", "--data-dir", str(tmp_path)], env)
    out = p.read_until(r"Enter an option: ")
    assert "Live system: nothing is saved" in out and "9) Install to disk" in out
    assert "Install an update" not in out
    p.send("6")
    p.read_until(r"keeps nothing on disk[\s\S]*Press Enter")
    assert not (tmp_path / ".factory-reset").exists()
    os.write(p.fd, b"\x04")
    assert p.wait() == 0
