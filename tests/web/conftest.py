"""Fixtures of the web suites (tests/web): gateways with their web
listener, HTTPS clients, headless Chromium."""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for _d in (HERE.parent / "lib", HERE.parent / "smtp", HERE):
    if str(_d) not in sys.path:
        sys.path.insert(0, str(_d))

from webtools import Browser, web_gateway  # noqa: E402


@pytest.fixture
def gateways(tmp_path):
    """gateways(settings=None, name=None) -> a started gateway with a web
    listener; all stopped at teardown (their log tails printed)."""
    started = []

    def make(settings: dict | None = None, name: str | None = None):
        gw = web_gateway(tmp_path / (name or f"gw{len(started)}"), settings)
        started.append(gw)
        return gw.start()

    yield make
    for gw in started:
        gw.stop()
        if gw.log_path.exists():
            print(f"--- {gw.workdir} log tail ---\n{gw.log_path.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path)
    yield b
    b.close()
