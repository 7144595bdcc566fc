"""Progress of the prediction loop on stderr: images done and images per second."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Prints at most once per ``interval`` seconds: in place on a terminal, one line at a time in a log."""

    def __init__(self, total: int, enabled: bool = True, stream: TextIO | None = None):
        self.total = total
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.perf_counter()
        self._tty = self.stream.isatty()
        self._interval = 0.5 if self._tty else 10.0
        self._last = self.start

    def restart(self) -> None:
        """Count time from now (the models are loaded)."""
        self.start = self._last = time.perf_counter()

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self._interval or self.done == self.total):
            self._last = now
            start, end = ("\r", "\n" if self.done == self.total else "") if self._tty else ("", "\n")
            self.stream.write(f"{start}{self.done}/{self.total} images, {self.rate:.1f} images/s{end}")
            self.stream.flush()
