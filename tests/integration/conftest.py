"""Fixtures for real-process tests: a per-test :class:`NetnsFactory` that always tears down.

Skips (with the reason) only when namespaces cannot be made here: not root, or no ``ip netns``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/ is not an installed package; make ``tests.support`` importable however pytest is run.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.netns import NetnsFactory, netns_available  # noqa: E402


@pytest.fixture
def netns_factory(tmp_path: Path) -> Iterator[NetnsFactory]:
    """Namespaces, links and daemons for one test; everything is removed afterwards."""
    reason = netns_available()
    if reason is not None:
        pytest.skip(reason)
    with NetnsFactory(log_dir=tmp_path) as factory:
        yield factory
