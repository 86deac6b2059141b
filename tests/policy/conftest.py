"""Fixtures for the policy tests: the SMTP suite's gateway factory and helpers
(loaded under another module name: both files are called conftest.py, and
this one re-exports the other's names so either can be `conftest` when the
two directories run in one pytest session)."""

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("smtp_conftest", HERE.parent / "smtp" / "conftest.py")
smtp_conftest = importlib.util.module_from_spec(_spec)
sys.modules["smtp_conftest"] = smtp_conftest
_spec.loader.exec_module(smtp_conftest)

from smtp_conftest import *  # noqa: E402,F401,F403
from smtp_conftest import gateway_factory, gateway, sink  # noqa: E402,F401
