"""The Trust page in a real browser (issue 16 on the admin UI): a key
change taken from mail waits for review next to the key in use; the
administrator compares both and accepts the new key, which the directory
then holds as the administrator's. The page lists what we publish (the
OPENPGPKEY record and WKD paths for a key imported for one of our
users), and the listener serves that key as WKD, without login, to gpg.
A CRL upload without a file is refused next to the field.

The same administrator's Update page (off the appliance: RAUC does not
answer) says the root slots are unknown, and a bundle source that is
neither an absolute path to a file nor a URL is refused next to the
field; nothing reaches RAUC."""

import base64
import os
import smtplib
import shutil
import subprocess
import time

import pytest

from webtools import PASSWORD, Client, fresh_code, setup_over_http

BOB = "bob@partner.example"
# GnuPG's WKD client (Debian keeps it out of PATH, in /usr/lib/gnupg).
WKS_CLIENT = shutil.which("gpg-wks-client") or "/usr/lib/gnupg/gpg-wks-client"
ALICE = "alice@example.org"


@pytest.fixture
def gpg(tmp_path):
    homes = []

    def run(home: str, *args, data: bytes | None = None) -> bytes:
        d = tmp_path / f"gpg-{home}"
        if not d.exists():
            d.mkdir(mode=0o700)
            homes.append(d)
        return subprocess.run(["gpg", "--homedir", str(d), "--batch", "--pinentry-mode", "loopback",
                               "--passphrase", "", *args], input=data, capture_output=True, check=True,
                              timeout=120).stdout
    yield run
    for d in homes:
        subprocess.run(["gpgconf", "--homedir", str(d), "--kill", "all"], capture_output=True,
                       env={**os.environ, "GNUPGHOME": str(d)})


def new_key(gpg, home: str, uid: str) -> tuple[str, bytes]:
    gpg(home, "--quick-gen-key", uid, "future-default", "default", "never")
    out = gpg(home, "--with-colons", "--list-keys").decode()
    fingerprint = next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))
    return fingerprint.lower(), gpg(home, "--armor", "--export")


def mail_with_autocrypt(gpg, home: str) -> str:
    keydata = base64.b64encode(gpg(home, "--export")).decode()
    folded = "\r\n ".join(keydata[i:i + 72] for i in range(0, len(keydata), 72))
    return (f"From: Bob <{BOB}>\r\nTo: {ALICE}\r\nSubject: new laptop\r\n"
            f"Message-ID: <{time.monotonic_ns()}@partner.example>\r\n"
            f"Autocrypt: addr={BOB}; keydata=\r\n {folded}\r\n\r\nmy new key\r\n")


def test_key_review_and_publishing_on_the_trust_page(gateways, browser, gpg, tmp_path):
    gw = gateways()
    used: set[str] = set()
    c, secret = setup_over_http(gw, used=used)
    old_fpr, old_key = new_key(gpg, "old", f"Bob <{BOB}>")
    new_fpr, _ = new_key(gpg, "new", f"Bob <{BOB}>")
    alice_fpr, alice_key = new_key(gpg, "alice", f"Alice <{ALICE}>")
    for key in (old_key, alice_key):
        r = c.post_multipart("/directory/import", {"text": key.decode(), "domain": ""}, {})
        assert r.status == 303, r.body[:1000]

    # A different key for bob arrives in mail: it waits for review.
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as smtp:
        smtp.sendmail(BOB, [ALICE], mail_with_autocrypt(gpg, "new"))
    deadline = time.monotonic() + 30
    while BOB not in c.get("/trust").body:
        assert time.monotonic() < deadline, "the key change never reached the review queue"
        time.sleep(0.5)

    base = f"https://127.0.0.1:{gw.web_port}"
    b = browser
    b.open(base + "/login")
    b.fill("name", "alice")
    b.fill("password", PASSWORD)
    b.fill("code", fresh_code(secret, used))
    b.submit()
    assert b.path == "/dashboard"
    b.open(base + "/trust")
    assert "Trust" in b.text("nav.nav")
    reviews = b.text("#review-list")
    assert BOB in reviews and new_fpr[:16] in reviews.lower(), reviews
    published = b.text("#publish-list")
    assert ALICE in published and "OPENPGPKEY" in published and "WKD" in published, published
    assert BOB not in published, "keys of other domains are not ours to publish"
    b.shots("trust")

    # Both keys side by side; the new one accepted (after the confirmation).
    b.click("#review-list a[href^='/trust/review']", navigates=True)
    page = b.text().lower()
    assert new_fpr in page and old_fpr in page, page[:2000]
    assert "harvested" in page and "manual" in page
    b.shots("trust-review")
    b.driver.execute_script("window.__sgOld = true;")
    b.driver.find_element("css selector", "button[name=decision][value=accept]").click()
    b.driver.switch_to.alert.accept()
    b._wait_for_new_page("accept")
    assert b.path == "/trust" and "Key accepted" in b.text()
    assert "None." in b.text("#reviews + p")
    b.open(base + "/directory?q=" + BOB)
    entries = b.text("#entries").lower()
    assert new_fpr[:16] in entries and old_fpr[:16] not in entries and "manual" in entries, entries

    # The key we publish for alice, served as WKD without a session.
    hashed = subprocess.run([WKS_CLIENT, "--print-wkd-hash", ALICE], capture_output=True, text=True,
                            check=True, timeout=30).stdout.split()[0]
    r = Client(gw.web_port).get(f"/.well-known/openpgpkey/hu/{hashed}?l=alice", headers={"Host": "example.org"})
    assert r.status == 200 and r.header("content-type") == "application/octet-stream", (r.status, r.body[:300])
    gpg("reader", "--import", data=r.data)
    assert alice_fpr in gpg("reader", "--with-colons", "--list-keys").decode().lower()

    # A CRL upload without a CRL: refused next to the form.
    r = c.post_multipart("/trust/crl", {"text": ""}, {})
    assert r.status == 422 and "Choose a CRL file" in r.body, (r.status, r.body[:1000])

    # The Update page off the appliance; bad sources are refused at the field.
    b.open(base + "/update")
    assert "Update" in b.text("nav.nav")
    assert "not known" in b.text("#slots")
    b.fill("source", "update.raucb")
    b.driver.execute_script("window.__sgOld = true;")
    b.driver.find_element("css selector", "form[action='/update'] button[type=submit]").click()
    b.driver.switch_to.alert.accept()
    b._wait_for_new_page("install")
    assert "absolute file path" in b.text("#source-error"), b.text()[:1000]
    b.shots("update")
    r = c.post("/update", {"source": str(tmp_path)})
    assert r.status == 422 and "is not a regular file" in r.body, (r.status, r.body[:1000])
