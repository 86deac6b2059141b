import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))


def pytest_runtest_logreport(report):
    """Print a failure as soon as it happens: these tests are slow, and a
    run cut off by its time limit prints no summary."""
    if report.failed:
        print(f"\n--- {report.nodeid} ({report.when}) failed:\n{report.longreprtext}\n", flush=True)
