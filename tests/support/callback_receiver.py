"""A receiver of the worker's callbacks: a real HTTP server on loopback, in a thread, that
records every request it gets and answers each with the next status of its script (then 200),
and how a receiver checks a callback's signature."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.processes import LOOPBACK, serving


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """`url` is where to send callbacks; `answers` the statuses the next requests get, in turn."""

    url: str
    port: int
    answers: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    def wait_for(self, count: int, seconds: float = 60) -> list[Received]:
        """The first `count` requests, once that many have arrived."""
        deadline = time.monotonic() + seconds
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} callbacks arrived"
            time.sleep(0.02)
        return self.received[:count]


def verifies(received: Received, secret: str) -> bool:
    """A receiver's check of a callback, as the README shows it: the HMAC-SHA256 of the raw
    body under the shared secret, compared in constant time with `X-Signature-256`."""
    expected = "sha256=" + hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, received.headers.get("x-signature-256", ""))


@contextlib.contextmanager
def callback_receiver(*answers: int) -> Iterator[Receiver]:
    """Run a Receiver on a free loopback port until the block ends; its first requests are
    answered with `answers` (e.g. 500, 500), the rest with 200."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            receiver.received.append(Received(self.command, self.path, headers, body))
            status = receiver.answers.pop(0) if receiver.answers else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_PUT = do_POST

        def log_message(self, *_: Any) -> None:
            pass

    with serving(Handler) as server:
        port = server.server_address[1]
        receiver = Receiver(url=f"http://{LOOPBACK}:{port}/hooks/render?from=worker", port=port, answers=list(answers))
        yield receiver
