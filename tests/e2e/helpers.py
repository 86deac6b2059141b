"""Shared pieces of the end-to-end encryption tests: the chain of real
peers (Postfix upstream -> Sealgate with a SoftHSM2 token -> smtp-sink), and
readers for what arrives at the sink. Token provisioning, certificates and
the S/MIME and PGP/MIME builders come from the policy suite."""

from __future__ import annotations

import email
import email.policy
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness import Gateway, free_port
from postfix_peer import PostfixRelay, SmtpSink, split_dump
from smtp_conftest import send_message
from test_policy import POLICY, SENDER
from test_unwrap import provisioned_gateway

DEFAULT_TIMEOUT = 60.0


def smarthost(sink_or_gateway) -> dict:
    """Delivery settings: everything to one host on loopback, short retries."""
    return {"delivery": {"mode": "smarthost", "smarthost": f"127.0.0.1:{sink_or_gateway.port}",
                         "retry_initial_secs": 1, "retry_max_secs": 2}}


class Peers:
    """Everything a test starts, stopped at teardown in reverse order."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self._started: list = []

    def sink(self) -> SmtpSink:
        s = SmtpSink(free_port())
        self._started.append(s)
        return s.start()

    def gateway(self, name: str, downstream, policy: dict | None = None,
                relay_domains: list[str] | None = None, start: bool = True,
                hostname: str = "gw.test") -> Gateway:
        """A gateway with its own SoftHSM2 token under tmp_path/name; its
        decryption certificate is tmp_path/name/gateway.pem."""
        home = self.tmp_path / name
        home.mkdir()
        settings = {"hostname": hostname, "policy": policy or POLICY, **smarthost(downstream)}
        if relay_domains:
            settings["relay"] = {"domains": relay_domains, "internal_networks": ["127.0.0.0/8"]}
        gw = provisioned_gateway(home, settings)
        gw.home = home
        self._started.append(gw)
        if start:
            gw.start()
        return gw

    def postfix(self, gateway: Gateway) -> PostfixRelay:
        pf = PostfixRelay(free_port(), gateway.port)
        self._started.append(pf)
        return pf.start()

    def close(self) -> None:
        for peer in reversed(self._started):
            try:
                if isinstance(peer, PostfixRelay):
                    print(f"--- postfix maillog ---\n{peer.log_text()}")
                peer.stop()
                if isinstance(peer, Gateway) and peer.log_path.exists():
                    print(f"--- {peer.workdir} log tail ---\n{peer.log_path.read_text(errors='replace')[-4000:]}")
            except Exception as e:  # keep stopping the others
                print(f"stopping {peer!r}: {e}")


@dataclass
class Arrival:
    """One message as smtp-sink received it."""
    rcpts: list[str]
    raw: bytes  # the message (LF line ends), smtp-sink's own lines removed

    @property
    def parsed(self):
        return email.message_from_bytes(self.raw, policy=email.policy.compat32)


def arrivals(sink: SmtpSink) -> list[Arrival]:
    out = []
    for dump in sink.dumps():
        meta, raw = split_dump(dump)
        rcpts = [a.split(" ")[0].strip("<>").lower() for a in meta.get("X-Rcpt-Args", [])]
        out.append(Arrival(rcpts, raw))
    return out


def wait_arrivals(sink: SmtpSink, want: set[str], timeout: float = DEFAULT_TIMEOUT) -> dict[str, list[Arrival]]:
    """Waits until every address in `want` has at least one message; returns
    every arrival per recipient."""
    deadline = time.monotonic() + timeout
    while True:
        got: dict[str, list[Arrival]] = {}
        for a in arrivals(sink):
            for r in a.rcpts:
                got.setdefault(r, []).append(a)
        if want <= set(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"smtp-sink: {sorted(want - set(got))} got nothing in {timeout}s; "
                                 f"arrived for {sorted(got)}")
        time.sleep(0.2)


def submit(postfix: PostfixRelay, rcpts: list[str], message: bytes, sender: str = SENDER) -> str:
    """The internal sender's client submits to the upstream Postfix."""
    stuffed = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in message.split(b"\r\n"))
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return send_message(postfix.port, sender, rcpts, stuffed, ehlo="client.example.org")


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def openssl_decrypt(tmp_path: Path, raw: bytes, key: Path, cert: Path) -> bytes:
    """openssl cms -decrypt: the recipient's own key (a real peer)."""
    src = tmp_path / f"in-{time.monotonic_ns()}.eml"
    src.write_bytes(raw)
    return subprocess.run(["openssl", "cms", "-decrypt", "-in", str(src), "-inkey", str(key), "-recip", str(cert)],
                          capture_output=True, check=True, timeout=60).stdout


