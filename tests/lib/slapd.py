"""A throwaway OpenLDAP server (Debian's slapd) on a loopback port, with a
small test directory loaded by slapadd before it starts.

    with Slapd(tmp_path, LDIF) as ldap:
        ldap.url, ldap.base_dn, ldap.admin_dn, ldap.password_file
"""

import signal
import socket
import subprocess
import time
from pathlib import Path

from harness import free_port

BASE_DN = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{BASE_DN}"
PASSWORD = "test-secret"


class Slapd:
    def __init__(self, workdir: Path, ldif: str):
        self.dir = Path(workdir) / "slapd"
        (self.dir / "db").mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.base_dn = BASE_DN
        self.admin_dn = ADMIN_DN
        self.password_file = self.dir / "password"
        self.password_file.write_text(PASSWORD + "\n")
        self.conf = self.dir / "slapd.conf"
        self.conf.write_text(
            "include /etc/ldap/schema/core.schema\n"
            "include /etc/ldap/schema/cosine.schema\n"
            "include /etc/ldap/schema/inetorgperson.schema\n"
            "modulepath /usr/lib/ldap\nmoduleload back_mdb\n"
            f"pidfile {self.dir}/slapd.pid\n"
            "database mdb\nmaxsize 10485760\n"
            f'suffix "{BASE_DN}"\nrootdn "{ADMIN_DN}"\nrootpw {PASSWORD}\n'
            f"directory {self.dir}/db\n"
        )
        (self.dir / "data.ldif").write_text(ldif)
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Slapd":
        subprocess.run(["slapadd", "-f", str(self.conf), "-l", str(self.dir / "data.ldif")],
                       check=True, capture_output=True, timeout=60)
        log = open(self.dir / "slapd.log", "ab")
        # -d 0: stay in the foreground (the test owns the process), log nothing.
        self.proc = subprocess.Popen(
            ["slapd", "-d", "0", "-f", str(self.conf), "-h", self.url + "/"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("slapd exited: " + (self.dir / "slapd.log").read_text()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("slapd did not listen in time")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def settings(self) -> dict:
        """The gateway's [ldap] table for this server."""
        return {"url": self.url, "base_dn": self.base_dn, "bind_dn": self.admin_dn,
                "bind_password_file": str(self.password_file)}

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
