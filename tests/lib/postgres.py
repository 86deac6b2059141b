"""A private PostgreSQL 15 server for the cluster tests: initdb in a temp
directory, its own port on 127.0.0.1, TLS with a test CA, SCRAM
passwords, started and stopped by the test (never the system service).

PostgreSQL refuses to run as root: the server runs as the `postgres`
user that Debian's package creates, from a directory under /tmp that user
can reach. Clients connect over TLS only (`hostssl` in pg_hba.conf); the
superuser reaches it over the server's own Unix socket for set-up.

Also a command line, so that scripts and Rust tests share this one
set-up:  python3 tests/lib/postgres.py start DIR   (prints JSON)
         python3 tests/lib/postgres.py stop DIR
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
USER = "sealgate"
DATABASE = "sealgate"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    r = subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stdout}{r.stderr}")
    return r


def make_ca(dir: Path, names: list[str], ips: list[str]) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for `names`/`ips` (openssl, a
    real peer). Returns (ca.pem, server.crt, server.key)."""
    dir.mkdir(parents=True, exist_ok=True)
    ca_key, ca = dir / "ca.key", dir / "ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(ca_key), "-out", str(ca), "-days", "30", "-subj", "/CN=Sealgate test database CA"],
                   check=True, capture_output=True, timeout=60)
    key, csr, crt = dir / "server.key", dir / "server.csr", dir / "server.crt"
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={names[0]}"],
                   check=True, capture_output=True, timeout=60)
    san = ",".join([f"DNS:{n}" for n in names] + [f"IP:{i}" for i in ips])
    ext = dir / "ext.cnf"
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
                    "-CAcreateserial", "-out", str(crt), "-days", "30", "-extfile", str(ext)],
                   check=True, capture_output=True, timeout=60)
    return ca, crt, key


class Postgres:
    """PostgreSQL 15 in its own directory. `url` has no password; the
    password is in `password_file`, the server's CA in `ca`."""

    def __init__(self, root: Path | None = None, port: int | None = None):
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="sg-pg-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.port = port or _free_port()
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.log = self.sock / "postgres.log"
        self.password_file = self.root / "password"
        self.ca = self.root / "tls" / "ca.pem"

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def cluster_settings(self, listen: str, **extra) -> dict:
        """The `[cluster]` table for a node using this server."""
        return {"database_url": self.url, "password_file": str(self.password_file),
                "database_ca": str(self.ca), "listen": listen, **extra}

    def init(self) -> "Postgres":
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError("PostgreSQL 15 is not installed (scripts/test-cluster installs postgresql-15)")
        ca, crt, key = make_ca(self.root / "tls", ["localhost"], ["127.0.0.1"])
        self.sock.mkdir(exist_ok=True)
        self.data.mkdir(mode=0o700, exist_ok=True)
        pwfile = self.root / "superuser-password"
        pwfile.write_text(os.urandom(12).hex() + "\n")
        self.password_file.write_text(os.urandom(16).hex() + "\n")
        self.password_file.chmod(0o600)
        for p in (self.sock, self.data, pwfile, self.root / "tls"):
            shutil.chown(p, "postgres", "postgres")
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
                     "--auth-host=scram-sha-256", "--pwfile", str(pwfile), "-E", "UTF8", "--no-instructions")
        pwfile.unlink()
        for name, src in (("server.crt", crt), ("server.key", key)):
            shutil.copy(src, self.data / name)
            shutil.chown(self.data / name, "postgres", "postgres")
        (self.data / "server.key").chmod(0o600)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"""
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = '{self.sock}'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
max_connections = 100
shared_buffers = 64MB
fsync = on
logging_collector = off
""")
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "hostnossl all all 0.0.0.0/0 reject\n")
        self.start()
        password = self.password_file.read_text().strip()
        self.psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{password}'")
        self.psql(f"CREATE DATABASE {DATABASE} OWNER {USER}")
        return self

    def start(self, timeout: float = 60) -> "Postgres":
        r = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                         "-t", str(int(timeout)), "start", check=False, timeout=timeout + 10)
        if r.returncode != 0:
            raise RuntimeError(f"postgres did not start: {r.stdout}{r.stderr}\n{self.log_text()[-3000:]}")
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def psql(self, sql: str, db: str = "postgres") -> str:
        """Runs SQL as the superuser over the Unix socket; returns the
        unaligned, tuples-only output."""
        r = _as_postgres(str(PG_BIN / "psql"), "-h", str(self.sock), "-p", str(self.port), "-U", "postgres",
                         "-d", db, "-v", "ON_ERROR_STOP=1", "-AtX", "-c", sql)
        return r.stdout.strip()

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def describe(self) -> dict:
        return {"root": str(self.root), "port": self.port, "url": self.url,
                "password_file": str(self.password_file), "ca": str(self.ca)}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[2])
    if argv[1] == "start":
        pg = Postgres(root).init()
        (root / "postgres.json").write_text(json.dumps(pg.describe()))
        print(json.dumps(pg.describe()))
    else:
        info = json.loads((root / "postgres.json").read_text())
        Postgres(root, port=info["port"]).destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
