"""A Sealgate cluster of real peers for the cluster tests: PostgreSQL 15
(tests/lib/postgres.py, TLS and SCRAM), one SoftHSM2 token directory
shared by every node, three `sealgate` nodes on their own loopback
addresses (127.0.0.21-23, the same SMTP and cluster API ports on each),
Postfix upstream spreading mail over the nodes (a randmap transport),
and Postfix's smtp-sink downstream.

Everything binds loopback addresses only and is stopped by close()."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import REPO, Gateway, SmtpDialogue, free_port, sealgate_bin
from postfix_peer import PostfixRelay, SmtpSink, split_dump
from postgres import Postgres

SENDER = "alice@example.org"
SECURE = "secure.example"
# Mail for secure.example must be encrypted; everything else may go in clear.
POLICY = {"domain": {SECURE: {"action": "encrypt-required"}}}
NODE_IPS = {"a": "127.0.0.21", "b": "127.0.0.22", "c": "127.0.0.23"}


def free_port_on(ips) -> int:
    """A port free on every one of `ips`."""
    for _ in range(50):
        port = free_port()
        try:
            for ip in ips:
                with socket.socket() as s:
                    s.bind((ip, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free on every node address")


def make_cert(dir: Path, name: str, address: str) -> Path:
    """A recipient's S/MIME certificate and key, made by openssl (a real peer)."""
    key, crt = dir / f"{name}.key", dir / f"{name}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(crt), "-days", "30", "-subj", f"/CN={name}",
                    "-addext", "keyUsage=critical,keyEncipherment", "-addext", "extendedKeyUsage=emailProtection",
                    "-addext", "basicConstraints=critical,CA:FALSE", "-addext", f"subjectAltName=email:{address}"],
                   check=True, capture_output=True, timeout=60)
    return crt


def smime_decrypt(dir: Path, raw: bytes, name: str) -> bytes:
    src = dir / f"in-{time.monotonic_ns()}.eml"
    src.write_bytes(raw)
    return subprocess.run(["openssl", "cms", "-decrypt", "-in", str(src), "-inkey", str(dir / f"{name}.key"),
                           "-recip", str(dir / f"{name}.pem")], capture_output=True, check=True, timeout=60).stdout


