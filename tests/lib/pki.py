"""A test certificate authority made with the openssl command line: server
certificates for TLS peers (right name, wrong name, self-signed, expired),
S/MIME certificates for people (with CRL distribution points), and CRLs.

    ca = TestCA(tmp_path / "ca", "Test Root")
    cert, key = ca.server("mx.partner.test")              # PEM paths
    cert, key = ca.server("other.test")                   # a wrong name for mx.partner.test
    cert, key = self_signed(tmp_path, "mx.partner.test")
    cert, key = ca.person("bob@partner.test", crl_url="http://crl.partner.test/ca.crl")
    ca.revoke(cert); crl_der = ca.crl()
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def _run(*args: str, cwd: Path | None = None, input: bytes | None = None) -> bytes:
    return subprocess.run(list(args), cwd=cwd, input=input, capture_output=True, check=True,
                          timeout=60).stdout


class TestCA:
    __test__ = False  # not a pytest class

    def __init__(self, directory: Path, name: str = "Sealgate Test Root", days: int = 30):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.key = self.dir / "ca.key"
        self.cert = self.dir / "ca.pem"
        self.serial = 1000
        (self.dir / "index.txt").write_text("")
        (self.dir / "crlnumber").write_text("01\n")
        (self.dir / "openssl.cnf").write_text(f"""\
[ca]
default_ca = test
[test]
dir = {self.dir}
database = {self.dir}/index.txt
new_certs_dir = {self.dir}
certificate = {self.cert}
private_key = {self.key}
crlnumber = {self.dir}/crlnumber
default_md = sha256
default_crl_days = 7
policy = anything
[anything]
commonName = supplied
[v3_ca]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
""")
        _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(self.key), "-out", str(self.cert), "-days", str(days),
             "-subj", f"/CN={name}", "-config", str(self.dir / "openssl.cnf"), "-extensions", "v3_ca")

    def pem(self) -> bytes:
        return self.cert.read_bytes()

    def _issue(self, stem: str, subject: str, extensions: str, key_args: list[str],
               days: int = 30) -> tuple[Path, Path]:
        key = self.dir / f"{stem}.key"
        csr = self.dir / f"{stem}.csr"
        cert = self.dir / f"{stem}.pem"
        ext = self.dir / f"{stem}.ext"
        ext.write_text(extensions)
        _run("openssl", "req", "-new", *key_args, "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", subject)
        self.serial += 1
        _run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
             "-set_serial", str(self.serial), "-out", str(cert), "-extfile", str(ext), "-sha256",
             "-days", str(days))
        return cert, key

    def server(self, *names: str, days: int = 30) -> tuple[Path, Path]:
        """A TLS server certificate for `names` (DNS), signed by this CA."""
        sans = ",".join(f"DNS:{n}" for n in names)
        return self._issue(f"server-{names[0]}-{self.serial}", f"/CN={names[0]}",
                           f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n",
                           ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], days=days)

    def person(self, address: str, crl_url: str | None = None, rsa: bool = True,
               days: int = 30) -> tuple[Path, Path]:
        """An S/MIME certificate for `address` (RSA by default, so gpgsm and
        NSS read what is encrypted to it)."""
        ext = (f"subjectAltName=email:{address}\nextendedKeyUsage=emailProtection\n"
               "keyUsage=digitalSignature,keyEncipherment\nbasicConstraints=CA:false\n")
        if crl_url:
            ext += f"crlDistributionPoints=URI:{crl_url}\n"
        key_args = ["-newkey", "rsa:2048"] if rsa else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        return self._issue(f"person-{address}-{self.serial}", f"/CN={address}", ext, key_args, days=days)

    def revoke(self, cert: Path) -> None:
        """Marks `cert` revoked in the CA's database (for the next crl())."""
        serial = _run("openssl", "x509", "-in", str(cert), "-noout", "-serial").decode().strip().split("=")[1]
        subject = _run("openssl", "x509", "-in", str(cert), "-noout", "-subject", "-nameopt", "compat")
        subject = subject.decode().strip().removeprefix("subject=").strip()
        enddate = _run("openssl", "x509", "-in", str(cert), "-noout", "-enddate").decode().strip().split("=")[1]
        import time as _t
        import email.utils as _eu
        end = _t.strftime("%y%m%d%H%M%SZ", _t.gmtime(_eu.mktime_tz(_eu.parsedate_tz(enddate.replace(" GMT", " +0000")))))
        now = _t.strftime("%y%m%d%H%M%SZ", _t.gmtime())
        with open(self.dir / "index.txt", "a") as f:
            f.write(f"R\t{end}\t{now}\t{serial}\tunknown\t{subject if subject.startswith('/') else '/' + subject}\n")

    def crl(self) -> bytes:
        """A fresh CRL (DER) listing every revoked certificate."""
        pem = self.dir / "crl.pem"
        _run("openssl", "ca", "-config", str(self.dir / "openssl.cnf"), "-gencrl", "-out", str(pem))
        return _run("openssl", "crl", "-in", str(pem), "-outform", "DER")


def self_signed(directory: Path, name: str, days: int = 30) -> tuple[Path, Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / f"self-{name}.key"
    cert = directory / f"self-{name}.pem"
    _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", str(days), "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name}", "-addext", "basicConstraints=critical,CA:FALSE")
    return cert, key
