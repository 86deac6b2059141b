"""The key directory through the CLI, against a running daemon and a stopped
one: import (addresses and partner domains), list, show, remove; importing a
certificate releases mail held for its address at once, and mail that needs
encryption still never goes out in clear."""

import json
import re
import subprocess
import time

from smtp_conftest import outbox_messages, send_message, wait_outbox

from test_policy import POLICY, SENDER, envelope_to, msg, queue_json, statuses, wait_status


def make_cert(tmp_path, name: str, email: str | None, days: int = 30, usage: str = "keyEncipherment") -> str:
    key, crt = tmp_path / f"{name}.key", tmp_path / f"{name}.pem"
    args = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
            "-days", str(days), "-subj", f"/CN={name}", "-addext", f"keyUsage=critical,{usage}",
            "-addext", "extendedKeyUsage=emailProtection", "-addext", "basicConstraints=critical,CA:FALSE"]
    if email:
        args += ["-addext", f"subjectAltName=email:{email}"]
    subprocess.run(args, check=True, capture_output=True)
    return str(crt)


def events(gw, rcpt):
    return json.loads(gw.cli("track", "--to", rcpt, "--json").stdout)


def decrypt_cms(tmp_path, raw: bytes, name: str) -> bytes:
    """openssl cms -decrypt with the test certificate's key (the real peer)."""
    src = tmp_path / f"{name}.in.eml"
    src.write_bytes(raw)
    out = subprocess.run(["openssl", "cms", "-decrypt", "-in", str(src), "-inkey", str(tmp_path / f"{name}.key"),
                          "-recip", str(tmp_path / f"{name}.pem")], capture_output=True, check=True)
    return out.stdout


def test_import_releases_held_mail_encrypted_for_the_recipient(gateway_factory, tmp_path):
    gw = gateway_factory({"policy": POLICY})
    send_message(gw.port, SENDER, ["bob@ext.example"], msg("[secure] offer", "the secret offer"))
    wait_status(gw, lambda e: statuses(e).get("bob@ext.example") == "held")
    time.sleep(0.5)
    assert not any("bob@ext.example" in envelope_to(x) for x in outbox_messages(gw))
    out = gw.cli("directory", "import", make_cert(tmp_path, "bob", "Bob@Ext.Example"))
    assert "imported" in out.stdout and "bob@ext.example" in out.stdout, out.stdout
    # Released by the directory and sent S/MIME-encrypted to bob's certificate.
    got = wait_outbox(gw, lambda m: any("bob@ext.example" in envelope_to(x) for x in m))
    raw = [x for x in got if "bob@ext.example" in envelope_to(x)][0]
    assert b"the secret offer" not in raw
    assert re.search(rb"(?im)^Content-Type: application/pkcs7-mime;.*smime-type=enveloped-data", raw)
    assert re.search(rb"(?m)^Subject: offer\r$", raw), raw[:500]  # keyword removed, subject visible
    inner = decrypt_cms(tmp_path, raw, "bob")
    assert b"the secret offer" in inner
    assert any(e["kind"] == "released" and e["remote"] == "directory" for e in events(gw, "bob@ext.example"))


def test_partner_domain_certificate_serves_every_address(gateway_factory, tmp_path):
    gw = gateway_factory({"policy": {**POLICY, "domain": {"partner.example": {"action": "encrypt-required"}}}})
    gw.cli("directory", "import", make_cert(tmp_path, "partnergw", None), "--domain", "partner.example")
    send_message(gw.port, SENDER, ["kim@partner.example", "lou@partner.example"], msg("contract", "for the partner"))
    got = wait_outbox(gw, lambda m: sum(1 for x in m for r in envelope_to(x) if r.endswith("@partner.example")) >= 2)
    copies = [x for x in got if any(r.endswith("@partner.example") for r in envelope_to(x))]
    # One copy for the partner gateway, addressed to both, as an MTA sends it.
    assert len(copies) == 1 and sorted(envelope_to(copies[0])) == ["kim@partner.example", "lou@partner.example"]
    assert b"for the partner" not in copies[0]
    assert b"for the partner" in decrypt_cms(tmp_path, copies[0], "partnergw")


def test_directory_verbs_running_and_stopped(gateway_factory, tmp_path):
    gw = gateway_factory({"policy": POLICY})
    carol = make_cert(tmp_path, "carol", "carol@ext.example")
    gw.cli("directory", "import", carol)
    gw.cli("directory", "import", make_cert(tmp_path, "partner", None), "--domain", "partner.example")
    bad = gw.cli("directory", "import", make_cert(tmp_path, "noaddr", None), check=False)
    assert bad.returncode != 0 and "no e-mail address" in (bad.stderr + bad.stdout)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    assert gw.cli("directory", "import", str(junk), check=False).returncode != 0
    listed = json.loads(gw.cli("directory", "list", "--json").stdout)
    assert sorted((e["domain"] or ",".join(e["addresses"])) for e in listed) == ["carol@ext.example", "partner.example"]
    assert all(e["trust"] == "manual" and e["source"] == "cli" and "data" not in e for e in listed)
    show = gw.cli("directory", "show", "carol@ext.example").stdout
    assert "BEGIN CERTIFICATE" in show
    pem = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256"], input=show[show.index("-----BEGIN"):],
                         capture_output=True, text=True, check=True).stdout
    fpr = pem.split("=", 1)[1].strip().replace(":", "").lower()
    assert fpr in show
    # Stopped daemon: the CLI works on the data directory itself.
    gw.stop()
    gone = gw.cli("directory", "remove", fpr[:12])
    assert "removed" in gone.stdout
    listed = json.loads(gw.cli("directory", "list", "--json").stdout)
    assert [e["domain"] for e in listed] == ["partner.example"]
    gw.start()
    assert "partner.example" in gw.cli("directory", "list").stdout


def test_expired_certificate_is_not_a_method(gateway_factory, tmp_path):
    gw = gateway_factory({"policy": POLICY})
    out = gw.cli("directory", "import", make_cert(tmp_path, "dan", "dan@ext.example", usage="digitalSignature"))
    assert "NOT usable" in out.stdout
    send_message(gw.port, SENDER, ["dan@ext.example"], msg("[secure] x", "x"))
    entries = wait_status(gw, lambda e: statuses(e).get("dan@ext.example") == "held")
    assert "no certificate or key" in json.dumps(entries)
