"""Boot the built appliance image in QEMU and drive it like an administrator.

One VM, three boots, in file order (each test builds on the previous):
first boot -> power cycle (data kept) -> factory reset (first boot again).
Needs image/out/ from scripts/build-image; scripts/test-image runs both.
"""

from __future__ import annotations

import http.client
import json
import re
import smtplib
import ssl
import subprocess
import time
import urllib.request
import uuid
from email.message import EmailMessage

import pytest

from appliance import BOOT_TIMEOUT, OUT, REPO, Appliance, free_port, make_workdir, remove_workdir
from smtp_capture import CaptureSink

TOKEN_RX = r"Setup token: ([0-9a-f]{32})"


class State:
    """What the ordered tests hand each other."""

    vm: Appliance
    sink: CaptureSink
    sink_port: int
    token: str = ""
    queued_id: str = ""
    boot_seconds: list[float] = []


S = State()


@pytest.fixture(scope="module", autouse=True)
def appliance():
    if not (OUT / "sealgate-x86_64.qcow2").exists():
        pytest.fail("no image: run scripts/build-image first (scripts/test-image does)")
    workdir = make_workdir()
    S.sink_port = free_port()
    S.sink = CaptureSink(S.sink_port).start()
    S.vm = Appliance(workdir, f"sealgate.smarthost=10.0.2.2:{S.sink_port}", disk_size="1536M")
    try:
        yield S.vm
    finally:
        S.vm.kill()
        S.sink.stop()
        print(f"\nserial log kept in {workdir}/serial.log" if S.vm.proc and S.vm.proc.returncode else "")
        if not (S.vm.proc and S.vm.proc.returncode):
            remove_workdir(workdir)


def boot(vm: Appliance) -> str:
    """Start the VM, wait for the SMTP greeting and the menu; return the banner token."""
    vm.start()
    ready = vm.smtp_banner(BOOT_TIMEOUT)
    seconds = ready - vm.started_at
    S.boot_seconds.append(seconds)
    print(f"\nboot-to-service (SMTP 220 through the forward): {seconds:.1f} s")
    vm.menu(BOOT_TIMEOUT)
    vm.send("")  # redraw the menu so the banner is after the mark
    m = vm.expect(TOKEN_RX, 30)
    vm.menu(30)
    return m.group(1)


def menu_action(vm: Appliance, *answers: str, until: str = "Press Enter to continue", timeout: float = 60) -> str:
    """Choose a menu item, answer its questions, return its output."""
    start = vm.mark()
    for a in answers:
        vm.send(a)
        time.sleep(0.5)
    vm.expect(until, timeout)
    out = vm.text(start)
    if until == "Press Enter to continue":
        vm.send("")
        vm.menu(30)
    return out


def send_mail(port: int, subject: str) -> None:
    msg = EmailMessage()
    msg["From"] = "alice@internal.test"
    msg["To"] = "bob@external.test"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject}@internal.test>"
    msg.set_content(f"body of {subject}\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        s.ehlo("client.internal.test")
        s.send_message(msg)


def wait_delivered(subject: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(subject.encode() in b for b in S.sink.bodies()):
            return
        time.sleep(1)
    raise AssertionError(f"{subject} never reached the sink on the host")


def data_partition_files(vm: Appliance) -> dict[str, str]:
    """Read files of the powered-off VM's data partition without mounting."""
    raw = vm.workdir / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(vm.disk), str(raw)], check=True)
    table = json.loads(subprocess.run(["sfdisk", "--json", str(raw)], check=True,
                                      capture_output=True, text=True).stdout)
    parts = {p["name"]: p for p in table["partitiontable"]["partitions"]}
    data = parts["sealgate-data"]
    part = vm.workdir / "data.ext4"
    subprocess.run(["dd", f"if={raw}", f"of={part}", "bs=512", f"skip={data['start']}",
                    f"count={data['size']}", "conv=sparse", "status=none"], check=True)
    # The VM writes only to its copy-on-write overlay: no cluster of the
    # root partition may have been allocated there.
    root = parts["root"]
    lo, hi = root["start"] * 512, (root["start"] + root["size"]) * 512
    layout = json.loads(subprocess.run(["qemu-img", "map", "--output=json", str(vm.disk)],
                                       check=True, capture_output=True, text=True).stdout)
    written = [m for m in layout if m["depth"] == 0 and m.get("data")
               and m["start"] < hi and m["start"] + m["length"] > lo]
    dumpe2fs = subprocess.run(["dumpe2fs", "-h", str(part)], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in dumpe2fs.splitlines() if ":" in line)
    fs_bytes = int(fields["Block count"]) * int(fields["Block size"])
    fstype = subprocess.run(["blkid", "-o", "value", "-s", "TYPE", str(part)],
                            capture_output=True, text=True).stdout.strip()
    listing = subprocess.run(["debugfs", "-R", "ls -l /", str(part)],
                             capture_output=True, text=True).stdout
    files = {"__fstype__": fstype, "__listing__": listing,
             "__root_unchanged__": str(not written),
             "__part_bytes__": str(data["size"] * 512), "__fs_bytes__": str(fs_bytes)}
    for name in ("setup-token", ".initialized", "network/20-wired.network", "hsm/softhsm2.conf"):
        files[name] = subprocess.run(["debugfs", "-R", f"cat /{name}", str(part)],
                                     capture_output=True, text=True).stdout
    raw.unlink()
    part.unlink()
    return files


# -- boot 1: first boot --------------------------------------------------------

def test_first_boot_reaches_service_and_menu(appliance):
    S.token = boot(appliance)
    log = appliance.text()
    assert "sealgate-firstboot: done" in log
    # The 1.5 GiB disk left room after the 512 MiB data partition.
    assert "sealgate-growpart: data partition grown from 512 MiB" in log
    assert "login:" not in log


