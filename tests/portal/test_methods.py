"""Per domain and per address, the policy says which delivery methods
apply and in which order (`methods` in `[policy.domain."…"]` and
`[policy.address."…"]`, else `policy.methods`): a recipient whose list
leaves the portal out is held, as before the portal, while the rest of
the domain gets the portal; the dry run, the queue and tracking say so."""

import json
import time

from portaltools import outbox_mail, send


def _explain(gw, rcpt: str) -> str:
    out = gw.cli("policy", "explain", "--json", "--from", "alice@example.org", "--to", rcpt,
                 input_text="Subject: x\r\n\r\nx\r\n").stdout
    return json.dumps(json.loads(out))


def test_methods_per_domain_and_address(portal_gateway, tmp_path):
    gw = portal_gateway
    exported = gw.cli("settings", "export").stdout
    extra = (
        '\n[policy.domain."hold.example"]\naction = "encrypt-required"\nmethods = ["smime", "openpgp"]\n'
        '\n[policy.address."vip@partner.example"]\nmethods = ["openpgp", "smime"]\n'
    )
    path = tmp_path / "methods.toml"
    path.write_text(exported + extra)
    gw.cli("settings", "apply", str(path), "--comment", "methods per domain and address")

    # The dry run: the domain's portal, the address's and the other
    # domain's own lists without it.
    assert "method portal" in _explain(gw, "dan@partner.example")
    for rcpt in ("vip@partner.example", "kim@hold.example"):
        explained = _explain(gw, rcpt)
        assert "method portal" not in explained and "held: encryption required" in explained, explained

    # Real mail: dan gets the portal's notification, the other two wait.
    send(gw, "alice@example.org", "dan@partner.example", "To the portal", "one")
    send(gw, "alice@example.org", "vip@partner.example", "Held for vip", "two")
    send(gw, "alice@example.org", "kim@hold.example", "Held for kim", "three")
    outbox_mail(gw, "dan@partner.example", lambda m: "Secure message from" in str(m["Subject"]))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = gw.cli("queue", "list").stdout
        if "vip@partner.example" in listed and "kim@hold.example" in listed:
            break
        time.sleep(0.5)
    assert "vip@partner.example" in listed and "kim@hold.example" in listed, listed
    assert "dan@partner.example" not in listed, listed
    for rcpt in ("vip@partner.example", "kim@hold.example"):
        track = gw.cli("track", "--to", rcpt).stdout
        assert "method portal" not in track and "encryption required" in track, track
