"""Helpers of the web suites: a gateway with its web listener, an HTTPS
client that does not check the self-signed certificate, TOTP codes
computed like an authenticator app, headless Chromium over WebDriver
(Debian's chromium + chromium-driver, nothing downloaded), and the
screenshots every run writes."""

import base64
import hashlib
import hmac
import http.client
import os
import re
import ssl
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from harness import Gateway, free_port

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("SEALGATE_SCREENSHOTS", REPO / "target" / "screenshots"))
PASSWORD = "Vm4-tolu-rapid-cedar-92"


def totp(secret_b32: str, at: float | None = None, offset: int = 0) -> str:
    """RFC 6238 code (SHA-1, 6 digits, 30 s) for a base32 secret."""
    secret_b32 = secret_b32.replace(" ", "").upper()
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    counter = int((at if at is not None else time.time()) // 30) + offset
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    o = mac[-1] & 0x0F
    return f"{(struct.unpack('>I', mac[o:o + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def fresh_code(secret_b32: str, used: set[str]) -> str:
    """A code not used before (waits for the next 30-second step if needed)."""
    for _ in range(70):
        code = totp(secret_b32)
        if code not in used:
            used.add(code)
            return code
        time.sleep(0.5)
    raise AssertionError("no fresh TOTP code within 35 s")


def web_gateway(workdir: Path, settings: dict | None = None) -> Gateway:
    """A gateway with its web listener on a free loopback port (`gw.web_port`)."""
    web_port = free_port()
    s = {"web": {"listen": [f"127.0.0.1:{web_port}"]}}
    for k, v in (settings or {}).items():
        if isinstance(v, dict) and isinstance(s.get(k), dict):
            s[k] = {**s[k], **v}
        else:
            s[k] = v
    gw = Gateway(workdir, s)
    gw.web_port = web_port
    return gw


def setup_token(gw: Gateway) -> str:
    return (gw.data_dir / "setup-token").read_text().strip()


@dataclass
class Reply:
    status: int
    headers: dict[str, list[str]]
    body: str

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


@dataclass
class Client:
    """HTTPS to the gateway's web port: keeps the session cookie like a
    browser would (it is `__Host-`, Secure), sends browser-like
    Sec-Fetch-Site/Origin on POST unless told otherwise."""
    port: int
    cookies: dict[str, str] = field(default_factory=dict)
    source: str | None = None

    def request(self, method: str, path: str, form: dict | None = None, headers: dict | None = None,
                body: bytes | None = None, browser: bool = True) -> Reply:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=30,
                                           source_address=(self.source, 0) if self.source else None)
        h = {"Host": f"127.0.0.1:{self.port}"}
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if form is not None:
            body = urlencode(form, doseq=True).encode()
            h["Content-Type"] = "application/x-www-form-urlencoded"
        if method == "POST" and browser:
            h["Sec-Fetch-Site"] = "same-origin"
            h["Origin"] = f"https://127.0.0.1:{self.port}"
        h.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read().decode(errors="replace")
            hs: dict[str, list[str]] = {}
            for k, v in r.getheaders():
                hs.setdefault(k.lower(), []).append(v)
            self.last_set_cookie = hs.get("set-cookie", [])
            for c in hs.get("set-cookie", []):
                name, _, rest = c.partition("=")
                value = rest.split(";", 1)[0]
                if "Max-Age=0" in c or not value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = value
            return Reply(r.status, hs, data)
        finally:
            conn.close()

    def get(self, path: str, **kw) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, form: dict, **kw) -> Reply:
        return self.request("POST", path, form=form, **kw)


def secret_from(page: str) -> str:
    m = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page)
    assert m, "no TOTP secret on the page"
    return m.group(1).replace(" ", "")


def setup_over_http(gw: Gateway, admin: str = "alice", used: set[str] | None = None) -> tuple[Client, str]:
    """Runs the wizard with plain HTTPS requests (not a browser): for the
    suites that need a set-up gateway. Returns the logged-in client and
    the administrator's TOTP secret."""
    used = used if used is not None else set()
    c = Client(gw.web_port)
    r = c.post("/setup/unlock", {"token": setup_token(gw)})
    assert r.status == 303, (r.status, r.body[:500])
    r = c.post("/setup/admin", {"name": admin, "password": PASSWORD, "password2": PASSWORD})
    assert r.status == 200, r.body[:2000]
    secret = secret_from(r.body)
    r = c.post("/setup/admin/confirm", {"code": fresh_code(secret, used), "secret": secret, "account": admin})
    assert r.status == 303, r.body[:2000]
    r = c.post("/setup/identity", {"hostname": "gw.example.org", "domains": "example.org",
                                   "networks": "127.0.0.0/8"})
    assert r.status == 303, r.body[:2000]
    r = c.post("/setup/delivery", {"mode": "mx", "smarthost": "", "require_tls": "", "internal_server": ""})
    assert r.status == 303, r.body[:2000]
    assert c.post("/setup/certificate", {"choice": "generated"}).status == 303
    assert c.post("/setup/keys", {}).status == 303
    assert c.post("/setup/policy", {"outbound": "encrypt-if-possible", "boundary_only": "on"}).status == 303
    r = c.post("/setup/finish", {})
    assert r.status == 303 and r.header("location").startswith("/dashboard"), (r.status, r.body[:2000])
    return c, secret


class Browser:
    """Headless Chromium over WebDriver, with a page-level record of
    every script error and every request that left for another origin."""

    def __init__(self, workdir: Path, width: int = 1280, height: int = 900):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--ignore-certificate-errors", "--disable-dev-shm-usage",
                  f"--user-data-dir={workdir / 'chromium-profile'}", f"--window-size={width},{height}"):
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        self.driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        self.driver.set_page_load_timeout(30)
        self.width = width

    def resize(self, width: int, height: int = 900) -> None:
        self.driver.set_window_size(width, height)
        self.width = width

    def screenshot(self, name: str) -> Path:
        """Writes target/screenshots/<name>-<width>.png (whole page height)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        d = self.driver
        height = d.execute_script("return Math.max(document.body.scrollHeight, 600)")
        d.set_window_size(self.width, min(int(height) + 140, 4000))
        path = SCREENSHOTS / f"{name}-{self.width}.png"
        d.save_screenshot(str(path))
        d.set_window_size(self.width, 900)
        return path

    def shots(self, name: str) -> None:
        """Screenshots of the current page at 1280 px and 375 px."""
        width = self.width
        for w in (1280, 375):
            self.resize(w)
            self.screenshot(name)
        self.resize(width)

    def open(self, url: str) -> None:
        self.driver.get(url)

    def fill(self, field_id: str, text: str) -> None:
        from selenium.webdriver.common.by import By

        el = self.driver.find_element(By.ID, field_id)
        el.clear()
        el.send_keys(text)

    def click(self, css: str, navigates: bool = False) -> None:
        """Clicks; with `navigates`, waits until the next page has loaded."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        old = self.driver.find_element(By.TAG_NAME, "html")
        self.driver.find_element(By.CSS_SELECTOR, css).click()
        if navigates:
            WebDriverWait(self.driver, 20).until(expected_conditions.staleness_of(old))

    def submit(self) -> None:
        """Submits the page's main form (its last submit button in <main>)."""
        self.click("main form:not([action='/logout']) button[type=submit]:last-of-type", navigates=True)

    def text(self, css: str = "main") -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css).text

    @property
    def path(self) -> str:
        from urllib.parse import urlparse

        return urlparse(self.driver.current_url).path

    def close(self) -> None:
        try:
            self.driver.quit()
        except Exception:
            pass
