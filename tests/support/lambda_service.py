"""A stand-in for the Lambda service's Invoke API, so that functions under the RIE can invoke
themselves asynchronously (jobs, chunks) as they do on Lambda."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.support.lambda_runtime import InvokeError, LambdaRuntime
from tests.support.processes import LOOPBACK, free_ports, serving


@dataclass
class LambdaService:
    """A stand-in for the Lambda service's Invoke API, for the function's own asynchronous
    (`InvocationType=Event`) invokes: it answers 202 at once, as Lambda does, records the
    call as boto3 made it, and delivers the event to the emulated function once that is free.
    Point the functions at it with `LAMBDA_ENDPOINT_URL`, then list them in `targets`: each
    event goes to one that is idle (like an execution environment), in parallel. A caller's
    synchronous invoke (`RequestResponse`, boto3's default) is run on an idle target as soon
    as there is one, and answered with its result; it is not recorded."""

    url: str
    targets: list[LambdaRuntime] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    delivered: list[Delivery] = field(default_factory=list)
    # What happens to an event instead of its delivery: None delivers it; "dropped" loses it
    # silently (an invocation that never ran and was never reported); any other condition
    # ("EventAgeExceeded", "RetriesExhausted") delivers Lambda's failure record for it instead,
    # as Lambda sends one to the failure destination the template names (this function).
    fate: Callable[[dict[str, Any]], str | None] = lambda _event: None


def failure_record(event: dict[str, Any], condition: str) -> dict[str, Any]:
    """What Lambda sends an asynchronous invocation's failure destination about `event`."""
    return {
        "version": "1.0",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "requestContext": {"requestId": "stand-in", "functionArn": "function", "condition": condition},
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "stand-in"},
    }


@dataclass(frozen=True)
class Delivery:
    """One event delivered: to which target, and when its invocation began and ended
    (`time.monotonic()`)."""

    event: dict[str, Any]
    target: int
    started: float
    ended: float


@contextlib.contextmanager
def lambda_service(*, one_at_a_time: bool = False) -> Iterator[LambdaService]:
    """Run a LambdaService on a free loopback port until the block ends.

    `one_at_a_time` delivers each event only once the previous one has finished, to the next
    target in turn: each invocation then has the machine's cores to itself, as it would have
    its own execution environment's on Lambda (`make bench` times each so)."""
    import queue
    from http.server import BaseHTTPRequestHandler

    pending: queue.Queue[bytes | None] = queue.Queue()
    (port,) = free_ports(1)
    service = LambdaService(url=f"http://{LOOPBACK}:{port}")

    def invoke_idle(event: dict[str, Any]) -> dict[str, Any]:
        while True:
            for runtime in list(service.targets):
                if (result := runtime.invoke_if_idle(event)) is not None:
                    return result
            time.sleep(0.05)  # every environment is busy, or none is listed yet

    class Invoke(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            payload = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("X-Amz-Invocation-Type", "RequestResponse") == "RequestResponse":
                result = json.dumps(invoke_idle(json.loads(payload or b"null"))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(result)))
                self.end_headers()
                self.wfile.write(result)
                return
            parts = self.path.split("/")
            service.received.append(
                {
                    "function": parts[3] if len(parts) > 3 else "",
                    "invocationType": self.headers.get("X-Amz-Invocation-Type", "RequestResponse"),
                    "payload": json.loads(payload or b"null"),
                }
            )
            pending.put(payload)
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    def deliver_one(event: dict[str, Any]) -> None:
        while True:
            for index, runtime in enumerate(list(service.targets)):
                started = time.monotonic()
                if runtime.try_invoke(event):
                    service.delivered.append(Delivery(event, index, started, time.monotonic()))
                    return
            time.sleep(0.05)  # every environment is busy, or none is listed yet

    def deliver_in_turn(event: dict[str, Any]) -> None:
        while not service.targets:
            time.sleep(0.05)
        index = len(service.delivered) % len(service.targets)
        started = time.monotonic()
        with contextlib.suppress(InvokeError):  # an asynchronous invocation's result goes nowhere
            service.targets[index].invoke(event)
        service.delivered.append(Delivery(event, index, started, time.monotonic()))

    def deliver() -> None:
        while (payload := pending.get()) is not None:
            event = json.loads(payload)
            condition = service.fate(event)
            if condition == "dropped":
                continue
            if condition is not None:
                event = failure_record(event, condition)
            if one_at_a_time:
                deliver_in_turn(event)
            else:
                threading.Thread(target=deliver_one, args=(event,), daemon=True).start()

    with serving(Invoke, port):
        threading.Thread(target=deliver, daemon=True).start()
        try:
            yield service
        finally:
            pending.put(None)
