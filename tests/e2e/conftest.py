"""Fixtures for the end-to-end encryption flows: real Postfix upstream,
Sealgate daemons with SoftHSM2 tokens, smtp-sink downstream (helpers.py).

The policy and SMTP suites' modules are reused, not copied: their
directories go on sys.path and the policy conftest (which loads the SMTP
one) is loaded under its own module name, so this file can be `conftest`
when several test directories run in one pytest session."""

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _d in ("lib", "smtp", "policy"):
    if str(HERE.parent / _d) not in sys.path:
        sys.path.insert(0, str(HERE.parent / _d))
sys.path.insert(0, str(HERE))

if "policy_conftest" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("policy_conftest", HERE.parent / "policy" / "conftest.py")
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules["policy_conftest"] = _mod
    _spec.loader.exec_module(_mod)

from policy_conftest import gnupg  # noqa: E402,F401  (fixture)
from helpers import Peers  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def peers(tmp_path):
    """Starts sinks, token-backed gateways and Postfix relays on demand;
    stops every one of them at teardown, even when the test failed, and
    prints their logs (pytest shows them for failures)."""
    p = Peers(tmp_path)
    try:
        yield p
    finally:
        p.close()
