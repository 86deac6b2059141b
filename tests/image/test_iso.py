"""The ISO as an administrator meets it: the live system and installer.

The hybrid ISO starts the boot menu from every firmware and medium (BIOS and
UEFI, CD drive and USB stick; beyond the CI budget, so with
SEALGATE_IMAGE_EXTENDED=1 only). Then one VM, in file order: the ISO in the CD
drive of a UEFI machine with a blank disk boots the live system; the menu
installs the appliance onto the disk; after power off, the machine starts
from that disk alone, this time from BIOS, and its first boot leaves the
gateway running with a setup token on the console. With the token read
there, the whole first-run wizard is completed over the forwarded HTTPS
port, and mail then goes where the wizard said.
"""

from __future__ import annotations

import re
import smtplib
import time
import uuid

import pytest

from appliance import BOOT_TIMEOUT, OUT, Appliance, free_port, make_workdir, record_boot, remove_workdir
from smtp_capture import CaptureSink
from webtools import PASSWORD, Client, fresh_code, secret_from

ISO = OUT / "sealgate-x86_64.iso"


class State:
    vm: Appliance
    token: str = ""  # the installed disk's setup token, from its console
    secret: str = ""  # the wizard's administrator's TOTP secret


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
    S.token = token


def test_wizard_over_https_sets_where_mail_goes(machine):
    """The first-run wizard, completed over the forwarded HTTPS port with the
    token the console showed: unlock, the first administrator with TOTP
    (the code computed as an authenticator app would), identity, delivery
    through a smart host and an internal server that are two sinks on the
    host (the guest reaches the host's 127.0.0.1 as 10.0.2.2), the
    generated certificate kept, S/MIME certificates for the gateway's
    address, policy, review and apply. Then mail sent into the guest's SMTP
    port arrives where the wizard said: the external recipient's at the
    smart host, our domain's at the internal server. This disk was
    installed with the factory configuration (delivery by MX, no smart
    host), so mail at either sink is the wizard's setting in force. After
    apply the token is burned: the wizard is gone, the console says no
    token is armed, and the administrator logs in with password and code.

    Why here: this is a fresh first boot with its own token, and nothing
    after it needs the token, so completing the wizard costs no boot. The
    qcow2 VM of test_appliance.py keeps its token armed on purpose (its
    later tests check that the token, on the console and on the data
    partition, survives the updates and the fallback); a wizard there
    would need a boot of its own. Plain HTTPS form posts with a cookie
    jar (tests/web/webtools.py's Client, as a browser sends them, with
    Sec-Fetch-Site) instead of Chromium: the browser's rendering is the
    web suite's subject, and here it would only add start-up time."""
    assert S.token, "no setup token from the installed disk's console"
    smarthost = CaptureSink(free_port()).start()
    internal = CaptureSink(free_port()).start()
    try:
        wizard(machine, f"10.0.2.2:{smarthost.port}", f"10.0.2.2:{internal.port}")
        out_subject = f"wizard-out-{uuid.uuid4().hex[:12]}"
        in_subject = f"wizard-in-{uuid.uuid4().hex[:12]}"
        with smtplib.SMTP("127.0.0.1", machine.smtp_port, timeout=60) as s:
            s.ehlo("client.example.org")
            for subject, rcpt in ((out_subject, "bob@partner.example"), (in_subject, "carol@example.org")):
                s.sendmail("alice@example.org", [rcpt],
                           f"From: alice@example.org\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
                           f"Message-ID: <{subject}@example.org>\r\n\r\nbody of {subject}\r\n")
        token_is_burned(machine)
        admin_logs_in(machine)

        def arrived(sink: CaptureSink, subject: str):
            return [t for t in sink.messages() if subject.encode() in t.data]

        smarthost.wait_for(lambda _: arrived(smarthost, out_subject), timeout=180)
        internal.wait_for(lambda _: arrived(internal, in_subject), timeout=180)
        assert [t.recipients for t in arrived(smarthost, out_subject)] == [["bob@partner.example"]]
        assert [t.recipients for t in arrived(internal, in_subject)] == [["carol@example.org"]]
        assert not arrived(internal, out_subject) and not arrived(smarthost, in_subject)
    finally:
        smarthost.stop()
        internal.stop()


