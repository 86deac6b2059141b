"""Certificates in the browser's forms, on a gateway with its own
SoftHSM token as the appliance's first boot leaves it (keys, no
certificates):

- wizard step 5 takes an uploaded PEM chain and key, and after setup
  both listeners (HTTPS and SMTP STARTTLS) present that chain;
- wizard step 6 creates the gateway's S/MIME certificates and OpenPGP
  identity on the token;
- the Keys page offers the decryption certificate with its whole chain
  (openssl verifies it for S/MIME encryption; only the decryption
  certificate carries the gateway's address, so NSS, looking the gateway
  up by address as a mail client does, encrypts to the key the gateway
  opens) and the text for users;
- a CSR made for a token key, signed by a CA (openssl), is imported;
- a TLS key that does not belong to the certificate is refused next to
  the field."""

import re
import socket
import ssl
import subprocess

from harness import free_port
from hsm_token import token_gateway
from webtools import PASSWORD, fresh_code, setup_over_http

ADDRESS = "gateway@example.org"


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, text=True, **kw)


def make_pki(d):
    """A CA of the test's own and a server certificate for gw.example.org."""
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem",
       "-days", "30", "-subj", "/CN=Test TLS CA", "-addext", "basicConstraints=critical,CA:TRUE",
       "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/tls.key", "-out", f"{d}/tls.csr",
       "-subj", "/CN=gw.example.org")
    (d / "ext.cnf").write_text("subjectAltName=DNS:gw.example.org\nextendedKeyUsage=serverAuth\n")
    sh("openssl", "x509", "-req", "-in", f"{d}/tls.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key",
       "-CAcreateserial", "-out", f"{d}/tls.pem", "-days", "30", "-extfile", f"{d}/ext.cnf")
    sh("openssl", "genrsa", "-out", f"{d}/other.key", "2048")


def pems(text: str) -> list[str]:
    return re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", text, re.S)


def presented_by_web(port: int) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s, ctx.wrap_socket(s) as t:
        return t.getpeercert(binary_form=True)


