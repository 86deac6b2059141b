"""The update operation through a running gateway, as the CLI and the admin
UI reach it: `update.status` and `update.install` over the control socket,
a source that is neither an absolute path nor a URL refused before RAUC
sees it, and every attempt in the audit log without URL credentials.

Installing for real needs the appliance (RAUC, two root slots): the image
tests do that in QEMU (tests/image/test_appliance.py), through the console,
which hands it to the gateway's service the same way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from harness import Gateway  # noqa: E402


def rauc_answers() -> bool:
    try:
        return subprocess.run(["rauc", "status", "--detailed", "--output-format=json"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_update_operations_through_the_gateway(tmp_path):
    with Gateway(tmp_path) as gw:
        report = json.loads(gw.cli("update", "status", "--json").stdout)
        # Not an appliance: RAUC does not answer here, so no slots.
        assert report["live"] is False
        assert report["slots_known"] is rauc_answers()
        if not report["slots_known"]:
            assert report["slots"] == []
        text = gw.cli("update", "status").stdout
        assert "running:" in text

        refused = gw.cli("update", "install", "relative.raucb", check=False)
        assert refused.returncode == 65, refused
        assert "absolute file path or an http(s):// URL" in refused.stderr, refused.stderr

        refused = gw.cli("update", "install", "https://admin:s3cret@updates.example/a b.raucb", check=False)
        assert refused.returncode == 65, refused

        audit = gw.cli("audit", "--operation", "update.install", "--json").stdout
        assert audit.count("update.install") >= 2, audit
        assert "relative.raucb" in audit
        assert "***@updates.example" in audit
        assert "s3cret" not in audit