# The administrator, and what a user of the wizard sees at each step.
ADMIN = "alice"
USED_CODES: set[str] = set()


def moved(r, to: str) -> None:
    assert r.status == 303 and r.header("location") == to, (r.status, r.header("location"), r.body[:2000])


def wizard(vm: Appliance, smarthost: str, internal: str) -> None:
    web = Client(vm.web_port)
    r = web.get("/setup")
    assert r.status == 200 and 'name="token"' in r.body, r.body[:2000]
    moved(web.post("/setup/unlock", {"token": S.token}), "/setup/admin")
    r = web.post("/setup/admin", {"name": ADMIN, "password": PASSWORD, "password2": PASSWORD})
    assert r.status == 200, r.body[:2000]
    S.secret = secret_from(r.body)
    moved(web.post("/setup/admin/confirm", {"code": fresh_code(S.secret, USED_CODES), "secret": S.secret,
                                            "account": ADMIN}), "/setup/identity")
    # The page names the address the gateway sees the browser come from:
    # through QEMU's user network, the host is 10.0.2.2.
    r = web.get("/setup/identity")
    m = re.search(r'id="client-network">([^<]+)<', r.body)
    assert m and m.group(1) == "10.0.2.2/32", r.body[:3000]
    moved(web.post("/setup/identity", {"hostname": "gw.example.org", "domains": "example.org",
                                       "networks": m.group(1)}), "/setup/delivery")
    delivery = {"mode": "smarthost", "smarthost": smarthost, "require_tls": "", "internal_server": internal}
    # The test button: the guest talks to the sink on the host.
    r = web.post("/setup/delivery/test", {**delivery, "test": "smarthost"})
    result = re.search(r'id="test-result".*?</h2>', r.body, re.S)
    assert r.status == 200 and result and "works" in result.group(0), r.body[:3000]
    moved(web.post("/setup/delivery", delivery), "/setup/certificate")
    moved(web.post("/setup/certificate", {"choice": "generated"}), "/setup/keys")
    moved(web.post("/setup/keys/smime", {"address": "gateway@example.org", "common_name": "gw.example.org"}),
          "/setup/keys")
    r = web.get("/setup/keys")
    assert "gateway@example.org" in r.body, r.body[:3000]
    moved(web.post("/setup/keys", {}), "/setup/policy")
    moved(web.post("/setup/policy", {"outbound": "encrypt-if-possible", "boundary_only": "on"}), "/setup/review")
    r = web.get("/setup/review")
    assert r.status == 200 and f"smart host {smarthost}" in r.body and internal in r.body, r.body[:3000]
    moved(web.post("/setup/finish", {}), "/dashboard?done=welcome")
    r = web.get("/dashboard?done=welcome")
    assert r.status == 200 and "Setup is complete" in r.body, r.body[:2000]
    # The browser is logged in; logging out ends that session.
    moved(web.post("/logout", {}), "/login")
    moved(web.get("/dashboard"), "/login")


def token_is_burned(vm: Appliance) -> None:
    web = Client(vm.web_port)
    moved(web.get("/setup"), "/login")
    r = web.post("/setup/unlock", {"token": S.token})
    assert r.status in (303, 404) and r.header("location") != "/setup/admin", (r.status, r.headers)
    out = menu_action(vm, "1")
    assert re.search(r"Setup token:\s+absent", out), out
    out = menu_action(vm, "3", "0")
    assert "No setup token is armed" in out and S.token not in out, out


def admin_logs_in(vm: Appliance) -> None:
    web = Client(vm.web_port)
    moved(web.post("/login", {"name": ADMIN, "password": PASSWORD, "code": fresh_code(S.secret, USED_CODES)}),
          "/dashboard")
    r = web.get("/dashboard")
    assert r.status == 200 and "<h1>Dashboard</h1>" in r.body and f"<summary>{ADMIN} " in r.body, r.body[:2000]


def test_power_off_from_the_menu(machine):
    menu_action(machine, "8", "y", until="Powering off")
    assert machine.wait_exit(BOOT_TIMEOUT) == 0
