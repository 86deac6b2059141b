"""Fixtures of the portal suite (tests/portal): a gateway with its
SoftHSM token and its portal listener, headless Chromium. Reuses
tests/lib (harness, hsm_token) and tests/web/webtools.py."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for _d in (HERE.parent / "lib", HERE.parent / "web", HERE):
    if str(_d) not in sys.path:
        sys.path.insert(0, str(_d))

from harness import free_port  # noqa: E402
from hsm_token import token_gateway  # noqa: E402
from webtools import Browser  # noqa: E402
from portaltools import portal_settings  # noqa: E402


@pytest.fixture
def portal_gateway(tmp_path):
    """A started gateway: external domain partner.example is
    encrypt-required, nobody there has a key, the portal is on (TOTP
    required for partner.example), mail leaves to the outbox."""
    port = free_port()
    gw = token_gateway(tmp_path / "gw", portal_settings(port))
    gw.portal_port = port
    gw.start()
    yield gw
    gw.stop()
    if gw.log_path.exists():
        print(f"--- log tail ---\n{gw.log_path.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path)
    yield b
    b.close()


@pytest.fixture
def gnupg():
    """gpg with its own GNUPGHOME (short path under /tmp: the agent's
    socket path is bounded); the agent is killed and the home removed after."""
    import shutil
    home = tempfile.mkdtemp(prefix="sg-gpg-")
    env = {**os.environ, "GNUPGHOME": home}

    def gpg(*args, **kw):
        return subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", *args],
                              env=env, capture_output=True, check=True, timeout=120, **kw)
    yield gpg
    subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True)
    shutil.rmtree(home, ignore_errors=True)
