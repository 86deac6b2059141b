"""Distribution lists: local lists from the configuration and LDAP groups
from a real OpenLDAP server (slapd), nested, with a cycle; each member is
then decided on its own. Sender groups from LDAP drive a policy rule. A
directory server that is down defers the message (451 4.4.3) instead of
accepting it half-expanded."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lib"))

from slapd import BASE_DN, Slapd  # noqa: E402
from smtp_conftest import send_message, wait_outbox  # noqa: E402
from test_policy import envelope_to, msg, statuses, wait_status  # noqa: E402


def person(uid: str) -> str:
    return (f"dn: uid={uid},ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
            f"cn: {uid}\nsn: {uid}\nmail: {uid}@example.org\n\n")


def group(cn: str, members: list[str], mail: str | None = None) -> str:
    lines = [f"dn: cn={cn},ou=groups,{BASE_DN}", "objectClass: groupOfNames"]
    if mail:
        lines += ["objectClass: extensibleObject", f"mail: {mail}"]
    lines.append(f"cn: {cn}")
    lines += [f"member: {m}" for m in members]
    return "\n".join(lines) + "\n\n"


def uid(u: str) -> str:
    return f"uid={u},ou=people,{BASE_DN}"


def gdn(cn: str) -> str:
    return f"cn={cn},ou=groups,{BASE_DN}"


LDIF = (
    f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n"
    f"dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people\n\n"
    f"dn: ou=groups,{BASE_DN}\nobjectClass: organizationalUnit\nou: groups\n\n"
    + "".join(person(u) for u in ["ann", "ben", "cat", "lee"])
    # team -> ann, ben, subteam; subteam -> cat and back to team (a cycle)
    + group("team", [uid("ann"), uid("ben"), gdn("subteam")], mail="team@example.org")
    + group("subteam", [uid("cat"), gdn("team")])
    + group("legal", [uid("lee")])
)

RULES = {"rule": [{"name": "legal out", "sender_group": ["legal"], "recipient_internal": False,
                   "action": "encrypt-required"}]}


@pytest.fixture
def slapd(tmp_path):
    with Slapd(tmp_path, LDIF) as server:
        yield server


def delivered_to(messages) -> list[str]:
    return sorted(r for m in messages for r in envelope_to(m) if not m.startswith(b"Return-Path: <>"))


def test_ldap_group_expands_nested_with_a_cycle(gateway_factory, slapd):
    gw = gateway_factory({"ldap": slapd.settings(), "policy": RULES})
    send_message(gw.port, "zed@example.org", ["team@example.org"], msg("hello team", "x", sender="zed@example.org"))
    got = wait_outbox(gw, lambda m: len(delivered_to(m)) >= 3)
    assert delivered_to(got) == ["ann@example.org", "ben@example.org", "cat@example.org"]


def test_ldap_sender_group_drives_policy(gateway_factory, slapd):
    gw = gateway_factory({"ldap": slapd.settings(), "policy": RULES})
    send_message(gw.port, "lee@example.org", ["out@ext.example", "ann@example.org"],
                 msg("minutes", "m", sender="lee@example.org"))
    wait_outbox(gw, lambda m: "ann@example.org" in delivered_to(m))
    wait_status(gw, lambda e: statuses(e).get("out@ext.example") == "held")
    # The same sender without the group: the rule does not apply.
    send_message(gw.port, "ben@example.org", ["out2@ext.example"], msg("x", "x", sender="ben@example.org"))
    wait_outbox(gw, lambda m: "out2@ext.example" in delivered_to(m))


def test_directory_down_defers_instead_of_accepting(gateway_factory, slapd):
    gw = gateway_factory({"ldap": slapd.settings()})
    slapd.stop()
    reply = send_message(gw.port, "zed@example.org", ["team@example.org"], msg("t", "t", sender="zed@example.org"),
                         expect_end="451")
    assert "4.4.3" in reply


def test_local_lists_nested_and_deduplicated(gateway_factory):
    gw = gateway_factory({"lists": {"all@example.org": ["staff@example.org", "ext@partner.example"],
                                    "staff@example.org": ["ann@example.org", "ben@example.org", "all@example.org"]}})
    send_message(gw.port, "zed@example.org", ["all@example.org", "ann@example.org"], msg("all", "x", sender="zed@example.org"))
    got = wait_outbox(gw, lambda m: len(delivered_to(m)) >= 3)
    assert delivered_to(got) == ["ann@example.org", "ben@example.org", "ext@partner.example"]
