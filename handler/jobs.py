"""Async render jobs: a record per job beside the videos, and the run that fills it in.

A job is created `queued` and handed to a dispatcher; the run moves it through `rendering`
(with progress) and `uploading` to `succeeded` or `failed`, then calls back if its request
named a `callbackUrl` (handler/callbacks.py). Records live in the same storage as the videos
(`jobs/<jobId>.json`), so no other service is needed and the bucket's lifecycle rule expires
them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from handler.callbacks import Delivery, call_back
from handler.errors import failure
from handler.models import RenderRequest
from handler.observability import logger
from handler.pipeline import render_and_store
from handler.storage import Storage

if TYPE_CHECKING:
    from handler.environment import Environment

Status = Literal["queued", "rendering", "uploading", "succeeded", "failed"]
# Progress is written to the record at most this often while a job renders.
_PROGRESS_WRITE_SECONDS = 1.0


def job_key(job_id: str) -> str:
    return f"jobs/{job_id}.json"


class JobRecord(BaseModel):
    """Everything known about one job; the request is kept so the run can read it."""

    model_config = ConfigDict(populate_by_name=True)

    job_id: str = Field(alias="jobId")
    status: Status
    created_at: float = Field(alias="createdAt")
    updated_at: float = Field(alias="updatedAt")
    request: dict[str, Any]
    progress: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    callback: Delivery | None = None

    def save(self, storage: Storage) -> None:
        self.updated_at = time.time()
        storage.write_json(job_key(self.job_id), self.model_dump(by_alias=True))


def load_job(storage: Storage, job_id: str) -> JobRecord | None:
    data = storage.read_json(job_key(job_id))
    return JobRecord.model_validate(data) if data is not None else None


def create_job(storage: Storage, request: RenderRequest, job_id: str) -> tuple[JobRecord, bool]:
    """The job `job_id`: made now (True), or the one that already had that id (False), so a
    repeated request with the same id or idempotency key does not start another render."""
    now = time.time()
    record = JobRecord(
        job_id=job_id,
        status="queued",
        created_at=now,
        updated_at=now,
        request=request.stored(),
        callback=Delivery(url=request.callback_url) if request.callback_url else None,
    )
    if storage.create_json(job_key(job_id), record.model_dump(by_alias=True)):
        return record, True
    existing = load_job(storage, job_id)
    return (existing or record), False


def status_body(record: JobRecord, storage: Storage) -> dict[str, Any]:
    """What `GET /api/render/status/{jobId}` answers: the record without the request, and on
    success the result with a fresh URL."""
    body = record.model_dump(by_alias=True, exclude={"request"})
    if record.result is not None:
        body["result"] = {**record.result, "url": storage.url_for(record.result["s3Key"])}
        body["s3Key"] = record.result["s3Key"]
        body["url"] = body["result"]["url"]
    return body


def settle(environment: Environment, record: JobRecord, ends: float | None) -> None:
    """Save a job's final state; then, if its request named a callback URL, POST the record
    there and save how that went. `ends`: when the invocation ends (`time.monotonic()`), None
    where nothing bounds it."""
    record.save(environment.storage)
    if record.callback is not None:
        body = status_body(record, environment.storage)
        runtime_api = environment.settings.runtime_api
        record.callback = call_back(record.callback.url, body, environment.webhook_secret, runtime_api, ends)
        record.save(environment.storage)


def run_job(environment: Environment, job_id: str, remaining_ms: int | None) -> None:
    """Render a queued job and record how it went. A job that is not queued (a repeated
    delivery) is left alone. Faults of ours are recorded, then raised."""
    ends = None if remaining_ms is None else time.monotonic() + remaining_ms / 1000
    storage = environment.storage
    record = load_job(storage, job_id)
    if record is None or record.status != "queued":
        logger.info("Job not queued; nothing to do", extra={"job_id": job_id})
        return
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(job_id=job_id)
    request = RenderRequest.model_validate(record.request, context={"limits": environment.settings.request_limits})
    last_write = 0.0

    def on_stage(stage: str, progress: dict[str, Any] | None) -> None:
        nonlocal last_write
        if stage == record.status and (progress is None or time.monotonic() - last_write < _PROGRESS_WRITE_SECONDS):
            return
        record.status = stage  # type: ignore[assignment]
        record.progress = progress if progress is not None else record.progress
        last_write = time.monotonic()
        record.save(storage)

    try:
        response = render_and_store(environment, request, remaining_ms, on_stage)
    except Exception as error:
        failed = failure(error)
        record.status, record.error = "failed", failed.answer()
        settle(environment, record, ends)
        if failed.status >= 500:
            raise
        return
    record.status = "succeeded"
    record.result = response.body()
    settle(environment, record, ends)
