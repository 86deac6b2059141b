"""Fixtures for the cluster tests (cluster.py): PostgreSQL 15, a shared
SoftHSM2 token, three nodes, Postfix upstream, smtp-sink downstream."""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for _d in (HERE.parent / "lib", HERE.parent / "smtp", HERE.parent / "web", HERE):
    if str(_d) not in sys.path:
        sys.path.insert(0, str(_d))

from cluster import Cluster  # noqa: E402


@pytest.fixture
def cluster(tmp_path):
    """A started three-node cluster; everything stopped at teardown, the
    logs printed (pytest shows them for failures)."""
    c = Cluster(tmp_path)
    try:
        c.start()
        yield c
    finally:
        c.close()
