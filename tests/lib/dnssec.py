"""DNSSEC on loopback, as the gateway meets it in the world: Knot DNS
(`knotd`) serves the test zones, each signed with its own keys, and a
validating Unbound in front of it holds a trust anchor for each signed
zone. The gateway asks Unbound and believes only answers it marked
authenticated (AD), as a DANE client behind a local validating resolver
does (RFC 7672 §1.3).

    dns = SignedDns(tmp_path)
    dns.zone("partner.test", [
        "@ MX 10 mx.partner.test.",
        "mx A 127.3.4.5",
        "_25._tcp.mx TLSA 3 1 1 ab12...",
    ])
    dns.zone("plain.test", [...], signing="unsigned")      # answers without AD
    dns.zone("bad.test", [...], signing="bad-signature:TLSA")   # one RRset's RRSIG broken
    dns.zone("old.test", [...], signing="expired:TLSA")         # one RRset's RRSIG expired
    dns.start()            # dns.port: the validating resolver's port on 127.0.0.1
    dns.zone(...); dns.reload()   # change zones later (Unbound restarts: no stale cache)

Zones are signed offline with ldns-signzone (ECDSA P-256, NSEC) and
served as they are by Knot, so a test can break exactly one signature.
Every process binds 127.0.0.1 on a free port and is stopped by stop().
"""

from __future__ import annotations

import base64
import re
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

from harness import free_port

KNOTD = "/usr/sbin/knotd"
KNOTC = "/usr/sbin/knotc"
UNBOUND = "/usr/sbin/unbound"
SIGNINGS = ("good", "unsigned", "bad-signature", "expired")


def _stamp(offset_secs: int) -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() + offset_secs))


class Zone:
    def __init__(self, name: str, records: list[str], signing: str):
        kind, _, rrtype = signing.partition(":")
        if kind not in SIGNINGS:
            raise ValueError(f"signing must be one of {SIGNINGS} (with :RRTYPE for the broken ones)")
        if kind in ("bad-signature", "expired") and not rrtype:
            raise ValueError(f"{kind} needs the RRset to break, e.g. {kind}:TLSA")
        self.name = name.rstrip(".")
        self.records = records
        self.kind = kind
        self.broken_type = rrtype.upper()
        self.ds: str | None = None


