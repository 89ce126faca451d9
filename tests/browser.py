"""Open a local HTML page in headless Chromium and report what a reader would see.

The browser is driven over the Chrome DevTools Protocol on a pipe (``--remote-debugging-pipe``:
commands on file descriptor 3, replies and events on 4, each a JSON message ending in NUL),
so nothing listens on a port and no driver package is needed: Debian's ``chromium`` package
is enough. :func:`open_page` loads the page, records every request it makes, checks every
image and takes a full-page screenshot.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
INSTALL_HINT = ("no Chromium found (looked for: " + ", ".join(BROWSERS) + "); the report's browser test needs "
                "it: `sudo apt-get install chromium` on Debian/Ubuntu (`make browser` does this when run as "
                "root), or put a Chrome/Chromium binary on PATH")


def find_browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


@dataclass
class Page:
    """What loading a page showed: the URLs it requested, each image's (loaded, width),
    the screenshot (PNG bytes) and the page's title."""

    requests: list[str] = field(default_factory=list)
    images: list[tuple[bool, int]] = field(default_factory=list)
    screenshot: bytes = b""
    title: str = ""


class _DevTools:
    def __init__(self, browser: str, profile: str):
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()

        def child_fds() -> None:  # the protocol's fixed descriptors: 3 to read, 4 to write
            # Moved out of the way first, so that neither end lands on the other's number.
            read_end, write_end = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_read, replies_write))
            os.dup2(read_end, 3)  # dup2 makes them inheritable; every other one is not
            os.dup2(write_end, 4)

        self.process = subprocess.Popen(
            [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--hide-scrollbars", "about:blank"],
            # close_fds would close 3 and 4 after preexec_fn has set them up.
            preexec_fn=child_fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("the browser did not answer in time")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise RuntimeError("the browser closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        for descriptor in (self._commands, self._replies):
            os.close(descriptor)


def open_page(path: Path, browser: str, *, width: int = 1400) -> Page:
    """Load ``path`` (a local HTML file), wait for it, and return what it showed."""
    with tempfile.TemporaryDirectory() as profile:
        tools = _DevTools(browser, profile)
        try:
            target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Network", "Page", "Runtime"):
                tools.send(f"{domain}.enable", session=session)
            tools.send("Emulation.setDeviceMetricsOverride",
                       {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
            tools.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
            tools.wait_for("Page.loadEventFired")
            probe = ("JSON.stringify({title: document.title, images: Array.from(document.images).map("
                     "i => [i.complete, i.naturalWidth])})")
            seen = json.loads(tools.send("Runtime.evaluate", {"expression": probe, "returnByValue": True},
                                         session=session)["result"]["value"])
            shot = tools.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                              session=session)["data"]
        finally:
            tools.close()
    requests = [event["params"]["request"]["url"] for event in tools.events
                if event.get("method") == "Network.requestWillBeSent"]
    return Page(requests=requests, images=[(bool(a), int(b)) for a, b in seen["images"]],
                screenshot=base64.b64decode(shot), title=seen["title"])
