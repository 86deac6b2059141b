import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
# The web suite's helpers (HTTPS client with a cookie jar, TOTP codes) for
# the wizard test in test_iso.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))


def pytest_runtest_logreport(report):
    """Print a failure as soon as it happens: these tests are slow, and a
    run cut off by its time limit prints no summary."""
    if report.failed:
        print(f"\n--- {report.nodeid} ({report.when}) failed:\n{report.longreprtext}\n", flush=True)


def pytest_terminal_summary(terminalreporter):
    """The boot times of the run as a table (TCG, this machine's load)."""
    from appliance import BOOT_TIMES

    if not BOOT_TIMES:
        return
    tr = terminalreporter
    width = max(len(what) for what, _, _ in BOOT_TIMES)
    tr.section("boot times under QEMU TCG (not assertions)")
    tr.write_line(f"{'boot':<{width}}  firmware  seconds")
    for what, firmware, seconds in BOOT_TIMES:
        tr.write_line(f"{what:<{width}}  {firmware:<8}  {seconds:7.1f}")


def pytest_configure(config):
    config.addinivalue_line("markers", "extended: slow boots beyond the CI budget (SEALGATE_IMAGE_EXTENDED=1)")


def pytest_collection_modifyitems(config, items):
    """Boots beyond the CI budget run with SEALGATE_IMAGE_EXTENDED=1 only."""
    if os.environ.get("SEALGATE_IMAGE_EXTENDED") == "1":
        return
    skip = pytest.mark.skip(reason="a boot beyond the CI budget: SEALGATE_IMAGE_EXTENDED=1 runs it")
    for item in items:
        if "extended" in item.keywords:
            item.add_marker(skip)
