"""The ISO as an administrator meets it: the live system and installer.

The hybrid ISO starts the boot menu from every firmware and medium (BIOS and
UEFI, CD drive and USB stick; beyond the CI budget, so with
SEALGATE_IMAGE_EXTENDED=1 only). Then one VM, in file order: the ISO in the CD
drive of a UEFI machine with a blank disk boots the live system; the menu
installs the appliance onto the disk; after power off, the machine starts
from that disk alone, this time from BIOS, and its first boot leaves the
gateway running with a setup token on the console.
"""

from __future__ import annotations

import re
import time

import pytest

from appliance import BOOT_TIMEOUT, OUT, Appliance, make_workdir, record_boot, remove_workdir

ISO = OUT / "sealgate-x86_64.iso"


class State:
    vm: Appliance


S = State()


@pytest.fixture(scope="module", autouse=True)
def machine():
    if not ISO.exists():
        pytest.fail("no ISO: run scripts/build-image first (scripts/test-image does)")
    workdir = make_workdir()
    S.vm = Appliance(workdir, firmware="uefi", disk_size="4G", blank=True)
    S.vm.cdrom = ISO
    ok = False
    try:
        yield S.vm
        ok = True
    finally:
        S.vm.kill()
        if ok:
            remove_workdir(workdir)
        else:
            print(f"serial log kept in {workdir}/serial.log")


@pytest.mark.extended
@pytest.mark.parametrize("firmware,medium", [("bios", "cd"), ("uefi", "usb"), ("bios", "usb")])
def test_iso_starts_its_boot_menu(firmware, medium, tmp_path):
    """The El Torito images (CD) and the hybrid MBR and EFI partition (USB
    stick) each get to GRUB, which boots the live entry."""
    vm = Appliance(tmp_path, firmware=firmware, disk_size="64M", blank=True)
    if medium == "cd":
        vm.cdrom = ISO
    else:
        vm.disk.unlink()
        vm.disk = ISO  # the stick: the ISO as the machine's disk
    try:
        vm.start()
        vm.expect(r"Booting `Sealgate live system and installer'", 120)
    finally:
        vm.kill()


def menu_action(vm: Appliance, *answers: str, until: str = "Press Enter to continue", timeout: float = 120) -> str:
    start = vm.mark()
    for a in answers:
        vm.send(a)
        time.sleep(0.5)
    vm.expect(until, timeout)
    out = vm.text(start).replace("\r\n", "\n")
    if until == "Press Enter to continue":
        vm.send("")
        vm.menu(120)
    return out


def test_live_system_boots_from_the_cd_with_the_installer(machine):
    machine.start()
    machine.menu(BOOT_TIMEOUT)
    record_boot("ISO live system from the CD: menu", machine.firmware, time.monotonic() - machine.started_at)
    log = machine.text()
    assert "Booting `Sealgate live system and installer'" in log
    assert "Live system: nothing is saved. Choose 9 to install it onto a disk." in log
    assert re.search(r"9\) Install to disk", log)
    out = menu_action(machine, "1")
    assert re.search(r"Image:\s+\S+, live system", out), out
    assert re.search(r"Root fs:\s+read-only squashfs /dev/loop\d", out), out
    assert re.search(r"Data fs:\s+read-write tmpfs", out), out
    assert re.search(r"Gateway:\s+active", out), out


def test_install_onto_the_blank_disk_from_the_menu(machine):
    out = menu_action(machine, "9", until=r"Enter an option: ")
    assert re.search(r"1\) vda\s+4\.0 GiB", out), out
    assert "sr0" not in out
    out = menu_action(machine, "1", "vda", timeout=900)
    assert "install-disk: done: /dev/vda holds the Sealgate appliance" in out, out
    assert "Installed. Power off (8), remove the installation medium" in out, out
    menu_action(machine, "8", "y", until="Powering off")
    assert machine.wait_exit(BOOT_TIMEOUT) == 0


def test_installed_disk_starts_from_bios_and_runs_first_boot(machine):
    machine.cdrom = None
    machine.firmware = "bios"
    start = machine.size()
    machine.start()
    ready = machine.smtp_banner(BOOT_TIMEOUT)
    record_boot("installed disk, first boot: SMTP 220", machine.firmware, ready - machine.started_at)
    machine.expect(r"sealgate-boot-ok: slot A confirmed", 120)
    machine.send("")
    token = machine.expect(r"Setup token: ([0-9a-f]{32})", 120).group(1)
    machine.menu(60)
    log = machine.text(start)
    assert "Booting `Sealgate, root slot A" in log
    assert "sealgate-firstboot: done" in log
    assert "Live system" not in log
    out = menu_action(machine, "1")
    assert re.search(r"Root fs:\s+read-only squashfs /dev/vda3", out), out
    assert re.search(r"Data fs:\s+read-write ext4 /dev/vda5", out), out
    assert re.search(r"Root slots:\s+A running \S+\n\s+B empty", out), out
    out = menu_action(machine, "3", "0")
    assert token in out
    menu_action(machine, "8", "y", until="Powering off")
    assert machine.wait_exit(BOOT_TIMEOUT) == 0
