"""Three Sealgate nodes as one gateway (issue 17), against real peers:
PostgreSQL 15 holding the shared state, one SoftHSM2 token directory for
every node, Postfix upstream spreading mail over the nodes, smtp-sink
downstream. Each test asserts what a user sees: SMTP replies, what arrives
downstream (and whether openssl opens it), what the CLI prints.

The portal case of the issue ("a portal message stored through A is read
through C") is `test_portal_message_stored_through_a_is_read_through_c`:
the portal's accounts, sessions and sealed mailboxes are in the shared
store."""

import json
import re
import time

from cluster import (SECURE, SENDER, SteadySender, arrivals, make_cert, message, smime_decrypt, smtp_send,
                     wait_until)
from harness import SmtpDialogue
from postgres import DATABASE

BOB = f"bob@{SECURE}"
DAVE = f"dave@{SECURE}"
CAROL = "carol@ext.example"


def recipients_refused_after(node, n: int) -> bool:
    """Whether node refuses the (n+1)th RCPT of a transaction (452): the
    smtp.max_recipients in force on that node, as a client sees it."""
    d = SmtpDialogue(node.port, host=node.ip, timeout=10)
    try:
        d.reply()
        d.cmd("EHLO client.example.org", "250")
        d.cmd(f"MAIL FROM:<{SENDER}>", "250")
        for i in range(n):
            d.cmd(f"RCPT TO:<r{i}@ext.example>", "250")
        d.send(f"RCPT TO:<r{n}@ext.example>\r\n")
        return d.reply().startswith("452")
    finally:
        d.close()


def version_of(cli_output: str) -> int:
    m = re.search(r"settings version (\d+)", cli_output)
    assert m, cli_output
    return int(m.group(1))


def arrived_for(sink, address: str) -> list:
    return [a for a in arrivals(sink) if address in a.rcpts]


def markers(arrivals_) -> set[str]:
    found = set()
    for a in arrivals_:
        m = re.search(rb"(?mi)^Message-ID: <([^@>]+)@", a.raw)
        if m:
            found.add(m.group(1).decode())
    return found


