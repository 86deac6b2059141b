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
    data: bytes = b""

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
            raw = r.read()
            data = raw.decode(errors="replace")
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
            return Reply(r.status, hs, data, raw)
        finally:
            conn.close()

    def get(self, path: str, **kw) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, form: dict, **kw) -> Reply:
        return self.request("POST", path, form=form, **kw)

    def post_multipart(self, path: str, fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> Reply:
        """A multipart/form-data POST, as a browser sends a form with a file."""
        boundary = "----sealgate-test-boundary-7d2f"
        parts = []
        for name, value in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                         + value.encode() + b"\r\n")
        for name, (filename, content) in files.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                         f'Content-Type: application/octet-stream\r\n\r\n'.encode() + content + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.request("POST", path, body=body,
                            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


def secret_from(page: str) -> str:
    m = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page)
    assert m, "no TOTP secret on the page"
    return m.group(1).replace(" ", "")


def setup_over_http(gw: Gateway, admin: str = "alice", used: set[str] | None = None,
                    certificate: dict | None = None, keys_step=None) -> tuple[Client, str]:
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
    r = c.post("/setup/certificate", certificate or {"choice": "generated"})
    assert r.status == 303, r.body[:2000]
    if keys_step:
        keys_step(c)
    assert c.post("/setup/keys", {}).status == 303
    assert c.post("/setup/policy", {"outbound": "encrypt-if-possible", "boundary_only": "on"}).status == 303
    r = c.post("/setup/finish", {})
    assert r.status == 303 and r.header("location").startswith("/dashboard"), (r.status, r.body[:2000])
    return c, secret


class Browser:
    """Headless Chromium over WebDriver, with a page-level record of
    every script error and every request that left for another origin."""

    def __init__(self, workdir: Path, width: int = 1280, height: int = 900, trap_port: int | None = None):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--ignore-certificate-errors", "--disable-dev-shm-usage",
                  f"--user-data-dir={workdir / 'chromium-profile'}", f"--window-size={width},{height}"):
            opts.add_argument(a)
        if trap_port:
            # Every host name resolves to the trap: a request a payload
            # makes to any other origin lands there and is recorded.
            opts.add_argument(f"--host-resolver-rules=MAP * 127.0.0.1:{trap_port}, EXCLUDE 127.0.0.1")
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

        if navigates:
            # A mark on the old document: the new one does not have it.
            self.driver.execute_script("window.__sgOld = true;")
        self.driver.find_element(By.CSS_SELECTOR, css).click()
        if navigates:
            self._wait_for_new_page(css)

    def _wait_for_new_page(self, what: str) -> None:
        from selenium.common.exceptions import WebDriverException

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.driver.execute_script(
                        "return window.__sgOld === undefined && document.readyState === 'complete'"):
                    return
            except WebDriverException:
                pass  # between documents
            time.sleep(0.02)
        raise AssertionError(f"{what}: no new page loaded")

    def submit(self) -> None:
        """Submits the page's main form (the last plain submit button in <main>, outside forms marked `aside`)."""
        from selenium.webdriver.common.by import By

        buttons = self.driver.find_elements(
            By.CSS_SELECTOR, "main form:not([action='/logout']):not(.aside) button[type=submit]:not([formaction])")
        assert buttons, "no submit button on the page"
        self.driver.execute_script("window.__sgOld = true;")
        buttons[-1].click()
        self._wait_for_new_page("submit")

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


