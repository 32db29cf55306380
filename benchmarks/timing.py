"""Timing helper shared by the benchmark scripts (run as ``python benchmarks/<script>.py``, so this folder is on
``sys.path``)."""
from __future__ import annotations

import time
from typing import Callable


def best_time(fn: Callable[[], object], rounds: int) -> tuple[float, object]:
    """The shortest wall time of ``rounds`` calls of ``fn`` (seconds) and the last call's result."""
    best, result = float("inf"), None
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result