class Node(Gateway):
    """One cluster node: a gateway whose SMTP listener and cluster API
    are on its own loopback address."""

    def __init__(self, workdir: Path, name: str, ip: str, smtp_port: int, api_port: int,
                 settings: dict, env: dict):
        super().__init__(workdir, {**settings, "node_name": f"node-{name}",
                                   "smtp": {"listen": [f"{ip}:{smtp_port}"]}}, port=smtp_port, env=env)
        self.name = f"node-{name}"
        self.ip = ip
        self.api_port = api_port

    def start(self, timeout: float = 60.0) -> "Node":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sealgate_bin(), "--config", str(self.config_path), "run"],
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-3000:]}")
            try:
                with socket.create_connection((self.ip, self.port), timeout=1) as s:
                    s.settimeout(2)
                    if s.recv(512).startswith(b"220"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer in time")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


class SpreadingRelay(PostfixRelay):
    """Postfix relaying everything to a random one of the nodes for each
    message (transport_maps = randmap:{...}): the load balancer in front
    of a cluster, as an organisation's own MTA would be."""

    def __init__(self, port: int, nodes: list[Node]):
        super().__init__(port, nodes[0].port)
        self.nodes = nodes

    def start(self) -> "SpreadingRelay":
        # Write main.cf as the parent does, then replace the relay host by
        # a random choice of nodes, and start.
        original = self._postfix

        def postfix(*args, check=True):
            if args and args[0] == "start":
                main_cf = self.config_dir / "main.cf"
                choices = ", ".join(f"smtp:[{n.ip}]:{n.port}" for n in self.nodes)
                text = re.sub(r"(?m)^relayhost = .*$", "relayhost =", main_cf.read_text())
                text += (f"transport_maps = randmap:{{{choices}}}\n"
                         "smtp_connection_cache_on_demand = no\n"
                         "default_destination_concurrency_limit = 4\n")
                main_cf.write_text(text)
            return original(*args, check=check)

        self._postfix = postfix
        return super().start()


@dataclass
class Arrival:
    rcpts: list[str]
    raw: bytes
    at: float  # when smtp-sink wrote it (file mtime)

    @property
    def message(self):
        return email.message_from_bytes(self.raw, policy=email.policy.compat32)

    @property
    def encrypted(self) -> bool:
        m = self.message
        return m.get_content_type() in ("application/pkcs7-mime", "application/x-pkcs7-mime")


def arrivals(sink: SmtpSink) -> list[Arrival]:
    out = []
    for path in sorted(sink.dump_dir.glob("msg.*")):
        try:
            meta, raw = split_dump(path.read_bytes())
            at = path.stat().st_mtime
        except OSError:
            continue
        rcpts = [a.split(" ")[0].strip("<>").lower() for a in meta.get("X-Rcpt-Args", [])]
        out.append(Arrival(rcpts, raw, at))
    return out


def message(marker: str, to: str, subject: str | None = None) -> bytes:
    return (f"From: {SENDER}\r\nTo: {to}\r\nSubject: {subject or marker}\r\n"
            f"Message-ID: <{marker}@example.org>\r\n\r\nbody {marker}\r\n").encode()


def smtp_send(host: str, port: int, rcpts: list[str], body: bytes, sender: str = SENDER) -> str:
    """One SMTP transaction; returns the reply to the end of DATA."""
    d = SmtpDialogue(port, host=host, timeout=30)
    try:
        d.reply()
        d.cmd("EHLO client.example.org", "250")
        d.cmd(f"MAIL FROM:<{sender}>", "250")
        for r in rcpts:
            d.cmd(f"RCPT TO:<{r}>", "250")
        d.cmd("DATA", "354")
        d.send(body + b".\r\n")
        reply = d.reply()
        d.cmd("QUIT", "221")
        return reply
    finally:
        d.close()


@dataclass
class SteadySender:
    """Submits a message every `interval` seconds to Postfix upstream
    (which spreads them over the nodes) until stopped; records what
    Postfix accepted, per recipient list."""
    relay: SpreadingRelay
    plan: list  # [(rcpts, label)], used round-robin
    interval: float = 0.2
    accepted: dict = field(default_factory=dict)  # marker -> rcpts
    refused: list = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> "SteadySender":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            rcpts, label = self.plan[n % len(self.plan)]
            marker = f"steady-{label}-{n:05d}-{os.getpid()}"
            try:
                reply = smtp_send("127.0.0.1", self.relay.port, rcpts, message(marker, ", ".join(rcpts)))
                if reply.startswith("250"):
                    self.accepted[marker] = rcpts
                else:
                    self.refused.append((marker, reply))
            except Exception as e:  # the test asserts on what was accepted
                self.refused.append((marker, repr(e)))
            n += 1
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=60)