class SignedDns:
    def __init__(self, workdir: Path):
        self.dir = Path(workdir) / "dns"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "zones").mkdir(exist_ok=True)
        (self.dir / "keys").mkdir(exist_ok=True)
        self.knot_port = free_port()
        self.port = free_port()
        self.zones: dict[str, Zone] = {}
        self.knot: subprocess.Popen | None = None
        self.unbound: subprocess.Popen | None = None

    # -- zones -------------------------------------------------------------

    def zone(self, name: str, records: list[str], signing: str = "good") -> "SignedDns":
        """Adds or replaces a zone. Records are zone-file lines relative to
        the zone's origin; SOA and NS are added."""
        self.zones[name.rstrip(".")] = Zone(name, records, signing)
        return self

    def _keys(self, zone: Zone) -> list[str]:
        """The zone's key files (KSK, ZSK), made once per zone name."""
        keydir = self.dir / "keys" / zone.name
        if not keydir.exists():
            keydir.mkdir()
            for ksk in (True, False):
                args = ["ldns-keygen", "-a", "ECDSAP256SHA256", *(["-k"] if ksk else []), zone.name]
                subprocess.run(args, cwd=keydir, check=True, capture_output=True, timeout=30)
        bases = sorted({p.with_suffix("").name for p in keydir.glob("K*.private")})
        ksk = [b for b in bases if (keydir / f"{b}.ds").exists()]
        zsk = [b for b in bases if b not in ksk]
        return [str(keydir / b) for b in zsk + ksk]

    def _write(self, zone: Zone) -> None:
        origin = zone.name + "."
        text = [f"$ORIGIN {origin}", "$TTL 60",
                f"@ SOA ns.{origin} hostmaster.{origin} {int(time.time())} 60 60 600 10",
                f"@ NS ns.{origin}", "ns A 127.0.0.1", *zone.records, ""]
        unsigned = self.dir / "zones" / f"{zone.name}.unsigned"
        unsigned.write_text("\n".join(text))
        out = self.dir / "zones" / f"{zone.name}.zone"
        if zone.kind == "unsigned":
            out.write_text(unsigned.read_text())
            zone.ds = None
            return
        keys = self._keys(zone)
        self._sign(unsigned, out, keys, inception=-3600, expiration=30 * 86400)
        if zone.kind == "expired":
            stale = self.dir / "zones" / f"{zone.name}.stale"
            self._sign(unsigned, stale, keys, inception=-30 * 86400, expiration=-86400)
            old = [l for l in stale.read_text().splitlines() if self._rrsig_over(l, zone.broken_type)]
            self._replace_rrsigs(out, zone.broken_type, lambda _line, i: old[i] if i < len(old) else None)
        elif zone.kind == "bad-signature":
            self._replace_rrsigs(out, zone.broken_type, lambda line, _i: _corrupt(line))
        ds = (Path(keys[-1] + ".ds")).read_text().split()
        # "name. ttl IN DS keytag alg digesttype digest" (ttl may be absent)
        zone.ds = f"{zone.name}. DS " + " ".join(ds[-4:])

    @staticmethod
    def _sign(unsigned: Path, out: Path, keys: list[str], inception: int, expiration: int) -> None:
        subprocess.run(["ldns-signzone", "-i", _stamp(inception), "-e", _stamp(expiration),
                        "-f", str(out), str(unsigned), *keys],
                       check=True, capture_output=True, timeout=30)

    @staticmethod
    def _rrsig_over(line: str, rrtype: str) -> bool:
        f = line.split()
        return len(f) > 5 and f[3] == "RRSIG" and f[4] == rrtype

    def _replace_rrsigs(self, path: Path, rrtype: str, make) -> None:
        lines = path.read_text().splitlines()
        n = 0
        for i, line in enumerate(lines):
            if self._rrsig_over(line, rrtype):
                replacement = make(line, n)
                if replacement is None:
                    raise RuntimeError(f"no replacement signature over {rrtype}")
                lines[i] = replacement
                n += 1
        if n == 0:
            raise RuntimeError(f"{path.name}: no RRSIG over {rrtype} to break")
        path.write_text("\n".join(lines) + "\n")

    # -- servers -----------------------------------------------------------

    def _knot_conf(self) -> Path:
        conf = self.dir / "knot.conf"
        zones = "".join(f'  - domain: "{z}"\n    file: "{self.dir}/zones/{z}.zone"\n' for z in self.zones)
        conf.write_text(f"""\
server:
    rundir: "{self.dir}"
    listen: 127.0.0.1@{self.knot_port}
    background-workers: 1
    udp-workers: 1
    tcp-workers: 1
database:
    storage: "{self.dir}/knot-db"
log:
  - target: "{self.dir}/knot.log"
    any: info
template:
  - id: default
    semantic-checks: off
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
{zones}""")
        return conf

    def _unbound_conf(self) -> Path:
        conf = self.dir / "unbound.conf"
        anchors = "".join(f'    trust-anchor: "{z.ds}"\n' for z in self.zones.values() if z.ds)
        stubs = "".join(f'stub-zone:\n    name: "{z}"\n    stub-addr: 127.0.0.1@{self.knot_port}\n'
                        for z in self.zones)
        conf.write_text(f"""\
server:
    interface: 127.0.0.1
    port: {self.port}
    do-ip6: no
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{self.dir}"
    pidfile: ""
    use-syslog: no
    logfile: "{self.dir}/unbound.log"
    verbosity: 1
    val-log-level: 2
    log-servfail: yes
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "validator iterator"
    qname-minimisation: no
    harden-referral-path: no
    target-fetch-policy: "0 0 0 0 0"
    cache-max-ttl: 5
    cache-max-negative-ttl: 1
    val-bogus-ttl: 1
    # RFC 6761 names are served empty by default: the tests use .test.
    local-zone: "test." nodefault
{anchors}{stubs}""")
        return conf

    def start(self) -> "SignedDns":
        for z in self.zones.values():
            self._write(z)
        self.knot = subprocess.Popen([KNOTD, "-c", str(self._knot_conf())],
                                     stdout=subprocess.DEVNULL, stderr=open(self.dir / "knotd.err", "ab"))
        _wait(lambda: _answers(self.knot_port, next(iter(self.zones)), "SOA"), "knotd",
              lambda: self.knot.poll() is None, self.dir / "knot.log")
        self._start_unbound()
        return self

    def _start_unbound(self) -> None:
        self.unbound = subprocess.Popen([UNBOUND, "-d", "-c", str(self._unbound_conf())],
                                        stdout=subprocess.DEVNULL, stderr=open(self.dir / "unbound.err", "ab"))
        _wait(lambda: _answers(self.port, next(iter(self.zones)), "SOA"), "unbound",
              lambda: self.unbound.poll() is None, self.dir / "unbound.err")

    def reload(self) -> None:
        """Re-signs every zone and makes both servers serve the new data
        (Unbound restarts, so nothing stale is cached)."""
        for z in self.zones.values():
            self._write(z)
        self._knot_conf()
        subprocess.run([KNOTC, "-c", str(self.dir / "knot.conf"), "-s", str(self.dir / "knot.sock"), "reload"],
                       check=True, capture_output=True, timeout=30)
        for z in self.zones:
            subprocess.run([KNOTC, "-c", str(self.dir / "knot.conf"), "-s", str(self.dir / "knot.sock"),
                            "zone-reload", z], capture_output=True, timeout=30)
        _stop(self.unbound)
        time.sleep(0.3)
        self._start_unbound()

    def query(self, name: str, rrtype: str) -> tuple[int, bool, int]:
        """(rcode, authenticated, answer count) from the validating resolver."""
        return _query(self.port, name, rrtype)

    def stop(self) -> None:
        _stop(self.unbound)
        _stop(self.knot)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _corrupt(rrsig_line: str) -> str:
    """The same RRSIG with its signature changed in one byte."""
    fields = rrsig_line.split()
    sig = bytearray(base64.b64decode("".join(fields[12:])))
    sig[len(sig) // 2] ^= 0x01
    return " ".join(fields[:12] + [base64.b64encode(bytes(sig)).decode()])


TYPES = {"A": 1, "NS": 2, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28, "TLSA": 52, "SMIMEA": 53,
         "OPENPGPKEY": 61, "DNSKEY": 48}


def _query(port: int, name: str, rrtype: str, timeout: float = 2.0) -> tuple[int, bool, int]:
    qid = int(time.monotonic() * 1000) & 0xFFFF
    # RD and AD set, one question, an OPT record with DO.
    header = struct.pack(">HHHHHH", qid, 0x0120, 1, 0, 0, 1)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    opt = b"\0" + struct.pack(">HHIH", 41, 1232, 0x8000, 0)
    packet = header + qname + struct.pack(">HH", TYPES[rrtype], 1) + opt
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, ("127.0.0.1", port))
        reply = s.recv(65535)
    flags, = struct.unpack(">H", reply[2:4])
    ancount, = struct.unpack(">H", reply[6:8])
    return flags & 0x000F, bool(flags & 0x0020), ancount