def test_status_shows_daemon_active_token_and_storage(appliance):
    out = menu_action(appliance, "1")
    assert re.search(r"Gateway:\s+active", out), out
    # The menu runs on the serial console and on the local screen (tty1).
    assert re.search(r"Consoles:\s+ttyS0 active, tty1 active", out), out
    assert re.search(r"Setup token:\s+present", out), out
    assert re.search(r"HSM token:\s+provisioned", out), out
    assert re.search(r"Root fs:\s+read-only squashfs", out), out
    assert re.search(r"Data fs:\s+read-write ext4 /dev/vda3", out), out


def test_setup_token_menu_shows_the_armed_token(appliance):
    out = menu_action(appliance, "3", "0")
    m = re.search(TOKEN_RX, out)
    assert m and m.group(1) == S.token, out


def test_message_relays_through_the_guest_to_the_host_sink(appliance):
    subject = f"relay-{uuid.uuid4().hex[:12]}"
    send_mail(appliance.smtp_port, subject)
    wait_delivered(subject, 120)


def test_journal_holds_daemon_log_lines(appliance):
    out = menu_action(appliance, "5")
    assert re.search(r"sealgate\[\d+\]: ", out), out


def test_web_port_opens_the_wizard_behind_the_setup_token(appliance):
    """The first-run wizard asks for the token (never in a URL); automation
    may present it in an Authorization header instead of the form."""
    ctx = ssl._create_unverified_context()
    with urllib.request.urlopen(f"https://127.0.0.1:{appliance.web_port}/setup", context=ctx, timeout=30) as resp:
        assert resp.status == 200
        assert 'name="token"' in resp.read().decode("utf-8", "replace")
    conn = http.client.HTTPSConnection("127.0.0.1", appliance.web_port, context=ctx, timeout=30)
    try:
        conn.request("POST", "/setup/unlock", body=b"", headers={
            "Authorization": f"Bearer {S.token}",
            "Content-Type": "application/x-www-form-urlencoded",
        })
        r = conn.getresponse()
        assert r.status == 303 and r.getheader("location") == "/setup/admin", (r.status, r.getheaders())
    finally:
        conn.close()


def test_network_change_is_applied(appliance):
    out = menu_action(appliance, "2", "2", "10.0.2.15/24", "10.0.2.2", "10.0.2.3", "y")
    assert "Network setting applied." in out, out
    appliance.smtp_banner(60)


def test_message_is_queued_while_the_smart_host_is_down(appliance):
    S.sink.stop()
    S.queued_id = f"queued-{uuid.uuid4().hex[:12]}"
    send_mail(appliance.smtp_port, S.queued_id)
    time.sleep(3)  # let the first attempt fail


def test_power_off_from_the_menu(appliance):
    menu_action(appliance, "8", "y", until="Powering off")
    assert appliance.wait_exit(BOOT_TIMEOUT) == 0


def test_data_partition_is_ext4_and_root_untouched(appliance):
    files = data_partition_files(appliance)
    assert files["__fstype__"] == "ext4"
    # First boot grew the data partition (512 MiB in the image) into the
    # bigger disk (1.5 GiB), and the file system fills it.
    assert int(files["__part_bytes__"]) > 900 * 2**20, files["__part_bytes__"]
    assert int(files["__fs_bytes__"]) > int(files["__part_bytes__"]) - 8 * 2**20
    assert files["__root_unchanged__"] == "True", "the read-only root partition changed"
    assert files["setup-token"].strip() == S.token
    assert files[".initialized"].strip()
    assert "Address=10.0.2.15/24" in files["network/20-wired.network"]
    assert "tokendir" in files["hsm/softhsm2.conf"]


# -- boot 2: data kept ---------------------------------------------------------

def test_second_boot_keeps_data_and_network(appliance):
    S.sink.start()
    appliance.mark()
    start = len(appliance.text())
    token = boot(appliance)
    assert token == S.token
    assert "sealgate-firstboot" not in appliance.text(start)
    out = menu_action(appliance, "1")
    assert "Network:      static 10.0.2.15/24 gateway 10.0.2.2 dns 10.0.2.3" in out, out
    assert "10.0.2.15/24" in out


def test_queued_message_survives_the_reboot(appliance):
    wait_delivered(S.queued_id, 240)


# -- boot 3: factory reset -----------------------------------------------------

def test_factory_reset_wipes_data_and_reruns_first_boot(appliance):
    start = len(appliance.text())
    menu_action(appliance, "6", "ERASE", until="Rebooting")
    appliance.expect("sealgate-factory-reset: data partition reformatted", BOOT_TIMEOUT)
    appliance.expect("sealgate-firstboot: done", BOOT_TIMEOUT)
    appliance.menu(BOOT_TIMEOUT)
    appliance.send("")
    token = appliance.expect(TOKEN_RX, 30).group(1)
    appliance.menu(30)
    assert token != S.token
    out = menu_action(appliance, "1")
    assert re.search(r"Network:\s+DHCP", out), out
    assert re.search(r"Gateway:\s+active", out), out
    assert re.search(r"Consoles:\s+ttyS0 active, tty1 active", out), out
    assert "reformatted" in appliance.text(start)


def test_power_off_after_factory_reset(appliance):
    # The menu's reboot (7) runs the same allow-listed `systemctl reboot` the
    # factory reset just used; one boot fewer keeps the run inside budget.
    menu_action(appliance, "8", "y", until="Powering off")
    assert appliance.wait_exit(BOOT_TIMEOUT) == 0
    print("boot-to-service times: " + ", ".join(f"{s:.1f} s" for s in S.boot_seconds))
