"""Times measured by the deploy tests, reported at the end of the session (the README quotes them).

A module of its own: pytest imports ``conftest.py`` under another name than the tests would, so
a dict kept there would exist twice.
"""

from __future__ import annotations

TIMINGS: dict[str, float] = {}
