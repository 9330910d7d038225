"""How long a route change takes from BGP to the kernel: UPDATE received → kernel acknowledged.

Owns :class:`LatencyRecorder`: cumulative histogram buckets (exported as a Prometheus
histogram) and a window of recent samples (their percentiles appear in ``GET /v1/node``). The
times are ``time.monotonic()`` seconds handed in by the caller; felix knows nothing of BGP.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WINDOW = 300.0  # seconds of samples behind the percentiles
MAX_SAMPLES = 4096  # and at most this many of them


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of a sorted, non-empty list."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class LatencyRecorder:
    """Samples of one latency, in seconds; see the module docstring."""

    def __init__(
        self,
        buckets: tuple[float, ...] = BUCKETS,
        window: float = WINDOW,
        max_samples: int = MAX_SAMPLES,
    ) -> None:
        self.buckets = buckets
        self.window = window
        self.counts = [0] * (len(buckets) + 1)  # per bucket, the last one is +Inf
        self.count = 0
        self.sum = 0.0
        self._recent: deque[tuple[float, float]] = deque(maxlen=max_samples)  # (at, seconds)

    def observe(self, seconds: float, at: float) -> None:
        seconds = max(0.0, seconds)
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.count += 1
        self.sum += seconds
        self._recent.append((at, seconds))

    def observe_since(self, starts: list[float], now: float) -> None:
        """One observation per start time, each ``now - start`` (a pass's changes all reach
        the kernel at ``now``)."""
        counts, buckets, find = self.counts, self.buckets, bisect.bisect_left
        total = 0.0
        for start in starts:
            seconds = now - start if now > start else 0.0
            counts[find(buckets, seconds)] += 1
            total += seconds
        self.count += len(starts)
        self.sum += total
        keep = self._recent.maxlen or len(starts)
        self._recent.extend((now, now - start if now > start else 0.0) for start in starts[-keep:])

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it) per bucket, ending with (+Inf, count)."""
        out, running = [], 0
        for bound, n in zip((*self.buckets, math.inf), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out

    def summary(self, now: float) -> dict[str, float | int | None]:
        """Percentiles in milliseconds over the samples of the last ``window`` seconds."""
        while self._recent and self._recent[0][0] < now - self.window:
            self._recent.popleft()
        values = sorted(s for _at, s in self._recent)

        def ms(q: float) -> float | None:
            return round(percentile(values, q) * 1000, 3) if values else None

        return {
            "windowSeconds": self.window,
            "samples": len(values),
            "p50Ms": ms(50),
            "p90Ms": ms(90),
            "p99Ms": ms(99),
            "maxMs": round(values[-1] * 1000, 3) if values else None,
            "total": self.count,
        }