def test_one_gateway_on_three_nodes(cluster, tmp_path):
    a, b, c = cluster["a"], cluster["b"], cluster["c"]
    status = cluster.status("a")
    assert status["clustered"] and status["database"]["connected"], status
    assert [n["name"] for n in status["nodes"]] == ["node-a", "node-b", "node-c"]
    assert all(n["answers"] for n in status["nodes"]), status

    # A settings change made on A is in force on B and C (issue 17 asks
    # for within 5 s: the time is printed, not asserted, since a loaded
    # test machine must not fail a functional test on a timing).
    assert not recipients_refused_after(b, 2)
    changed = a.cli("settings", "set", "smtp.max_recipients", "2", "--comment", "cluster test").stdout
    started = time.monotonic()
    new_version = version_of(changed)
    for node in (b, c):
        wait_until(lambda node=node: recipients_refused_after(node, 2), 60,
                   f"{node.name} refuses a third recipient")
    applied_in = time.monotonic() - started
    print(f"settings version {new_version} in force on B and C after {applied_in:.2f} s (issue 17: within 5 s)")
    status = cluster.status("c")
    assert {n["name"]: n["state"]["settings_version"] for n in status["nodes"]} == \
        {"node-a": new_version, "node-b": new_version, "node-c": new_version}

    # A certificate imported on B is used by C.
    cert = make_cert(tmp_path, "bob", BOB)
    b.cli("directory", "import", str(cert))
    assert smtp_send(c.ip, c.port, [BOB], message("for-bob-via-c", BOB)).startswith("250")
    got = wait_until(lambda: [x for x in arrived_for(cluster.sink, BOB) if b"for-bob-via-c" in x.raw], 30,
                     "bob's message at the sink")
    assert got[0].encrypted and b"body for-bob-via-c" not in got[0].raw
    assert b"body for-bob-via-c" in smime_decrypt(tmp_path, got[0].raw, "bob")

    # Mail held on C for a recipient with no key is released, encrypted,
    # when the key is imported on A (C holds it on its own disk).
    erin = f"erin@{SECURE}"
    assert smtp_send(c.ip, c.port, [erin], message("for-erin-held-on-c", erin)).startswith("250")

    def held_on_c():
        entries = json.loads(c.cli("queue", "list", "--json").stdout)
        return [e for e in entries if any(r["address"] == erin and r["state"] == "held"
                                          for r in e["recipients"])]
    wait_until(held_on_c, 30, "erin's message held on C")
    a.cli("directory", "import", str(make_cert(tmp_path, "erin", erin)))
    got = wait_until(lambda: [x for x in arrived_for(cluster.sink, erin) if b"for-erin-held-on-c" in x.raw], 30,
                     "erin's message released on C after the import on A")
    assert got[0].encrypted and b"body for-erin-held-on-c" not in got[0].raw
    assert b"body for-erin-held-on-c" in smime_decrypt(tmp_path, got[0].raw, "erin")

    # Every node opens mail encrypted for the gateway: the keys are the
    # shared token's (their certificates were made through A).
    inner = tmp_path / "inner.eml"
    inner.write_bytes(b"Content-Type: text/plain\r\n\r\nthe board meets on friday\r\n")
    sealed = tmp_path / "sealed.eml"
    import subprocess
    subprocess.run(["openssl", "cms", "-encrypt", "-aes256", "-in", str(inner), "-out", str(sealed), "-from", SENDER,
                    "-to", "carol@example.org", "-subject", "board", str(cluster.root / "gateway.pem")],
                   check=True, capture_output=True, timeout=60)
    raw = sealed.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert smtp_send(b.ip, b.port, ["carol@example.org"], raw).startswith("250")
    opened = wait_until(lambda: [x for x in arrived_for(cluster.sink, "carol@example.org")], 30,
                        "carol's message at the sink")
    assert b"the board meets on friday" in opened[0].raw

    # A tracking search on A finds the message handled by C, and says
    # which nodes answered.
    code, found = cluster.track("a", "--to", BOB)
    assert code == 0, found
    on_c = [e for e in found["events"] if e["node"] == "node-c"]
    assert {"received", "delivered"} <= {e["kind"] for e in on_c}, found["events"]
    assert [(n["node"], n["answered"]) for n in found["nodes"]] == \
        [("node-a", True), ("node-b", True), ("node-c", True)]
    times = [e["time_ms"] for e in found["events"]]
    assert times == sorted(times), "merged by time"

    # A stopped node is reported as not answering; the others still answer.
    b.stop()
    code, found = cluster.track("a", "--to", BOB)
    assert code == 75, "a partial answer says so"
    answered = {n["node"]: n for n in found["nodes"]}
    assert not answered["node-b"]["answered"] and answered["node-b"]["error"]
    assert answered["node-a"]["answered"] and answered["node-c"]["answered"]
    assert any(e["node"] == "node-c" for e in found["events"])
    status = cluster.status("a")
    views = {n["name"]: n for n in status["nodes"]}
    assert not views["node-b"]["answers"] and views["node-b"]["error"]
    assert views["node-b"]["last_heartbeat_ms"], "the stopped node is shown with its last heartbeat"
    assert views["node-c"]["answers"]

    # The administrator sees the same on A's Cluster page (after A's
    # wizard, run last: it applies settings of its own to every node).
    from webtools import setup_over_http
    admin, _ = setup_over_http(a)
    page = admin.get("/cluster")
    assert page.status == 200, page.body[:1000]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"(?s)<tr>\s*<td data-label=\"Node\"[^>]*>(node-[abc]).*?</tr>",
                                                         page.body)}
    assert sorted(rows) == ["node-a", "node-b", "node-c"], page.body[:3000]
    assert "badge bad" in rows["node-b"] and "badge ok" in rows["node-c"], rows
    assert "2 of 3 nodes answer" in page.body and "connected" in page.body


