"""Measuring: interleaved rounds, per-call blocks, peak resident memory, and plain-text tables."""

from __future__ import annotations

import os
import resource
import statistics
import threading
import time
from typing import Callable

MIB = 2**20


def interleave(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, list]:
    """Each run once per round, in turn; every other round in reverse order, so that neither
    side always goes first (warm caches, CPU frequency and neighbours' load drift both ways)."""
    names = list(runs)
    results: dict[str, list] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            results[name].append(runs[name]())
    return results


def calls_per_block(call: Callable[[], object], target_s: float, warmup: int = 3, most: int = 100_000) -> int:
    """How many calls of ``call`` take about ``target_s``, from the fastest of a few timed calls
    (after ``warmup`` calls that also trace or compile whatever is compiled on first use): on a
    shared machine a call that was preempted must not make the blocks too short."""
    for _ in range(warmup):
        call()
    fastest, spent = float("inf"), 0.0
    for _ in range(most):
        start = time.perf_counter()
        call()
        took = time.perf_counter() - start
        fastest, spent = min(fastest, took), spent + took
        if spent > target_s / 5:
            break
    return max(1, min(most, int(target_s / max(fastest, 1e-9))))


def per_call_block(call: Callable[[], object], count: int) -> Callable[[], float]:
    """A function that makes ``count`` calls and returns the seconds per call."""

    def block() -> float:
        start = time.perf_counter()
        for _ in range(count):
            call()
        return (time.perf_counter() - start) / count

    return block


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Peak resident set size (RSS) while the ``with`` block runs, sampled every ``interval``
    seconds from ``/proc/self/statm`` by a background thread: ``peak_mib`` is the highest RSS
    seen, ``extra_mib`` how far that is above the RSS at entry (what the block itself needed).
    Where ``/proc`` is missing, the process's lifetime peak ``ru_maxrss`` is reported instead and
    ``extra_mib`` is NaN."""

    def __init__(self, interval: float = 0.01):
        self.interval, self.peak_mib, self.extra_mib = interval, float("nan"), float("nan")

    def __enter__(self):
        self._start = _rss_bytes()
        self._peak = self._start or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        if self._start is not None:
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _rss_bytes() or 0)

    def __exit__(self, *exc):
        self._stop.set()
        if self._start is None:
            self.peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB
            return False
        self._thread.join()
        self._peak = max(self._peak, _rss_bytes() or 0)
        self.peak_mib, self.extra_mib = self._peak / MIB, (self._peak - self._start) / MIB
        return False


def table(headers: list[str], rows: list[list], first_left: int = 1) -> str:
    """Aligned plain text: the first ``first_left`` columns left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        lines.append("  ".join(v.ljust(w) if i < first_left else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)
