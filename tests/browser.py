"""A page opened in headless Chromium, watched through the DevTools protocol, for tests of report.html.

Why it exists: "the page renders without errors and asks for nothing outside itself" is a claim about
a browser, so it is checked in one: Chromium from the distribution's packages, driven over
`--remote-debugging-pipe` (the DevTools protocol as NUL-terminated JSON on file descriptors 3 and 4,
https://chromedevtools.github.io/devtools-protocol/), which needs no extra Python package. It records
every network request, console message, log entry and uncaught exception, measures the page's width
against the window and takes a full-page screenshot.
"""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from typing import Optional

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT_S = 60.0


def _pipe_above(lowest: int) -> tuple[int, int]:
    """A pipe whose two ends are numbered `lowest` or higher (so that dup2 onto 3 and 4 overwrites neither)."""
    import fcntl
    ends = os.pipe()
    high = tuple(fcntl.fcntl(end, fcntl.F_DUPFD_CLOEXEC, lowest) for end in ends)
    for end in ends:
        os.close(end)
    return high


def find_chromium() -> Optional[str]:
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


@dataclass
class PageVisit:
    """What one page load did: requests (URLs), problems (console errors and warnings, error/warning log
    entries, exceptions), scroll_width and inner_width (CSS px) and a full-page PNG."""
    requests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    scroll_width: int = 0
    inner_width: int = 0
    screenshot: bytes = b""


class Chromium:
    """One headless Chromium process; `visit(url, width)` loads a page at a window width."""

    def __init__(self, binary: str):
        child_reads, self._to_child = _pipe_above(10)
        self._from_child, child_writes = _pipe_above(10)

        def wire():  # the child reads commands on fd 3 and writes answers on fd 4
            os.dup2(child_reads, 3)
            os.dup2(child_writes, 4)
        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             "--remote-debugging-pipe", "about:blank"], preexec_fn=wire, pass_fds=(3, 4),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(child_reads)
        os.close(child_writes)
        self._buffer, self._next_id, self.events = b"", 0, []

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        os.close(self._to_child)
        os.close(self._from_child)

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_child], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"Chromium did not answer within {TIMEOUT_S:g} s")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise ConnectionError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: Optional[dict] = None, session: Optional[str] = None) -> dict:
        """Sends one command and returns its result; events that arrive meanwhile go to `events`."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_for(self, method: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._read_message(deadline))

    def visit(self, url: str, width: int, height: int = 900) -> PageVisit:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=session)
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}
        self.call("Emulation.setDeviceMetricsOverride", metrics, session)
        self.events.clear()
        self.call("Page.navigate", {"url": url}, session)
        self.wait_for("Page.loadEventFired")
        visit = self._measure(session, metrics)
        visit.requests, visit.problems = requests_of(self.events), problems_of(self.events)
        self.call("Target.closeTarget", {"targetId": target})
        return visit

    def _measure(self, session: str, metrics: dict) -> PageVisit:
        sizes = self.call("Runtime.evaluate", {"expression": "[document.documentElement.scrollWidth, innerWidth,"
                                               " document.documentElement.scrollHeight]", "returnByValue": True},
                          session)["result"]["value"]
        self.call("Emulation.setDeviceMetricsOverride", {**metrics, "height": min(sizes[2], 16000)}, session)
        png = self.call("Page.captureScreenshot", {"format": "png"}, session)["data"]
        return PageVisit(scroll_width=sizes[0], inner_width=sizes[1], screenshot=base64.b64decode(png))


def requests_of(events: list[dict]) -> list[str]:
    return [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]


def problems_of(events: list[dict]) -> list[str]:
    """Console errors/warnings, error/warning log entries (CSP violations, failed loads) and exceptions."""
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
            found.append(f"console {params['type']}: {params.get('args')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
            found.append(f"log {params['entry']['level']}: {params['entry'].get('text')}")
        elif method == "Runtime.exceptionThrown":
            found.append(f"exception: {params.get('exceptionDetails')}")
    return found