def inner_entity(marker: str) -> bytes:
    """What the sender's mail client encrypts: a multipart/mixed entity with
    a UTF-8 text part and a base64 attachment of binary data, CRLF line ends.
    `marker` is in the text so a plaintext copy can be searched for."""
    import base64
    blob = bytes((i * 37 + 11) % 256 for i in range(3000))
    b64 = base64.encodebytes(blob).replace(b"\n", b"\r\n")
    return (
        b"Content-Type: multipart/mixed; boundary=\"inner-b0undary\"\r\n\r\n"
        b"--inner-b0undary\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + f"{marker}\r\nGr\u00fc\u00dfe \u2014 the board meets on Friday.\r\n.leading dot line\r\n".encode()
        + b"\r\n--inner-b0undary\r\nContent-Type: application/octet-stream; name=\"figures.bin\"\r\n"
        b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"figures.bin\"\r\n\r\n"
        + b64 + b"--inner-b0undary--\r\n"
    )


def smime_for(tmp_path: Path, cert: Path, inner: bytes, to: str, subject: str, sender: str = SENDER) -> bytes:
    """`openssl cms -encrypt` of `inner` (binary: the entity's bytes as they
    are) for `cert`, with the outer From/To/Subject, as a client sends it."""
    src = tmp_path / f"inner-{time.monotonic_ns()}.eml"
    src.write_bytes(inner)
    out = subprocess.run(["openssl", "cms", "-encrypt", "-aes256", "-binary", "-in", str(src), "-from", sender,
                          "-to", to, "-subject", subject, str(cert)], capture_output=True, check=True, timeout=60)
    return crlf(out.stdout)


def mime_parts(entity: bytes) -> list[tuple[str, bytes]]:
    """(content type, decoded payload) of each leaf part: what a mail
    client shows, independent of header order and line ends."""
    msg = email.message_from_bytes(crlf(entity), policy=email.policy.compat32)
    return [(p.get_content_type(), p.get_payload(decode=True).replace(b"\r\n", b"\n"))
            for p in msg.walk() if not p.is_multipart()]


def plain_message(inner: bytes, to: str, subject: str, sender: str = SENDER) -> bytes:
    """A message as the sender's client writes it, not encrypted: header
    fields, then `inner` (its Content-Type line starts the MIME headers)."""
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
            f"Message-ID: <{time.monotonic_ns()}@example.org>\r\n").encode() + inner


def gpg_recipient(gnupg, tmp_path, uid: str, address: str):
    """A recipient key made by gpg; returns the exported public key file."""
    gnupg("--quick-gen-key", f"{uid} <{address}>", "future-default", "default", "never")
    key = tmp_path / f"{address}.asc"
    key.write_bytes(gnupg("--armor", "--export", address).stdout)
    return key


def pgp_decrypt(gnupg, arrival) -> bytes:
    """The encrypted part of a PGP/MIME message, opened by gpg."""
    msg = arrival.parsed
    assert msg.get_content_type() == "multipart/encrypted", msg.get_content_type()
    assert msg.get_param("protocol") == "application/pgp-encrypted"
    control, body = msg.get_payload()
    assert control.get_content_type() == "application/pgp-encrypted"
    armored = body.get_payload(decode=False)
    assert armored.lstrip().startswith("-----BEGIN PGP MESSAGE-----")
    return gnupg("--decrypt", input=armored.encode()).stdout
