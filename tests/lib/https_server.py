"""An HTTPS (and HTTP) server for the web lookups the gateway makes: MTA-STS
policies (`https://mta-sts.<domain>/.well-known/mta-sts.txt`), Web Key
Directory keys (`https://openpgpkey.<domain>/.well-known/openpgpkey/<domain>/hu/<hash>`
and the direct form), TLS-RPT uploads (POST), and CRLs over plain HTTP.

It listens on its own loopback address on ports 443 and 80, as a web
server on the Internet does, and picks the certificate by SNI from the
ones a test gives it (made by tests/lib/pki.py's test CA, which the
gateway is told to trust). DNS A records point the names at `address`.

    web = WebServer(tmp_path)
    web.certificate("mta-sts.partner.test", cert, key)
    web.put("mta-sts.partner.test", "/.well-known/mta-sts.txt", b"version: STSv1...", "text/plain")
    web.start(); ...; web.posts  # [(host, path, content-type, body)]
"""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time
from pathlib import Path

from postfix_tls import free_loopback_address


class WebServer:
    def __init__(self, workdir: Path, address: str | None = None):
        self.dir = Path(workdir)
        self.address = address or free_loopback_address(443)
        self.files: dict[tuple[str, str], tuple[int, str, bytes, float]] = {}
        self.contexts: dict[str, ssl.SSLContext] = {}
        self.posts: list[tuple[str, str, str, bytes]] = []
        self.requests: list[tuple[str, str]] = []
        self.servers: list[http.server.ThreadingHTTPServer] = []
        self.threads: list[threading.Thread] = []
        self.default_context: ssl.SSLContext | None = None

    def certificate(self, name: str, cert: Path, key: Path) -> "WebServer":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        self.contexts[name.lower()] = ctx
        if self.default_context is None:
            self.default_context = ctx
        return self

    def put(self, host: str, path: str, body: bytes, content_type: str = "application/octet-stream",
            status: int = 200, delay: float = 0.0) -> "WebServer":
        """Serves `body` for GET `path` on `host` (after `delay` seconds)."""
        self.files[(host.lower(), path)] = (status, content_type, body, delay)
        return self

    def remove(self, host: str, path: str) -> None:
        self.files.pop((host.lower(), path), None)

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _host(self) -> str:
                return (self.headers.get("Host") or "").split(":")[0].lower()

            def do_GET(self):
                host = self._host()
                path = self.path.split("?")[0]
                server.requests.append((host, self.path))
                found = server.files.get((host, path))
                if not found:
                    body = b"not found\n"
                    self.send_response(404)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                status, ctype, body, delay = found
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 10 * 1024 * 1024))
                server.posts.append((self._host(), self.path, self.headers.get("Content-Type", ""), body))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

    def start(self) -> "WebServer":
        handler = self._handler()

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        https = Server((self.address, 443), handler)
        if self.default_context is not None:
            default = self.default_context

            def pick(sock, name, _ctx):
                ctx = self.contexts.get((name or "").lower())
                if ctx is not None:
                    sock.context = ctx

            default.sni_callback = pick
            https.socket = default.wrap_socket(https.socket, server_side=True,
                                               do_handshake_on_connect=True)
        http_server = Server((self.address, 80), handler)
        for srv in (https, http_server):
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            t.start()
            self.servers.append(srv)
            self.threads.append(t)
        # Ready when it accepts.
        for port in (443, 80):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection((self.address, port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
        return self

    def stop(self) -> None:
        for srv in self.servers:
            srv.shutdown()
            srv.server_close()
        self.servers.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
