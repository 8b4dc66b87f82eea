"""Headless Chromium driven over the DevTools protocol, for tests and doc screenshots.

Debian's ``chromium`` is started with a fresh profile, no background networking and
a DevTools port on the loopback interface chosen by the browser itself; one
websocket (``websocket-client``) carries every command. No WebDriver binary and no
download of any kind are involved. Each `Tab` records the console errors, uncaught
exceptions and network requests of what it loads.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--hide-scrollbars",
    "--mute-audio",
)
KEYS = {
    "ArrowLeft": 37,
    "ArrowUp": 38,
    "ArrowRight": 39,
    "ArrowDown": 40,
    "Home": 36,
    "End": 35,
    "Tab": 9,
    "Enter": 13,
}


def chromium_path() -> str | None:
    """Debian's browser, or any chromium/chrome on PATH."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class DevToolsError(RuntimeError):
    pass


class Connection:
    """One websocket to the browser; commands answered in order, events buffered."""

    def __init__(self, url: str) -> None:
        import websocket

        # no Origin header: DevTools refuses unknown origins, and none is needed here
        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> Any:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise DevToolsError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def close(self) -> None:
        self.ws.close()


class Tab:
    """A page target with the helpers the tests use."""

    def __init__(self, conn: Connection, session: str) -> None:
        self.conn, self.session = conn, session
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self.conn.send(method, params, self.session)

    def _mine(self) -> list[dict[str, Any]]:
        return [e for e in self.conn.events if e.get("sessionId") == self.session]

    def open(self, url: str, *, ready: str = ".maskviz", timeout: float = 60.0) -> None:
        """Load ``url`` and wait until every root matching ``ready`` reports ready."""
        # through a blank page: a URL that differs only in its fragment would not reload
        self.send("Page.navigate", {"url": "about:blank"})
        while self.eval("document.readyState") != "complete":
            time.sleep(0.01)
        self.conn.events = [e for e in self.conn.events if e.get("sessionId") != self.session]
        self.send("Page.navigate", {"url": url})
        deadline = time.monotonic() + timeout
        probe = (
            f"(() => {{ const r = [...document.querySelectorAll({json.dumps(ready)})];"
            " return r.length > 0 && r.every((e) => e.dataset.maskvizReady === '1'); })()"
        )
        while not self.eval(probe):
            if time.monotonic() > deadline:
                raise DevToolsError(f"{url} did not report ready; errors: {self.errors()}")
            time.sleep(0.05)

    def eval(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def key(self, key: str) -> None:
        code = KEYS[key]
        for kind in ("rawKeyDown", "keyUp"):
            self.send(
                "Input.dispatchKeyEvent",
                {"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code},
            )

    def mouse_move(self, x: float, y: float) -> None:
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})

    def errors(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and log errors so far."""
        out = []
        for e in self._mine():
            p = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif e["method"] == "Runtime.exceptionThrown":
                out.append(str(p["exceptionDetails"].get("exception", {}).get("description")))
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(p["entry"]["text"])
        return out

    def requests(self) -> list[str]:
        """Every URL the page asked the network stack for, the document included."""
        return [
            e["params"]["request"]["url"]
            for e in self._mine()
            if e["method"] == "Network.requestWillBeSent"
        ]

    def screenshot(self, path: Path, selector: str | None = None) -> None:
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": True}
        if selector is not None:
            box = self.eval(
                f"(() => {{ const b = document.querySelector({json.dumps(selector)})"
                ".getBoundingClientRect(); return [b.x, b.y, b.width, b.height]; })()"
            )
            params["clip"] = {
                "x": box[0],
                "y": box[1],
                "width": box[2],
                "height": box[3],
                "scale": 1,
            }
        data = self.send("Page.captureScreenshot", params)["data"]
        path.write_bytes(base64.b64decode(data))


class Browser:
    """A headless Chromium process with its own throwaway profile."""

    def __init__(self, binary: str, width: int = 1200, height: int = 1000) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="maskviz-chromium-"))
        self.process = subprocess.Popen(
            [
                binary,
                *FLAGS,
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",  # the browser picks a free port and writes it down
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                self.close()
                raise DevToolsError(f"chromium did not start: {err[-2000:]}")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self.conn = Connection(f"ws://127.0.0.1:{port}{path}")
        self.width, self.height = width, height

    def tab(self) -> Tab:
        target = self.conn.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.conn.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        tab = Tab(self.conn, session["sessionId"])
        tab.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )
        return tab

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            with contextlib.suppress(Exception):  # it may be gone already
                conn.send("Browser.close")
            conn.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)


@contextmanager
def browser(width: int = 1200, height: int = 1000) -> Iterator[Browser]:
    binary = os.environ.get("MASKVIZ_CHROMIUM") or chromium_path()
    if binary is None:
        raise DevToolsError("no chromium on PATH (Debian: apt-get install chromium)")
    b = Browser(binary, width, height)
    try:
        yield b
    finally:
        b.close()
