"""A headless Chromium driven through the DevTools protocol, as the page's tests use it:
`chromium_page` starts one and yields its page, whose `errors` collects what the page threw or
logged as an error.

The protocol runs over a WebSocket, and no WebSocket client is among the project's locked
packages, so `WebSocket` is a minimal one (RFC 6455, client side): text messages only, which
is all DevTools sends.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support.processes import stop_group, wait_for

CHROMIUM = shutil.which("chromium")
_TEXT, _CONTINUATION, _CLOSE = 0x1, 0x0, 0x8
_FINAL, _MASKED = 0x80, 0x80


class WebSocket:
    """One client connection: `send` a text message, `receive` the next one."""

    def __init__(self, url: str, timeout: float = 60) -> None:
        parts = urlsplit(url)
        self._socket = socket.create_connection((parts.hostname, parts.port), timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self._socket.sendall(
            f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self._stream = self._socket.makefile("rb")
        status = self._stream.readline()
        if not status.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"No WebSocket at {url}: {status!r}")
        while self._stream.readline() not in (b"\r\n", b""):
            pass  # the rest of the handshake's headers

    def send(self, text: str) -> None:
        """One final text frame, masked as a client's must be."""
        payload = text.encode()
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", _FINAL | _TEXT, _MASKED | size)
        elif size < 1 << 16:
            header = struct.pack("!BBH", _FINAL | _TEXT, _MASKED | 126, size)
        else:
            header = struct.pack("!BBQ", _FINAL | _TEXT, _MASKED | 127, size)
        mask = os.urandom(4)
        keys = (mask * (size // 4 + 1))[:size]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(size, "big")
        self._socket.sendall(header + mask + masked)

    def receive(self) -> str:
        """The next text message, its fragments joined (a server's frames are not masked)."""
        message = b""
        while True:
            first, second = self._read(2)
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", self._read(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", self._read(8))
            payload = self._read(size)
            opcode = first & 0x0F
            if opcode == _CLOSE:
                raise ConnectionError("The browser closed the DevTools connection")
            if opcode in (_TEXT, _CONTINUATION):
                message += payload
                if first & _FINAL:
                    return message.decode()

    def _read(self, size: int) -> bytes:
        data = self._stream.read(size)
        if len(data) < size:
            raise ConnectionError("The DevTools connection ended")
        return data

    def close(self) -> None:
        self._stream.close()
        self._socket.close()


class Page:
    """A browser tab: DevTools commands, evaluated JavaScript, real mouse clicks and typing."""

    def __init__(self, socket: WebSocket) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self.errors: list[str] = []  # what the page threw, or logged as an error (a failed load)
        self.call("Runtime.enable")
        self.call("Log.enable")
        self.call("Page.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and answer its result; the events that arrive meanwhile are read
        for errors."""
        command_id = next(self._ids)
        self._socket.send(json.dumps({"id": command_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.receive())
            if message.get("id") == command_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self._note(message)

    def _note(self, event: dict[str, Any]) -> None:
        params = event.get("params", {})
        if event.get("method") == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description") or details["text"])
        elif event.get("method") == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"{params['entry']['text']} ({params['entry'].get('url', '')})")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise AssertionError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def wait_until(self, expression: str, timeout: float) -> Any:
        """Evaluate `expression` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise AssertionError(f"Still false after {timeout} s: {expression}")
            time.sleep(0.02)
        return value

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_until("document.readyState === 'complete'", timeout=30)

    def click(self, selector: str) -> None:
        """A left click at the middle of the element, as a mouse makes it."""
        x, y = self.evaluate(
            f"(() => {{ const box = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return [box.x + box.width / 2, box.y + box.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def select_all(self) -> None:
        """Ctrl+A in the focused element."""
        keys = {"key": "a", "code": "KeyA", "windowsVirtualKeyCode": 65, "modifiers": 2}
        self.call("Input.dispatchKeyEvent", type="rawKeyDown", **keys)
        self.call("Input.dispatchKeyEvent", type="keyUp", **keys)

    def type(self, text: str) -> None:
        """Text entered into the focused element, as a keyboard or an input method enters it."""
        self.call("Input.insertText", text=text)

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path


@contextmanager
def chromium_page(folder: Path, width: int = 1000, height: int = 1100) -> Iterator[Page]:
    """A headless Chromium and its one tab, until the block ends; its log in `folder`.
    `--no-sandbox`: the sandbox needs user namespaces, which root and the test containers do
    not get; the browser loads only the local server's page. `--disable-dev-shm-usage`: a
    container's /dev/shm is small (64 MB), and the browser's shared memory goes to its temporary
    files instead. Those and its profile are fresh, in a folder removed at the end and
    short-named: its socket's path must fit in a socket address."""
    if CHROMIUM is None:
        raise RuntimeError("Chromium is not installed")
    log = folder / "chromium.log"
    with tempfile.TemporaryDirectory(prefix="chromium-") as temporary, log.open("wb") as output:
        profile = Path(temporary) / "profile"
        process = subprocess.Popen(
            [
                CHROMIUM, "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run",
                "--no-default-browser-check", "--remote-debugging-port=0", f"--user-data-dir={profile}",
                f"--window-size={width},{height}", "about:blank",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TMPDIR": temporary},
            start_new_session=True,
        )
        try:
            active = profile / "DevToolsActivePort"  # its port, then its browser's path, once it listens
            wait_for(lambda: active.exists() and len(active.read_text().splitlines()) == 2, process, "Chromium", log, 30)
            port = active.read_text().splitlines()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
                tab = next(target for target in json.load(answer) if target["type"] == "page")
            connection = WebSocket(tab["webSocketDebuggerUrl"])
            try:
                yield Page(connection)
            finally:
                connection.close()
        finally:
            stop_group(process, grace=5)