def test_certificates_from_the_wizard_and_the_keys_page(tmp_path, browser):
    d = tmp_path / "pki"
    d.mkdir()
    make_pki(d)
    web_port = free_port()
    gw = token_gateway(tmp_path / "gw", {"web": {"listen": [f"127.0.0.1:{web_port}"]}}, certificates=False)
    gw.web_port = web_port
    gw.start()
    try:
        used: set[str] = set()
        leaf_pem = (d / "tls.pem").read_text()
        chain = leaf_pem + (d / "ca.pem").read_text()
        seen = {}

        def keys_step(c):
            page = c.get("/setup/keys").body
            assert "gateway-decrypt" in page and 'id="smime-form"' in page
            r = c.post("/setup/keys/smime", {"address": "not an address", "common_name": "gw.example.org"})
            assert r.status == 422 and "not a mail address" in r.body, r.body[:2000]
            r = c.post("/setup/keys/smime", {"address": ADDRESS, "common_name": "gw.example.org"})
            assert r.status == 303, r.body[:2000]
            r = c.post("/setup/keys/openpgp", {"user_id": f"Sealgate gateway <{ADDRESS}>"})
            assert r.status == 303, r.body[:2000]
            page = c.get("/setup/keys").body
            assert ADDRESS in page and 'id="openpgp-fingerprint"' in page, page[:3000]
            seen["setup-keys"] = page

        c, secret = setup_over_http(gw, used=used, keys_step=keys_step,
                                    certificate={"choice": "uploaded", "certificate": chain,
                                                 "private_key": (d / "tls.key").read_text()})
        # Both listeners present the uploaded chain now.
        leaf_der = ssl.PEM_cert_to_DER_cert(leaf_pem)
        assert presented_by_web(web_port) == leaf_der, "the web listener does not present the uploaded certificate"
        smtp = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{gw.port}", "-starttls", "smtp",
                               "-showcerts"], input="", capture_output=True, text=True, timeout=30)
        subjects = re.findall(r"s:\s*CN\s*=\s*([^\n]+)", smtp.stdout)
        assert subjects[:2] == ["gw.example.org", "Test TLS CA"], smtp.stdout[:3000]

        # The Keys page: the decryption certificate with its chain.
        keys = c.get("/keys").body
        assert 'id="for-users"' in keys and ADDRESS in keys
        r = c.get("/keys/download/gateway-decrypt")
        assert r.status == 200 and "gateway-decrypt-chain.pem" in (r.header("content-disposition") or "")
        certs = pems(r.body)
        assert len(certs) == 2, f"the download carries {len(certs)} certificates, not the leaf and its CA"
        (d / "gw-leaf.pem").write_text(certs[0])
        (d / "gw-ca.pem").write_text(certs[1])
        leaf_text = sh("openssl", "x509", "-in", f"{d}/gw-leaf.pem", "-noout", "-text").stdout
        ca_text = sh("openssl", "x509", "-in", f"{d}/gw-ca.pem", "-noout", "-text").stdout
        assert f"email:{ADDRESS}" in leaf_text
        assert "email:" not in ca_text, "the signing CA carries a mail address: a lookup by address finds it"
        verify = sh("openssl", "verify", "-purpose", "smimeencrypt", "-CAfile", f"{d}/gw-ca.pem", f"{d}/gw-leaf.pem")
        assert "OK" in verify.stdout
        # NSS, as a mail client: the downloaded chain imported, the gateway
        # looked up by its address; the message it makes opens on the token.
        nss = tmp_path / "nss"
        nss.mkdir()
        sh("certutil", "-N", "-d", f"sql:{nss}", "--empty-password")
        sh("certutil", "-A", "-d", f"sql:{nss}", "-n", "gateway-ca", "-t", "C,C,C", "-i", f"{d}/gw-ca.pem")
        sh("certutil", "-A", "-d", f"sql:{nss}", "-n", "gateway", "-t", ",,", "-i", f"{d}/gw-leaf.pem")
        (d / "inner.txt").write_bytes(b"Content-Type: text/plain\r\n\r\nencrypted by NSS to the gateway\r\n")
        sh("cmsutil", "-E", "-r", ADDRESS, "-d", f"sql:{nss}", "-i", f"{d}/inner.txt", "-o", f"{d}/nss.p7m")
        import base64
        body = base64.encodebytes((d / "nss.p7m").read_bytes()).decode().replace("\n", "\r\n")
        message = ("MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; "
                   "name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body)
        opened = gw.cli("smime", "decrypt", "--key-label", "gateway-decrypt", input_text=message, check=False)
        assert opened.returncode == 0 and "encrypted by NSS to the gateway" in opened.stdout, opened.stderr
        readme = c.get("/keys/download/readme")
        assert readme.status == 200 and ADDRESS in readme.body and "fingerprint" in readme.body.lower()
        fp = sh("openssl", "x509", "-in", f"{d}/gw-leaf.pem", "-noout", "-fingerprint", "-sha256").stdout
        assert fp.split("=", 1)[1].strip().replace(":", "").lower() in readme.body
        assert "BEGIN PGP PUBLIC KEY BLOCK" in c.get("/keys/download/openpgp").body

        # A TLS key that is not the certificate's is refused next to its field.
        r = c.post("/keys/tls", {"certificate": chain, "private_key": (d / "other.key").read_text()})
        assert r.status == 422 and "does not belong" in r.body, r.body[:3000]

        # A CSR for the signing key, signed by a CA, imported.
        r = c.post("/keys/csr", {"label": "gateway-sign", "common_name": "gw.example.org", "emails": ""})
        m = re.search(r"-----BEGIN CERTIFICATE REQUEST-----.*?-----END CERTIFICATE REQUEST-----", r.body, re.S)
        assert r.status == 200 and m, r.body[:2000]
        (d / "sign.csr").write_text(m.group(0) + "\n")
        sh("openssl", "req", "-in", f"{d}/sign.csr", "-verify", "-noout")
        (d / "sign.cnf").write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature,keyCertSign\n")
        sh("openssl", "x509", "-req", "-in", f"{d}/sign.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key",
           "-CAcreateserial", "-out", f"{d}/sign.pem", "-days", "30", "-extfile", f"{d}/sign.cnf")
        r = c.post("/keys/import", {"label": "gateway-sign",
                                    "certificate": (d / "sign.pem").read_text() + (d / "ca.pem").read_text()})
        assert r.status == 303, r.body[:3000]
        assert "Test TLS CA" in c.get("/keys").body

        # The pages, photographed.
        base = f"https://127.0.0.1:{web_port}"
        browser.open(base + "/login")
        browser.fill("name", "alice")
        browser.fill("password", PASSWORD)
        browser.fill("code", fresh_code(secret, used))
        browser.submit()
        browser.open(base + "/keys")
        assert "For internal users" in browser.text()
        browser.shots("keys-with-certificates")
    finally:
        gw.stop()
        if gw.log_path.exists():
            print(gw.log_path.read_text(errors="replace")[-3000:])
