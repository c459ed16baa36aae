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


class SweepProgress:
    """Progress of the whole sweep, one line per finished case: 'sweep: 2/6 cases, 16/48 images, 1.3 img/s,
    about 25 s left'.

    pytest's dots say nothing on a 30-minute sweep. The owner process (the only one, or the xdist controller,
    which receives every worker's reports) knows the pending cases and their images after its folder checks;
    `case_finished` is called from pytest_runtest_logreport. The rate is images over the wall time since the
    sweep started (model loads included, as they are in the time left); a case skipped after collection
    (claimed or finished by another process) leaves the totals.
    """

    def __init__(self, images_by_case: dict, clock: Callable[[], float] = time.perf_counter):
        self.images_by_case, self.clock = dict(images_by_case), clock
        self.start = clock()
        self.finished: set = set()

    def case_finished(self, case) -> Optional[str]:
        """The progress line after `case` finished (passed or failed); None for a case not pending here."""
        if case not in self.images_by_case or case in self.finished:
            return None
        self.finished.add(case)
        done = sum(self.images_by_case[c] for c in self.finished)
        total = sum(self.images_by_case.values())
        line = progress_line(f"sweep: {len(self.finished)}/{len(self.images_by_case)} cases", done, total,
                             self.clock() - self.start)
        return line.replace(" s left", " s left in the sweep")

    def case_dropped(self, case) -> None:
        """A pending case that this process will not run (skipped after collection): out of the totals."""
        if case not in self.finished:
            self.images_by_case.pop(case, None)