def test_database_outage_loses_nothing_and_sends_nothing_in_clear(cluster, tmp_path):
    a, b = cluster["a"], cluster["b"]
    for name, address in (("bob", BOB), ("dave", DAVE)):
        a.cli("directory", "import", str(make_cert(tmp_path, name, address)))
    # Every node has looked bob up once (its read cache knows him); nobody
    # has looked dave up.
    for node in cluster.nodes.values():
        assert smtp_send(node.ip, node.port, [BOB], message(f"warm-{node.name}", BOB)).startswith("250")
    wait_until(lambda: len(arrived_for(cluster.sink, BOB)) >= 3, 30, "warm-up messages for bob")

    sender = SteadySender(cluster.relay, plan=[([CAROL, BOB], "cb"), ([CAROL], "c")], interval=0.25).start()
    try:
        time.sleep(5)
        outage_start = time.time()
        cluster.pg.stop()
        # Mail for dave starts now: no node can look him up.
        sender.plan.append(([DAVE], "d"))
        time.sleep(3)
        # Administrative changes are refused with a clear reason.
        refused = a.cli("settings", "set", "smtp.max_recipients", "500", check=False)
        assert refused.returncode == 75, refused
        assert "cluster database" in refused.stderr and "try again later" in refused.stderr, refused.stderr
        refused = b.cli("directory", "import", str(make_cert(tmp_path, "erin", f"erin@{SECURE}")), check=False)
        assert refused.returncode == 75 and "cluster database" in refused.stderr, refused
        status = cluster.status("a")
        assert status["database"]["connected"] is False
        assert all(n["answers"] for n in status["nodes"]), "the nodes answer each other without the database"
        time.sleep(max(0.0, 60 - (time.time() - outage_start)))
        cluster.pg.start()
        outage_end = time.time()
        # Accepted again once the database is back.
        def change():
            done = a.cli("settings", "set", "smtp.max_recipients", "500", check=False)
            return done if done.returncode == 0 else None

        changed = wait_until(change, 30, "a settings change after the outage", every=0.5)
        new_version = version_of(changed.stdout)
        time.sleep(3)
    finally:
        sender.stop()
    assert sender.accepted and not sender.refused, sender.refused[:5]
    cluster.relay.flush()

    def all_arrived():
        got = {addr: markers(arrived_for(cluster.sink, addr)) for addr in (CAROL, BOB, DAVE)}
        missing = [(m, r) for m, rcpts in sender.accepted.items() for r in rcpts if m not in got[r]]
        return not missing

    wait_until(all_arrived, 120, "every accepted message at the sink")
    for address in (BOB, DAVE):
        for arrival in arrived_for(cluster.sink, address):
            assert arrival.encrypted, f"in clear for {address}: {arrival.raw[:400]!r}"
            assert b"body steady" not in arrival.raw
    during = [x for x in arrived_for(cluster.sink, BOB) if outage_start + 2 < x.at < outage_end]
    assert during, "bob's mail was delivered during the outage from the read cache"
    assert not [x for x in arrived_for(cluster.sink, DAVE) if outage_start + 2 < x.at < outage_end - 1], \
        "dave could not be looked up during the outage: his mail waited"
    accepted = len(sender.accepted)
    print(f"outage of {outage_end - outage_start:.0f} s: {accepted} messages accepted, all delivered, "
          f"none in clear; {len(during)} for bob delivered during the outage")
    # The nodes caught up: the change made after the outage is in force on B.
    wait_until(lambda: {n["state"]["settings_version"] for n in cluster.status("b")["nodes"]} == {new_version},
               10, "every node on the settings version made after the outage")


