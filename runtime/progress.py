"""A dependency-free progress line on stderr (the runtime does not depend on tqdm)."""

from __future__ import annotations

import sys
import time


class Progress:
    """Prints ``label: done/total`` on one stderr line, at most ten times a second."""

    def __init__(self, label: str, total: int, enabled: bool = True) -> None:
        self.label, self.total, self.enabled = label, total, enabled
        self.done = 0
        self._start = self._last = time.perf_counter()

    def update(self, n: int) -> None:
        """Count ``n`` more items done."""
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            rate = self.done / max(now - self._start, 1e-9)
            sys.stderr.write(f"\r{self.label}: {self.done}/{self.total} ({rate:,.0f}/s)")
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()
