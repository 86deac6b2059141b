"""A small downstream SMTP server for the tests: records every transaction
byte for byte (MAIL and RCPT lines with their parameters, the DATA section
un-stuffed, CRLFs kept) and answers per a policy the test can change while
it runs: reject recipients by pattern, temp-fail everything, and so on.

Binds 127.0.0.1 only. One thread per connection; every read has a timeout.
"""

from __future__ import annotations

import re
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Transaction:
    mail: str  # the MAIL command line as received (parameters included)
    rcpts: list[str]  # RCPT lines that were accepted
    rejected: list[str]  # RCPT lines that were refused
    data: bytes  # the message after un-stuffing, CRLF line ends kept
    helo: str = ""
    tls: bool = False

    @property
    def sender(self) -> str:
        m = re.match(r"(?i)MAIL FROM:\s*<([^>]*)>", self.mail)
        return m.group(1) if m else ""

    @property
    def recipients(self) -> list[str]:
        out = []
        for line in self.rcpts:
            m = re.match(r"(?i)RCPT TO:\s*<([^>]*)>", line)
            out.append(m.group(1) if m else line)
        return out


@dataclass
class Policy:
    # regex on the RCPT address -> reply; checked in order
    rcpt_rules: list[tuple[str, str]] = field(default_factory=list)
    # reply to every RCPT when set (e.g. "451 4.3.0 try later")
    rcpt_all: str | None = None
    mail_reply: str = "250 2.1.0 Ok"
    data_end_reply: str = "250 2.0.0 Ok: queued"
    # regex on the MAIL line -> reply after the end of data (first match wins)
    data_end_rules: list[tuple[str, str]] = field(default_factory=list)
    extensions: tuple[str, ...] = (
        "PIPELINING", "SIZE 104857600", "8BITMIME", "SMTPUTF8", "DSN", "ENHANCEDSTATUSCODES",
    )


class _Handler(socketserver.BaseRequestHandler):
    def setup(self) -> None:
        self.request.settimeout(30)
        self.buf = b""

    def _send(self, line: str) -> None:
        self.request.sendall(line.encode() + b"\r\n")

    def _line(self) -> bytes | None:
        while b"\r\n" not in self.buf:
            chunk = self.request.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
            if len(self.buf) > 1 << 20:
                return None
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _data(self) -> bytes | None:
        while True:
            # The end is CRLF.CRLF; the data section starts after DATA's CRLF,
            # so a message may also be empty (".\r\n" at once).
            if self.buf.startswith(b".\r\n"):
                self.buf = self.buf[3:]
                return b""
            end = self.buf.find(b"\r\n.\r\n")
            if end >= 0:
                raw, self.buf = self.buf[: end + 2], self.buf[end + 5 :]
                lines = raw.split(b"\r\n")
                lines = [ln[1:] if ln.startswith(b".") else ln for ln in lines]
                return b"\r\n".join(lines)
            chunk = self.request.recv(65536)
            if not chunk:
                return None
            self.buf += chunk

    def handle(self) -> None:
        sink: CaptureSink = self.server.sink  # type: ignore[attr-defined]
        try:
            self._send("220 capture.test ESMTP")
            helo, mail, rcpts, rejected = "", None, [], []
            while True:
                raw = self._line()
                if raw is None:
                    return
                line = raw.decode("utf-8", "replace")
                verb = line.split(" ", 1)[0].upper()
                policy = sink.policy
                with sink.lock:
                    sink.commands.append(line)
                if verb == "EHLO":
                    helo = line[5:]
                    lines = ["capture.test"] + list(policy.extensions)
                    for i, text in enumerate(lines):
                        sep = " " if i == len(lines) - 1 else "-"
                        self._send(f"250{sep}{text}")
                elif verb == "HELO":
                    helo = line[5:]
                    self._send("250 capture.test")
                elif verb == "MAIL":
                    if policy.mail_reply.startswith("2"):
                        mail, rcpts, rejected = line, [], []
                    self._send(policy.mail_reply)
                elif verb == "RCPT":
                    m = re.match(r"(?i)RCPT TO:\s*<([^>]*)>", line)
                    addr = m.group(1) if m else ""
                    reply = policy.rcpt_all or "250 2.1.5 Ok"
                    if policy.rcpt_all is None:
                        for pattern, rule_reply in policy.rcpt_rules:
                            if re.search(pattern, addr):
                                reply = rule_reply
                                break
                    if mail is None:
                        reply = "503 5.5.1 need MAIL"
                    (rcpts if reply.startswith("2") else rejected).append(line)
                    self._send(reply)
                elif verb == "DATA":
                    if mail is None or not rcpts:
                        self._send("554 5.5.1 no valid recipients")
                        continue
                    self._send("354 go ahead")
                    data = self._data()
                    if data is None:
                        return
                    reply = policy.data_end_reply
                    for pattern, rule_reply in policy.data_end_rules:
                        if re.search(pattern, mail):
                            reply = rule_reply
                            break
                    if reply.startswith("2"):
                        with sink.lock:
                            sink.transactions.append(
                                Transaction(mail, rcpts, rejected, data, helo)
                            )
                    self._send(reply)
                    mail, rcpts, rejected = None, [], []
                elif verb == "RSET":
                    mail, rcpts, rejected = None, [], []
                    self._send("250 2.0.0 Ok")
                elif verb == "NOOP":
                    self._send("250 2.0.0 Ok")
                elif verb == "QUIT":
                    self._send("221 2.0.0 Bye")
                    return
                else:
                    self._send("502 5.5.2 not implemented")
        except OSError:
            return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class CaptureSink:
    def __init__(self, port: int, policy: Policy | None = None):
        self.port = port
        self.policy = policy or Policy()
        self.transactions: list[Transaction] = []
        self.commands: list[str] = []
        self.lock = threading.Lock()
        self._server: _Server | None = None

    def start(self) -> "CaptureSink":
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.sink = self  # type: ignore[attr-defined]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def messages(self) -> list[Transaction]:
        with self.lock:
            return list(self.transactions)

    def bodies(self) -> list[bytes]:
        return [t.data for t in self.messages()]

    def wait_for(self, predicate, timeout: float = 15.0) -> list[Transaction]:
        """Waits until predicate(list of transactions) is true; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.messages()
            if predicate(got):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"sink: condition not met in {timeout}s; got {got!r}")
            time.sleep(0.1)
