"""Where async jobs run: on Lambda, in another invocation of this same function; locally, in
a bounded pool of background threads. Everything else about a job is the same code."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import boto3
from botocore.config import Config

from handler.models import RunJobEvent
from handler.observability import logger


class Dispatcher(Protocol):
    def submit(self, job_id: str) -> None:
        """Start the job `job_id` somewhere else and return at once."""


class LambdaDispatcher:
    """Invokes this function asynchronously (`InvocationType=Event`) with the job's id; Lambda
    queues the event, and the template sets the retry policy for it."""

    def __init__(self, function_name: str, endpoint_url: str | None = None) -> None:
        self.function_name = function_name
        self._client = boto3.client(
            "lambda", endpoint_url=endpoint_url or None, config=Config(retries={"mode": "standard"})
        )

    def submit(self, job_id: str) -> None:
        self.invoke(RunJobEvent(job_id=job_id).payload())

    def invoke(self, event: dict[str, Any]) -> None:
        """Hand `event` to another invocation of this function, without waiting for it."""
        self._client.invoke(FunctionName=self.function_name, InvocationType="Event", Payload=json.dumps(event).encode())


class LocalDispatcher:
    """Runs jobs in this process, at most `workers` at a time (the rest wait their turn)."""

    def __init__(self, run: Callable[[str], None], workers: int = 2) -> None:
        self._run = run
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="render-job")

    def submit(self, job_id: str) -> None:
        self._pool.submit(self._run_logged, job_id)

    def _run_logged(self, job_id: str) -> None:
        try:
            self._run(job_id)
        except Exception:
            logger.exception("Job failed", extra={"job_id": job_id})
