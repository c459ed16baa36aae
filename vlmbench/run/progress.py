"""Live progress of a long chunk on the terminal: images done, img/s, time left.

Why it exists: a 1000-image chunk runs for minutes and pytest shows nothing until the case ends.
`ChunkProgress.update` is called once per micro-batch; it prints a line at most every `interval_s`
seconds (one clock read and a comparison otherwise), so it does not slow the loop. Lines go to a
`sink`: under pytest the plugin passes one that writes past pytest's output capture (through the
capture manager's `global_and_fixture_disabled`); elsewhere the default writes to sys.__stderr__.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional


def stderr_sink(line: str) -> None:
    """Writes one line to the process's original stderr."""
    stream = sys.__stderr__
    if stream is not None:
        stream.write(line + "\n")
        stream.flush()


def progress_line(label: str, done: int, total: int, seconds: float) -> str:
    """'fp16 chunk 0: 320/1000 images, 12.3 img/s, 55 s left' (rate and time left once known)."""
    if seconds <= 0 or done <= 0:
        return f"{label}: {done}/{total} images"
    rate = done / seconds
    left = (total - done) / rate
    return f"{label}: {done}/{total} images, {rate:.1f} img/s, {left:.0f} s left"


class ChunkProgress:
    """Rate-limited progress lines for one chunk; `interval_s` 0 prints nothing."""

    def __init__(self, label: str, total: int, interval_s: float, sink: Optional[Callable[[str], None]] = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.label, self.total, self.interval_s = label, total, interval_s
        self.sink, self.clock = sink or stderr_sink, clock
        self.start = self.last = clock()
        self.done = 0

    def update(self, images: int) -> None:
        """Counts `images` more; prints when `interval_s` passed since the last line."""
        self.done += images
        if not self.interval_s:
            return
        now = self.clock()
        if now - self.last >= self.interval_s and self.done < self.total:
            self.last = now
            self.sink(progress_line(self.label, self.done, self.total, now - self.start))
