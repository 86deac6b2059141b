"""The settings forms in Chromium: a number, a checkbox and a list
changed and each section saved on its own as a new version; the history
names the administrator and only the changed keys; a word in a number
field and a value the service refuses are shown next to their fields
with nothing saved and the typed value kept; the TOML page still saves
the whole tree; an auditor sees the values with no save button."""

import re

from selenium.webdriver.common.by import By

from webtools import Client, PASSWORD, fresh_code, secret_from, setup_over_http

AUDITOR_PASSWORD = "quartz-lantern-meadow-58"


def versions(c: Client) -> list[int]:
    body = c.get("/settings/history").body
    return [int(v) for v in re.findall(r'href="/settings/history\?version=(\d+)"', body)]


def diff_keys(c: Client, version: int) -> list[str]:
    body = c.get(f"/settings/history?version={version}").body
    return re.findall(r'<td data-label="Key" class="mono">([^<]*)</td>', body)


def save(b, section: str) -> None:
    b.click(f"#s-{section} button[type=submit]", navigates=True)


def login(b, base: str, name: str, password: str, code: str) -> None:
    b.open(base + "/login")
    b.fill("name", name)
    b.fill("password", password)
    b.fill("code", code)
    b.submit()


def test_settings_forms(gateways, browser):
    gw = gateways()
    used: set[str] = set()
    admin, secret = setup_over_http(gw, used=used)
    base = f"https://127.0.0.1:{gw.web_port}"
    b = browser
    login(b, base, "alice", PASSWORD, fresh_code(secret, used))
    assert b.path == "/dashboard"

    b.open(base + "/settings")
    b.shots("settings-forms")
    d = b.driver
    for section in ("general", "smtp", "relay", "delivery", "policy", "portal", "ldap", "lists"):
        assert d.find_elements(By.CSS_SELECTOR, f"#s-{section} form"), section
    # Fields of the right kind.
    assert d.find_element(By.ID, "f-policy-boundary_only").get_attribute("type") == "checkbox"
    assert d.find_element(By.ID, "f-delivery-mode").tag_name == "select"
    assert d.find_element(By.ID, "f-relay-domains").tag_name == "textarea"
    assert d.find_element(By.ID, "f-smtp-max_recipients").get_attribute("value") == "1000"
    first = versions(admin)[0]

    # A number.
    b.fill("f-smtp-max_recipients", "123")
    save(b, "smtp")
    assert "Saved as a new settings version" in b.text()
    assert d.find_element(By.ID, "f-smtp-max_recipients").get_attribute("value") == "123"
    # A checkbox, unticked.
    box = d.find_element(By.ID, "f-policy-boundary_only")
    assert box.is_selected()
    box.click()
    save(b, "policy")
    assert not d.find_element(By.ID, "f-policy-boundary_only").is_selected()
    # A checkbox, ticked.
    d.find_element(By.ID, "f-invitations-enabled").click()
    save(b, "invitations")
    assert d.find_element(By.ID, "f-invitations-enabled").is_selected()
    # A list.
    b.fill("f-relay-domains", "example.org\nsecond.example\n")
    save(b, "relay")
    assert d.find_element(By.ID, "f-relay-domains").get_attribute("value") == "example.org\nsecond.example"

    # Each save is a version of its own, by alice, changing only its keys.
    vs = versions(admin)
    assert vs[:5] == [first + 4, first + 3, first + 2, first + 1, first], vs
    assert diff_keys(admin, first + 1) == ["smtp.max_recipients"]
    assert diff_keys(admin, first + 2) == ["policy.boundary_only"]
    assert diff_keys(admin, first + 3) == ["invitations.enabled"]
    assert diff_keys(admin, first + 4) == ["relay.domains"]
    b.open(base + f"/settings/history?version={first + 4}")
    history = b.text()
    assert "alice" in history and "Relaying and our domains (web UI)" in history
    b.shots("settings-forms-history")
    assert "second.example" in gw.cli("settings", "get", "relay.domains").stdout
    assert "123" in gw.cli("settings", "get", "smtp.max_recipients").stdout

    # Nothing changed: no version.
    b.open(base + "/settings")
    save(b, "tracking")
    assert "Nothing changed" in b.text()
    assert versions(admin)[0] == first + 4

    # A word in a number field: shown next to it, kept, nothing saved.
    b.open(base + "/settings")
    b.fill("f-smtp-max_recipients", "abc")
    b.fill("f-smtp-max_errors", "7")
    save(b, "smtp")
    field = d.find_element(By.ID, "f-smtp-max_recipients")
    assert field.get_attribute("aria-invalid") == "true"
    assert field.get_attribute("value") == "abc", "the user's value is kept"
    assert "err-smtp-max_recipients" in field.get_attribute("aria-describedby")
    assert "whole number" in b.text("#err-smtp-max_recipients")
    assert d.find_element(By.ID, "f-smtp-max_errors").get_attribute("value") == "7"
    assert "was not saved" in b.text(".alert")
    b.shots("settings-forms-error")
    # A value the service refuses: its error is next to its field too.
    b.open(base + "/settings")
    b.fill("f-delivery-smarthost", "relay.example:notaport")
    save(b, "delivery")
    field = d.find_element(By.ID, "f-delivery-smarthost")
    assert field.get_attribute("aria-invalid") == "true"
    assert field.get_attribute("value") == "relay.example:notaport"
    assert b.text("#err-delivery-smarthost")
    assert versions(admin)[0] == first + 4, "nothing was saved"

    # Edited from an older version: refused (Conflict), the values kept.
    r = admin.post("/settings/section/tracking", {"_version": str(first), "tracking.retention_days": "30"})
    assert r.status == 422 and "changed meanwhile" in r.body, (r.status, r.body[:2000])
    assert 'value="30"' in r.body
    assert versions(admin)[0] == first + 4

    # The TOML page still saves the whole tree.
    b.open(base + "/settings/toml")
    text = d.find_element(By.ID, "text").get_attribute("value")
    assert "max_recipients = 123" in text
    b.fill("text", text.replace("retention_days = 90", "retention_days = 45", 1))
    b.submit()
    assert b.path == "/settings/toml" and "Saved" in b.text()
    assert diff_keys(admin, first + 5) == ["tracking.retention_days"]
    b.shots("settings-toml")

    # An auditor reads the settings and gets no save button.
    r = admin.post("/accounts", {"name": "audrey", "role": "auditor", "password": AUDITOR_PASSWORD})
    assert r.status == 303, r.body[:1000]
    d.delete_all_cookies()
    b.open(base + "/login")
    b.fill("name", "audrey")
    b.fill("password", AUDITOR_PASSWORD)
    b.submit()
    b.fill("code", fresh_code(secret_from(d.page_source), used))
    b.submit()
    b.open(base + "/settings")
    assert d.find_element(By.ID, "f-smtp-max_recipients").get_attribute("value") == "123"
    assert not d.find_elements(By.CSS_SELECTOR, "main button[type=submit]:not(.link)"), "no save button"
    assert d.find_element(By.ID, "f-smtp-max_recipients").get_attribute("readonly") is not None
    assert not d.find_element(By.ID, "f-policy-boundary_only").is_enabled()
    b.shots("settings-forms-auditor")
    b.open(base + "/settings/toml")
    assert not d.find_elements(By.CSS_SELECTOR, "main button[type=submit]:not(.link)")
