"""Settings that change while the gateway runs (issue 13): versions with
author and comment, a change under load that loses nothing and processes
every message under exactly one version, an invalid change refused whole,
rollback, restart, and two administrators changing the same version."""

import email
import email.policy
import json
import subprocess
import threading
import time

from harness import sealgate_bin
from smtp_conftest import send_message, wait_outbox

SECURE = {"name": "secure subject", "subject_keyword": ["[secure]"], "action": "encrypt-required"}


def settings_json(gw, version=None) -> dict:
    args = ["settings", "show", "--json"] + (["--version", str(version)] if version else [])
    return json.loads(gw.cli(*args).stdout)


def subject_of(raw: bytes) -> str:
    return str(email.message_from_bytes(raw, policy=email.policy.compat32).get("Subject", ""))


def test_a_change_under_load_loses_nothing_and_each_message_sees_one_version(gateway_factory):
    # Internal recipients of "[secure]" mail get it in clear (boundary only),
    # with the keyword removed while strip_subject_keyword is on.
    gw = gateway_factory({"policy": {"rule": [SECURE]}, "delivery": {"concurrency": 20}})
    assert settings_json(gw)["meta"]["version"] == 1
    accepted: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def sender(n: int):
        i = 0
        while not stop.is_set():
            subject = f"[secure] load {n}-{i}"
            try:
                send_message(gw.port, "alice@example.org", ["carol@example.org"],
                             f"From: alice@example.org\r\nSubject: {subject}\r\n\r\nbody {n}-{i}\r\n")
                accepted.append(f"{n}-{i}")
            except Exception as e:  # noqa: BLE001 - every failure is reported below
                failures.append(f"{n}-{i}: {e}")
            i += 1

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    time.sleep(3)
    gw.cli("settings", "set", "policy.strip_subject_keyword", "false", "--comment", "keep the keyword")
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not failures, failures[:5]
    got = wait_outbox(gw, lambda m: len(m) >= len(accepted), timeout=120)
    assert len(got) == len(accepted), f"{len(accepted)} accepted, {len(got)} delivered"
    subjects = {subject_of(raw).split(" ")[-1]: subject_of(raw) for raw in got}
    assert set(subjects) == set(accepted)
    # Every message was processed under exactly one version, and its
    # subject is what that version says.
    events = json.loads(gw.cli("track", "--to", "carol@example.org", "--limit", "100000", "--json").stdout)
    versions: dict[str, set] = {}
    for e in events:
        if e["kind"] in ("policy", "delivered"):
            versions.setdefault(e["queue_id"], set()).add(e.get("settings_version"))
    assert versions and all(len(v) == 1 and None not in v for v in versions.values()), versions
    seen = {next(iter(v)) for v in versions.values()}
    assert seen == {1, 2}, f"the change fell outside the load: versions {seen}"
    by_body = {}
    for raw in got:
        body = raw.split(b"\r\n\r\n", 1)[1].decode().strip()
        by_body[body] = subject_of(raw)
    stripped = sum(1 for s in by_body.values() if not s.startswith("[secure]"))
    kept = sum(1 for s in by_body.values() if s.startswith("[secure]"))
    assert stripped and kept, (stripped, kept)
    queue_of = {e["queue_id"]: e for e in events if e["kind"] == "delivered"}
    assert len(queue_of) == len(accepted)


def test_an_invalid_change_is_refused_whole_naming_every_key(gateway_factory, tmp_path):
    gw = gateway_factory()
    bad = tmp_path / "bad.toml"
    bad.write_text('hostname = "gw.test"\n[smtp]\nmax_recipients = 0\n[delivery]\nmode = "smarthost"\n'
                   'retry_initial_secs = 0\n')
    # The command line reads the file first and names each key with its line.
    out = gw.cli("settings", "apply", str(bad), check=False)
    assert out.returncode == 2, out
    for key in ("line 3 (key `smtp.max_recipients`)", "delivery.mode", "line 6 (key `delivery.retry_initial_secs`)"):
        assert key in out.stderr, out.stderr
    # The service checks every change whole, whatever the front end.
    zero = gw.cli("settings", "set", "smtp.max_recipients", "0", check=False)
    assert zero.returncode == 65 and "smtp.max_recipients: must be at least 1" in zero.stderr, zero
    history = gw.cli("settings", "history").stdout
    assert history.count("settings version") == 1, history
    assert settings_json(gw)["settings"]["smtp"]["max_recipients"] == 1000
    # An unknown key is refused too, naming it.
    typo = gw.cli("settings", "set", "delivery.smarthots", "x:25", check=False)
    assert typo.returncode == 65 and "delivery.smarthots" in typo.stderr, typo


def test_rollback_restores_behaviour(gateway_factory):
    gw = gateway_factory()
    rules = [{"name": "no contracts", "subject_keyword": ["contract"], "action": "reject"}]
    gw.cli("settings", "set", "policy.rule", json.dumps(rules), "--comment", "block contracts")
    send_message(gw.port, "alice@example.org", ["bob@ext.example"],
                 "From: alice@example.org\r\nSubject: the contract\r\n\r\nfirst\r\n")
    got = wait_outbox(gw, lambda m: any(b"Action: failed" in x for x in m))
    notice = [x for x in got if b"Action: failed" in x][0]
    assert b"Status: 5.7.1" in notice, notice
    out = gw.cli("settings", "rollback", "1").stdout
    assert "settings version 3" in out and "rollback to version 1" in out, out
    send_message(gw.port, "alice@example.org", ["bob@ext.example"],
                 "From: alice@example.org\r\nSubject: the contract\r\n\r\nsecond\r\n")
    wait_outbox(gw, lambda m: any(b"second" in x and b"bob@ext.example" in x for x in m))
    diff = gw.cli("settings", "diff", "2", "3").stdout
    assert "policy.rule.0.action" in diff, diff
    audit = gw.cli("audit", "--operation", "settings.").stdout
    assert audit.count("settings.set") == 1 and "settings.rollback" in audit, audit


def test_restart_keeps_the_version_in_force(gateway_factory):
    gw = gateway_factory()
    gw.cli("settings", "set", "delivery.concurrency", "7")
    gw.stop()
    gw.start()
    assert gw.cli("settings", "get", "delivery.concurrency").stdout.strip() == "7"
    status = gw.cli("status").stdout
    assert "settings version:  2" in status and "bootstrap file's settings differ" in status, status
    log = gw.log_path.read_text(errors="replace")
    assert log.count("differ from settings version 2 in force") == 1, log[-2000:]


def test_two_changes_from_the_same_version_one_wins(gateway_factory):
    gw = gateway_factory()
    cmd = [sealgate_bin(), "--config", str(gw.config_path), "settings", "set", "--base", "1"]
    a = subprocess.Popen(cmd + ["delivery.concurrency", "11"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=gw.env, text=True)
    b = subprocess.Popen(cmd + ["delivery.concurrency", "12"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=gw.env, text=True)
    results = [(p.wait(timeout=60), p.stdout.read(), p.stderr.read()) for p in (a, b)]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 75], results
    loser = [r for r in results if r[0] == 75][0]
    assert "changed meanwhile" in loser[2], loser
    value = gw.cli("settings", "get", "delivery.concurrency").stdout.strip()
    winner = [r for r in results if r[0] == 0][0]
    assert value in ("11", "12") and f"version 2" in winner[1], (value, winner)
    # Never merged: exactly one new version.
    assert gw.cli("settings", "history").stdout.count("settings version") == 2