def _answers(port: int, zone: str, rrtype: str) -> bool:
    try:
        rcode, _, _ = _query(port, zone, rrtype, timeout=0.5)
        return rcode == 0
    except OSError:
        return False


def _wait(ready, what: str, alive, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"{what} exited: " + (log.read_text(errors="replace")[-2000:] if log.exists() else ""))
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer in time: " + (log.read_text(errors="replace")[-2000:] if log.exists() else ""))


def _stop(proc: subprocess.Popen | None) -> None:
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def tlsa_3_1_1(cert_pem: bytes) -> str:
    """The TLSA 3 1 1 record data (DANE-EE, SPKI, SHA-256) for a PEM certificate."""
    pub = subprocess.run(["openssl", "x509", "-noout", "-pubkey"], input=cert_pem,
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         capture_output=True, check=True).stdout
    import hashlib
    return "3 1 1 " + hashlib.sha256(der).hexdigest()


def tlsa_2_0_1(ca_pem: bytes) -> str:
    """The TLSA 2 0 1 record data (DANE-TA, full certificate, SHA-256)."""
    der = subprocess.run(["openssl", "x509", "-outform", "DER"], input=ca_pem,
                         capture_output=True, check=True).stdout
    import hashlib
    return "2 0 1 " + hashlib.sha256(der).hexdigest()


def txt(value: str) -> str:
    """A TXT record's data, split into 255-octet strings and quoted."""
    chunks = [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"' + re.sub(r'(["\\])', r"\\\1", c) + '"' for c in chunks)
