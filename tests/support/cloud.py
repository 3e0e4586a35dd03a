"""Lambda's model of a chunked render, emulated on this machine for `make bench`: a coordinator
and an execution environment per chunk, each the real handler under the Runtime Interface
Emulator, sharing a real S3 server (SeaweedFS).

This machine has the cores of about one Lambda environment, so the chunk invocations are
delivered one at a time (`lambda_service(one_at_a_time=True)`): each renders alone, with all
the cores, as it would in its own environment. The critical path is then what a render takes
when the chunks run side by side: from the request to the first chunk's start (plan, split,
invokes), the slowest chunk, and from the last chunk's end to the answer (noticing it, the
download, the join, the upload).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from render import Position
from tests.support.lambda_function import dockerfile_handler, function_env
from tests.support.lambda_runtime import LambdaRuntime, lambda_runtime
from tests.support.lambda_service import LambdaService, lambda_service
from tests.support.leftovers import created_by_functions, entries, remove
from tests.support.seaweedfs import seaweed_s3
from tests.support.task_root import readable_tempdir, stage_task_root

PROJECT = Path(__file__).resolve().parents[2]
FIRST_UID = 2101  # each environment its own user when run as root, as each Lambda sandbox has


@dataclass(frozen=True)
class Chunk:
    """One chunk invocation: its range and how long it took."""

    start: Position
    end: Position
    seconds: float


@dataclass(frozen=True)
class Measured:
    """One render through the emulated cloud."""

    answer: dict[str, Any]
    seconds: float  # the request, as the caller waited for it
    chunks: list[Chunk]  # by range
    head: float = 0.0  # request to first chunk start
    tail: float = 0.0  # last chunk end to answer

    @property
    def critical_path(self) -> float:
        """What the render would take with every chunk in its own environment at once."""
        if not self.chunks:
            return self.seconds
        return self.head + max(chunk.seconds for chunk in self.chunks) + self.tail


@dataclass
class Cloud:
    coordinator: LambdaRuntime
    service: LambdaService
    environments: list[LambdaRuntime]  # the coordinator's and the chunks'

    def render(self, body: dict[str, Any]) -> Measured:
        """Invoke the coordinator with a render request (a direct invoke) and time it."""
        already = len(self.service.delivered)
        started = time.monotonic()
        answer = self.coordinator.invoke({"cache": False, **body})
        ended = time.monotonic()
        assert "s3Key" in answer, answer
        delivered = self.service.delivered[already:]
        if not delivered:
            return Measured(answer, ended - started, [])
        chunks = [Chunk(Position(*one.event["start"]), Position(*one.event["end"]), one.ended - one.started) for one in delivered]
        return Measured(
            answer,
            ended - started,
            sorted(chunks, key=lambda chunk: chunk.start),
            head=min(one.started for one in delivered) - started,
            tail=ended - max(one.ended for one in delivered),
        )


@contextlib.contextmanager
def emulated_cloud(environments: int) -> Iterator[Cloud]:
    """A coordinator and `environments` chunk environments, all warm, until the block ends;
    what their users wrote in the shared /tmp is removed afterwards. Needs root: each
    environment runs as a user of its own, as on Lambda (one user's cleanup would otherwise
    end another environment's worker)."""
    if os.geteuid() != 0:
        raise PermissionError("the emulated cloud runs each environment as its own user: run as root")
    before = entries()
    try:
        with contextlib.ExitStack() as stack:
            s3 = stack.enter_context(seaweed_s3(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-s3-")))))
            bucket = s3.new_bucket("bench")
            root = stage_task_root(PROJECT, stack.enter_context(readable_tempdir("bench-cloud-task-")))
            service = stack.enter_context(lambda_service(one_at_a_time=True))
            runtimes = [
                stack.enter_context(
                    lambda_runtime(
                        dockerfile_handler(),
                        root,
                        function_env(s3, bucket, LAMBDA_ENDPOINT_URL=service.url, AWS_LAMBDA_FUNCTION_TIMEOUT="600"),
                        user,
                    )
                )
                for user in range(FIRST_UID, FIRST_UID + environments + 1)
            ]
            health = json.loads((PROJECT / "events/function-url-health.json").read_text())
            for runtime in runtimes:
                runtime.invoke(health)  # init: each environment warm, as a busy function's are
            service.targets.extend(runtimes[1:])
            yield Cloud(runtimes[0], service, runtimes)
    finally:
        now = entries()
        remove(created_by_functions(before, now), now)
