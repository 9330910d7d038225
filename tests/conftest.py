"""Suite-wide rules: a test skipped for lack of a tool or privilege fails in CI, and property
tests have no per-example deadline (a wall-clock bound on a shared 2-core machine is noise, not
a finding; the example counts bound their work).

``scripts/test.sh`` sets ``PODBGP_NO_SKIP=1`` after installing everything, so a skip can only
mean a broken set-up, and the core path must not be skipped silently. A test whose skip depends
on the machine itself (e.g. a kernel that happens to have IPIP) is marked ``may_skip``.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest
from hypothesis import settings

settings.register_profile("podbgp", deadline=None)
settings.load_profile("podbgp")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if (
        report.skipped
        and os.environ.get("PODBGP_NO_SKIP") == "1"
        and item.get_closest_marker("may_skip") is None
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, but PODBGP_NO_SKIP=1 forbids skips here: {reason}"
