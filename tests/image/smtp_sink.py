"""A minimal SMTP sink on 127.0.0.1 that records every message it accepts."""

from __future__ import annotations

import socketserver
import threading


class _Handler(socketserver.StreamRequestHandler):
    timeout = 60

    def _reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        sink: SmtpSink = self.server.sink  # type: ignore[attr-defined]
        self._reply("220 sink.test ESMTP")
        mail_from, rcpts = "", []
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            cmd = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = cmd[:4].upper()
            if verb in ("EHLO", "HELO"):
                self._reply("250 sink.test")
            elif verb == "MAIL":
                mail_from, rcpts = cmd[10:], []
                self._reply("250 2.1.0 ok")
            elif verb == "RCPT":
                rcpts.append(cmd[8:])
                self._reply("250 2.1.5 ok")
            elif verb == "DATA":
                self._reply("354 go ahead")
                lines = []
                while True:
                    line = self.rfile.readline()
                    if not line or line in (b".\r\n", b".\n"):
                        break
                    if line.startswith(b".."):
                        line = line[1:]
                    lines.append(line)
                with sink.lock:
                    sink.messages.append((mail_from, rcpts, b"".join(lines)))
                self._reply("250 2.0.0 queued")
            elif verb == "QUIT":
                self._reply("221 bye")
                return
            elif verb in ("RSET", "NOOP"):
                self._reply("250 ok")
            else:
                self._reply("502 5.5.2 not implemented")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class SmtpSink:
    def __init__(self, port: int):
        self.port = port
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()
        self._server: _Server | None = None

    def start(self) -> "SmtpSink":
        if self._server:
            return self
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.sink = self  # type: ignore[attr-defined]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bodies(self) -> list[bytes]:
        with self.lock:
            return [m[2] for m in self.messages]
