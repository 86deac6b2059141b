"""Backup and restore, round trip: gateway A is set up in the browser's
way (HTTPS forms), gets a second account, a second mail domain and a
recipient's certificate in its directory; its Backup page gives an
encrypted file. A fresh gateway B restores it from its setup wizard;
then A's administrator logs in to B with A's password and TOTP, and B
shows A's settings, directory and accounts. A wrong passphrase and a
damaged file are refused next to the field and change nothing. The CLI
verb makes a backup that opens the same way."""

import re
import subprocess

from webtools import PASSWORD, Client, fresh_code, setup_over_http, setup_token

PASSPHRASE = "river lantern copper seven"


def recipient_cert(tmp_path) -> str:
    key, pem = tmp_path / "bob.key", tmp_path / "bob.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(pem), "-days", "30", "-subj", "/CN=Bob Partner",
                    "-addext", "subjectAltName=email:bob@partner.example",
                    "-addext", "basicConstraints=critical,CA:FALSE",
                    "-addext", "keyUsage=digitalSignature,keyEncipherment",
                    "-addext", "extendedKeyUsage=emailProtection"],
                   check=True, capture_output=True)
    return pem.read_text()


def test_backup_from_a_restores_into_a_fresh_b(gateways, tmp_path, browser):
    used: set[str] = set()
    a = gateways(name="a")
    ca, secret = setup_over_http(a, used=used)
    # Things that make A this gateway: an operator, a second domain, a certificate.
    r = ca.post("/accounts", {"name": "oscar", "role": "operator", "password": "operator pass 2026"})
    assert r.status == 303, r.body[:2000]
    a.cli("settings", "set", "relay.domains", '["example.org", "second.example"]')
    r = ca.post_multipart("/directory/import", {"text": recipient_cert(tmp_path), "domain": ""}, {})
    assert r.status == 303, r.body[:2000]
    assert "bob@partner.example" in ca.get("/directory").body

    # The Backup page: passphrases that differ, or are short, are refused next to the field.
    r = ca.post("/backup/create", {"passphrase": PASSPHRASE, "passphrase2": PASSPHRASE + "x"})
    assert r.status == 422 and 'id="passphrase2-error"' in r.body
    r = ca.post("/backup/create", {"passphrase": "short", "passphrase2": "short"})
    assert r.status == 422 and 'id="passphrase-error"' in r.body and "12 characters" in r.body
    r = ca.post("/backup/create", {"passphrase": PASSPHRASE, "passphrase2": PASSPHRASE})
    assert r.status == 200, r.body[:2000]
    assert re.search(r'attachment; filename="sealgate-backup-[\w-]+-\d{4}-\d\d-\d\d\.sgbk"',
                     r.header("content-disposition") or ""), r.headers
    backup = r.data
    assert backup.startswith(b"SGBK1\n")
    for secret_text in (b"oscar", b"bob@partner.example", b"second.example", b"argon2"):
        assert secret_text not in backup, f"{secret_text!r} readable in the encrypted backup"
    (tmp_path / "a.sgbk").write_bytes(backup)
    # The page itself, photographed.
    base = f"https://127.0.0.1:{a.web_port}"
    browser.open(base + "/login")
    browser.fill("name", "alice")
    browser.fill("password", PASSWORD)
    browser.fill("code", fresh_code(secret, used))
    browser.submit()
    browser.open(base + "/backup")
    assert "Download a backup" in browser.text()
    browser.shots("backup")

    # B: a fresh install, restored from its wizard.
    b = gateways(name="b")
    cb = Client(b.web_port)
    assert cb.post("/setup/unlock", {"token": setup_token(b)}).status == 303
    r = cb.post_multipart("/setup/restore", {"passphrase": "wrong passphrase here"}, {"file": ("a.sgbk", backup)})
    assert r.status == 422 and 'id="restore-passphrase-error"' in r.body, r.body[:2000]
    damaged = bytearray(backup)
    damaged[-1] ^= 1
    r = cb.post_multipart("/setup/restore", {"passphrase": PASSPHRASE}, {"file": ("a.sgbk", bytes(damaged))})
    assert r.status == 422, r.status
    assert cb.get("/setup/admin").status == 200, "a refused restore leaves the wizard open"
    r = cb.post_multipart("/setup/restore", {"passphrase": PASSPHRASE}, {"file": ("a.sgbk", backup)})
    assert r.status == 303 and r.header("location") == "/login?done=restored", (r.status, r.body[:2000])
    assert "The backup is restored" in Client(b.web_port).get("/login?done=restored").body
    # The wizard is gone; A's administrator logs in with A's password and second factor.
    assert not (b.data_dir / "setup-token").exists()
    login = Client(b.web_port)
    r = login.post("/login", {"name": "alice", "password": PASSWORD, "code": fresh_code(secret, used)})
    assert r.status == 303 and r.header("location").startswith("/dashboard"), (r.status, r.body[:1000])
    assert "oscar" in login.get("/accounts").body
    assert "bob@partner.example" in login.get("/directory").body
    settings = login.get("/settings").body
    assert "second.example" in settings and "gw.example.org" in settings
    # B's own CLI sees the restored settings in force.
    assert "second.example" in b.cli("settings", "get", "relay.domains").stdout

    # The CLI verb: a backup of B written to a file, opened by a restore into a third gateway.
    out = tmp_path / "b.sgbk"
    done = b.cli("backup", "create", str(out), input_text=PASSPHRASE + "\n")
    assert "settings versions" in done.stdout and out.read_bytes().startswith(b"SGBK1\n")
    c = gateways(name="c")
    wrong = c.cli("backup", "restore", str(out), input_text="not the passphrase\n", check=False)
    assert wrong.returncode != 0 and "passphrase" in wrong.stderr
    ok = c.cli("backup", "restore", str(out), input_text=PASSPHRASE + "\n")
    assert "restored" in ok.stdout and "accounts" in ok.stdout
    assert "second.example" in c.cli("settings", "get", "relay.domains").stdout
