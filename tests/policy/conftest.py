"""Fixtures for the policy tests: the SMTP suite's gateway factory and helpers
(loaded under another module name: both files are called conftest.py, and
this one re-exports the other's names so either can be `conftest` when the
two directories run in one pytest session)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("smtp_conftest", HERE.parent / "smtp" / "conftest.py")
smtp_conftest = importlib.util.module_from_spec(_spec)
sys.modules["smtp_conftest"] = smtp_conftest
_spec.loader.exec_module(smtp_conftest)

from smtp_conftest import *  # noqa: E402,F401,F403
from smtp_conftest import gateway_factory, gateway, sink  # noqa: E402,F401


@pytest.fixture
def gnupg(tmp_path):
    """gpg with its own GNUPGHOME under tmp_path; the agent is killed after."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}

    def gpg(*args, **kw):
        return subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", *args],
                              env=env, capture_output=True, check=True, timeout=120, **kw)
    yield gpg
    subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True)
