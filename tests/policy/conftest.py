"""Fixtures for the policy tests: the SMTP suite's gateway factory and helpers
(loaded under another module name: both files are called conftest.py)."""

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("smtp_conftest", HERE.parent / "smtp" / "conftest.py")
smtp_conftest = importlib.util.module_from_spec(_spec)
sys.modules["smtp_conftest"] = smtp_conftest
_spec.loader.exec_module(smtp_conftest)

gateway_factory = smtp_conftest.gateway_factory