class Trap:
    """A loopback TCP listener that records every connection (a request
    that left the page for another origin)."""

    def __init__(self):
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.hits: list[bytes] = []
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            data = b""
            try:
                # Long enough for a busy browser's first bytes (its TLS
                # ClientHello names the host); a connection that sends
                # nothing still counts.
                conn.settimeout(3.0)
                while len(data) < 16384:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                    if data.startswith(b"\x16\x03") and len(data) >= 5 + int.from_bytes(data[3:5], "big"):
                        break
                    if b"\r\n\r\n" in data:
                        break
                self.hits.append(data or b"(connected)")
            except OSError:
                self.hits.append(data or b"(connected)")
            finally:
                conn.close()

    # The browser's own services (time, search engine, updates): not a page's doing.
    BROWSER_HOSTS = ("google.com", "gstatic.com", "googleapis.com", "gvt1.com", "duckduckgo.com",
                     "chromium.org", "googleusercontent.com")

    @staticmethod
    def host(hit: bytes) -> str:
        """The host a hit was for: the TLS ClientHello's server name, or
        the Host header of plain HTTP."""
        import re as _re

        if hit.startswith(b"\x16\x03"):
            try:
                i = 5 + 4 + 2 + 32
                i += 1 + hit[i]
                i += 2 + int.from_bytes(hit[i:i + 2], "big")
                i += 1 + hit[i]
                end = i + 2 + int.from_bytes(hit[i:i + 2], "big")
                i += 2
                while i + 4 <= min(end, len(hit)):
                    kind = int.from_bytes(hit[i:i + 2], "big")
                    size = int.from_bytes(hit[i + 2:i + 4], "big")
                    if kind == 0:
                        n = int.from_bytes(hit[i + 7:i + 9], "big")
                        return hit[i + 9:i + 9 + n].decode(errors="replace")
                    i += 4 + size
            except IndexError:
                pass
            return "(TLS without a name)"
        m = _re.search(rb"(?im)^host:\s*([^\r\n:]+)", hit)
        return m.group(1).decode(errors="replace") if m else repr(hit[:60])

    def page_hits(self) -> list[str]:
        """Hosts reached, leaving out the browser's own services."""
        hosts = [self.host(h) for h in self.hits]
        return [h for h in hosts if not any(h == b or h.endswith("." + b) for b in self.BROWSER_HOSTS)]

    def close(self):
        self._stop = True
        self.sock.close()


INERT_CHECK = r"""
const bad = [];
const scripts = [...document.scripts].filter(s => !s.src.endsWith('/static/app.js'));
if (scripts.length) bad.push('script elements: ' + scripts.length);
for (const tag of ['iframe', 'frame', 'object', 'embed', 'base', 'meta[http-equiv]', 'form[action^="javascript"]', 'link[rel=import]']) {
  const n = document.querySelectorAll('main ' + tag + ', body > ' + tag).length;
  if (n) bad.push(tag + ': ' + n);
}
for (const e of document.querySelectorAll('*')) {
  for (const a of e.attributes) {
    if (a.name.startsWith('on')) bad.push('handler ' + e.tagName + '[' + a.name + ']');
    if (/^\s*(javascript|vbscript|data):/i.test(a.value) && ['href','src','action','formaction','xlink:href','data'].includes(a.name)) bad.push('url ' + e.tagName + '[' + a.name + ']');
  }
}
if (window.__sealgate_xss) bad.push('a payload ran');
return bad;
"""


def assert_inert(b: "Browser", trap: Trap, origin: str, what: str) -> None:
    """No script ran (no dialog, no element or handler a payload made),
    and no request left the page (trap and network log)."""
    import json
    from selenium.common.exceptions import NoAlertPresentException

    try:
        alert = b.driver.switch_to.alert
        text = alert.text
        alert.dismiss()
        raise AssertionError(f"{what}: a dialog opened ({text!r}): a script ran")
    except NoAlertPresentException:
        pass
    bad = b.driver.execute_script(INERT_CHECK)
    assert not bad, f"{what}: {bad}"
    for entry in b.driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent" and \
                msg["params"].get("documentURL", "").startswith(origin):
            url = msg["params"]["request"]["url"]
            assert url.startswith(origin) or url.startswith("data:"), f"{what}: a request left the page: {url[:200]}"
    hits = trap.page_hits()
    assert not hits, f"{what}: the trap was reached for {hits[:5]}"