def test_node_killed_during_steady_send_loses_nothing(cluster, tmp_path):
    a, b = cluster["a"], cluster["b"]
    a.cli("directory", "import", str(make_cert(tmp_path, "bob", BOB)))
    sender = SteadySender(cluster.relay, plan=[([CAROL, BOB], "cb"), ([CAROL], "c")], interval=0.1).start()
    try:
        time.sleep(6)
        b.kill()
        time.sleep(4)
        b.start()
        time.sleep(4)
    finally:
        sender.stop()
    assert sender.accepted and not sender.refused, sender.refused[:5]
    cluster.relay.flush()

    def missing():
        got = {addr: markers(arrived_for(cluster.sink, addr)) for addr in (CAROL, BOB)}
        return [(m, r) for m, rcpts in sender.accepted.items() for r in rcpts if m not in got[r]]

    wait_until(lambda: not missing(), 120, "every accepted message at the sink")
    for arrival in arrived_for(cluster.sink, BOB):
        assert arrival.encrypted
    code, found = cluster.track("a", "--to", CAROL, "--limit", "100000")
    assert code == 0
    by_node = {n["node"]: n["events"] for n in found["nodes"]}
    assert all(by_node.values()), f"every node handled some of the mail: {by_node}"
    print(f"{len(sender.accepted)} messages accepted while node-b was killed and restarted; all delivered; "
          f"events per node {by_node}")
    assert json.dumps(found)  # the answer is JSON the web UI can render


def _mail_text(raw: bytes) -> str:
    import email as _email
    import email.policy as _policy

    m = _email.message_from_bytes(raw, policy=_policy.default)
    part = m.get_body(preferencelist=("plain",))
    return part.get_content() if part else ""


def test_portal_message_stored_through_a_is_read_through_c(cluster, tmp_path):
    """The recipient without a key is served by the portal; the message is
    stored by node A, and the recipient enrols and reads through node C:
    accounts, codes, sessions and the sealed mailbox are shared, and the
    database never sees the message in clear."""
    from webtools import Client

    a, c = cluster["a"], cluster["c"]
    a.cli("settings", "set", "portal.enabled", "true")
    erin = f"erin@{SECURE}"
    marker = f"portal-{time.monotonic_ns()}"
    smtp_send(a.ip, a.port, [erin], message(marker, erin, subject="For the portal"))
    note = wait_until(lambda: [x for x in arrived_for(cluster.sink, erin)
                               if "Secure message from" in str(x.message["Subject"])],
                      30, "the portal notification")[0]
    assert marker.encode() not in note.raw
    # Stored by A (its tracking), in PostgreSQL only sealed.
    assert "stored in the portal" in a.cli("track", "--to", erin).stdout
    dump = cluster.pg.psql("COPY (SELECT encode(value, 'escape') FROM sealgate_kv "
                           "WHERE space LIKE 'portal%') TO STDOUT", db=DATABASE)
    assert dump.strip(), "nothing of the portal in the shared store"
    assert marker not in dump

    # The recipient comes to node C: code, password, inbox, message.
    reader = Client(c.portal_port)
    assert reader.post("/code", {"address": erin}).status == 200
    mail = wait_until(lambda: [x for x in arrived_for(cluster.sink, erin)
                               if "code" in str(x.message["Subject"]).lower()], 30, "the code mail")[0]
    code = re.search(r"\b(\d{6})\b", _mail_text(mail.raw)).group(1)
    password = "Vm4-tolu-rapid-cedar-92"
    r = reader.post("/enrol", {"address": erin, "code": code, "password": password, "password2": password})
    assert r.status == 303 and r.header("location") == "/inbox", (r.status, r.body[:500])
    inbox = reader.get("/inbox").body
    found = re.search(r'href="/message/([0-9a-f]{32})"', inbox)
    assert found and "For the portal" in inbox, inbox[:2000]
    page = reader.get(f"/message/{found.group(1)}")
    assert page.status == 200 and f"body {marker}" in page.body, page.body[:1000]
    # C's tracking has the reading; the session works on A too (shared).
    assert f"read {found.group(1)}" in c.cli("track", "--to", erin).stdout
    on_a = Client(a.portal_port, cookies=dict(reader.cookies))
    assert on_a.get("/inbox").status == 200