class Cluster:
    """PostgreSQL, a shared token, three nodes, Postfix upstream, smtp-sink."""

    def __init__(self, root: Path, pg: Postgres | None = None, names=("a", "b", "c"), heartbeat: int = 1):
        self.relay: SpreadingRelay | None = None
        self.nodes: dict[str, Node] = {}
        self.sink = None
        self.own_pg = pg is None
        self.pg = pg
        try:
            self._set_up(root, names, heartbeat)
        except BaseException:
            self.close()
            raise

    def _set_up(self, root: Path, names, heartbeat: int) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        if self.pg is None:
            self.pg = Postgres(Path(f"/tmp/sg-pg-{os.getpid()}-{time.monotonic_ns()}"))
            self.pg.init()
        self.sink = SmtpSink(free_port()).start()
        self.token_dir = root / "token"
        bin_dir = root / "bin"
        bin_dir.mkdir(exist_ok=True)
        if not (bin_dir / "sealgate").exists():
            (bin_dir / "sealgate").symlink_to(Path(sealgate_bin()).resolve())
        self.env = {**os.environ, "SOFTHSM2_CONF": str(self.token_dir / "hsm" / "softhsm2.conf"),
                    "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        subprocess.run([str(REPO / "hsm" / "provision"), str(self.token_dir)], env=self.env, check=True,
                       capture_output=True, timeout=300)
        ips = [NODE_IPS[n] for n in names]
        smtp_port, api_port = free_port_on(ips), free_port_on(ips)
        for name in names:
            ip = NODE_IPS[name]
            settings = {
                "hostname": f"{name}.gw.test",
                "relay": {"domains": ["example.org"], "internal_networks": ["127.0.0.0/8"]},
                "delivery": {"mode": "smarthost", "smarthost": f"127.0.0.1:{self.sink.port}",
                             "retry_initial_secs": 1, "retry_max_secs": 2},
                "policy": POLICY,
                "hsm": {"data_dir": str(self.token_dir)},
                "cluster": self.pg.cluster_settings(f"{ip}:{api_port}", heartbeat_secs=heartbeat,
                                                    peer_timeout_ms=2000, query_timeout_ms=2000),
            }
            # Every node's portal listener (bootstrap, per node); whether
            # the portal is on is a shared setting, off until a test says.
            portal_port = free_port()
            settings["portal"] = {"listen": [f"127.0.0.1:{portal_port}"]}
            web_port = None
            if name == names[0]:
                # The first node's web UI (the Cluster page).
                web_port = free_port()
                settings["web"] = {"listen": [f"127.0.0.1:{web_port}"]}
            self.nodes[name] = Node(root / f"node-{name}", name, ip, smtp_port, api_port, settings, self.env)
            self.nodes[name].web_port = web_port
            self.nodes[name].portal_port = portal_port
            self.nodes[name].data_dir.mkdir(parents=True, exist_ok=True)
        first = self.nodes[names[0]]
        # The gateway's keys get certificates once, on the shared token.
        first.cli("keys", "self-sign", "gateway-sign", "--cn", "gw.test", "--email", "gateway@example.org")
        first.cli("keys", "self-sign", "gateway-decrypt", "--cn", "gw.test", "--issuer", "gateway-sign")
        first.cli("keys", "export-cert", "gateway-decrypt", "--out", str(root / "gateway.pem"))
        first.cli("cluster", "init")
        for name in names[1:]:
            self.nodes[name].cli("cluster", "join")

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def start(self) -> "Cluster":
        for node in self.nodes.values():
            node.start()
        self.relay = SpreadingRelay(free_port(), list(self.nodes.values())).start()
        return self

    def status(self, via: str = "a") -> dict:
        out = self.nodes[via].cli("cluster", "status", "--json")
        return json.loads(out.stdout)

    def track(self, via: str = "a", *args: str) -> tuple[int, dict]:
        out = self.nodes[via].cli("cluster", "track", "--json", *args, check=False)
        return out.returncode, json.loads(out.stdout) if out.stdout.strip() else {}

    def close(self) -> None:
        for thing in [self.relay, *self.nodes.values(), self.sink]:
            if thing is None:
                continue
            try:
                if isinstance(thing, PostfixRelay):
                    print(f"--- postfix maillog ---\n{thing.log_text()}")
                thing.stop()
                if isinstance(thing, Node):
                    print(f"--- {thing.name} log tail ---\n{thing.log_tail()}")
            except Exception as e:
                print(f"stopping {thing!r}: {e}")
        if self.own_pg and self.pg is not None:
            print(f"--- postgres log tail ---\n{self.pg.log_text()[-3000:]}")
            self.pg.destroy()


def wait_until(predicate, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(every)
