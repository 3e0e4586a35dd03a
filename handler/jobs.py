"""Async render jobs: a record per job beside the videos, and the run that fills it in.

A job is created `queued` and handed to a dispatcher; the run moves it through `rendering`
(with progress) and `uploading` to `succeeded`, `failed` or `cancelled`. Records live in the
same storage as the videos (`jobs/<jobId>.json`), so no other service is needed and the
bucket's lifecycle rule expires them. A job whose request named a `callbackUrl` is POSTed
there, signed, when it ends, however it ends (handler/callbacks.py).

Every job ends. While it runs, its run touches the record every few seconds; a record that
shows no sign of life for `JOB_STALL_SECONDS` belongs to a run that ended without an answer
(its invocation died, timed out or was never delivered), and is reported `failed` with error
class `lost` when it is next read, or at once when Lambda tells the failure destination.
A cancel is a key beside the record (`jobs/<jobId>.cancel.json`) that the run looks for
every second.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from handler.callbacks import Delivery, call_back
from handler.cancel import LOOK_SECONDS, cancelled_when
from handler.errors import CONFLICT, LOST, NOT_FOUND, error_body, failure
from handler.fanout import RUNNING_JOB, forget_ranges
from handler.models import RenderRequest
from handler.observability import logger
from handler.pipeline import render_and_store
from handler.storage import Storage
from render import RenderCancelled

if TYPE_CHECKING:
    from handler.environment import Environment

Status = Literal["queued", "rendering", "uploading", "succeeded", "failed", "cancelled"]
ENDED: frozenset[Status] = frozenset({"succeeded", "failed", "cancelled"})
# Progress is written to the record at most this often while a job renders.
_PROGRESS_WRITE_SECONDS = 1.0


def job_key(job_id: str) -> str:
    return f"jobs/{job_id}.json"


def cancel_key(job_id: str) -> str:
    return f"jobs/{job_id}.cancel.json"


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

    def end(
        self,
        environment: Environment,
        status: Status,
        *,
        result: dict[str, Any] | None = None,
        error: Any = None,
        ends: float | None = None,
    ) -> None:
        """Record how the job ended; then, if its request named a callback URL, POST the
        record there and record how that went. `ends`: when the invocation must be done
        (`time.monotonic()`), None where nothing bounds it."""
        storage = environment.storage
        self.status, self.result, self.error = status, result, error
        if status == "succeeded" and self.progress is not None:
            self.progress = {**self.progress, "percent": 100, "etaSeconds": 0}
        self.save(storage)
        if self.callback is not None:
            body = status_body(self, storage)
            secret, runtime_api = environment.webhook_secret, environment.settings.runtime_api
            self.callback = call_back(self.callback.url, body, secret, runtime_api, ends)
            self.save(storage)


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


def given_up_if_stalled(environment: Environment, record: JobRecord) -> JobRecord:
    """The record, given up as lost (`_lost`) if it has not ended and shows no sign of life
    for `JOB_STALL_SECONDS`."""
    if record.status not in ENDED and time.time() - record.updated_at > environment.settings.job_stall_seconds:
        _lost(environment, record)
    return record


def give_up(environment: Environment, job_id: str) -> None:
    """Give the job up as lost (`_lost`) unless it has ended: its invocation failed."""
    record = load_job(environment.storage, job_id)
    if record is not None and record.status not in ENDED:
        _lost(environment, record)


def _lost(environment: Environment, record: JobRecord) -> None:
    """Mark the job `failed` (class `lost`) and remove its chunks, as a failed render does."""
    logger.warning("Job lost", extra={"job_id": record.job_id, "status": record.status})
    forget_ranges(environment.storage, record.job_id, environment.settings.max_chunks)
    record.end(environment, "failed", error=LOST)


def cancel_job(environment: Environment, job_id: str) -> tuple[int, dict[str, Any]]:
    """Ask the job to stop: 404 for an unknown job, 409 for one that has ended; a queued job
    is cancelled at once (200), a running one stops within seconds (202)."""
    storage = environment.storage
    record = load_job(storage, job_id)
    if record is None:
        return NOT_FOUND, error_body(f"No job {job_id!r}.", {"type": "JobNotFound"})
    if record.status in ENDED:
        ended = {"type": "JobEnded", "status": record.status}
        return CONFLICT, error_body(f"Job {job_id!r} has already ended: {record.status}.", ended)
    storage.write_json(cancel_key(job_id), {"requestedAt": time.time()})
    if record.status == "queued":
        record.end(environment, "cancelled")
        return 200, status_body(record, storage)
    return 202, {**status_body(record, storage), "cancelRequested": True}


def status_body(record: JobRecord, storage: Storage) -> dict[str, Any]:
    """What `GET /api/render/status/{jobId}` answers: the record without the request, and on
    success the result with a fresh URL."""
    body = record.model_dump(by_alias=True, exclude={"request"})
    if record.result is not None:
        body["result"] = {**record.result, "url": storage.url_for(record.result["s3Key"])}
        body["s3Key"] = record.result["s3Key"]
        body["url"] = body["result"]["url"]
    return body


def run_job(environment: Environment, job_id: str, remaining_ms: int | None) -> None:
    """Render a queued job and record how it went. A job that is not queued (a repeated
    delivery, or one given up or cancelled meanwhile) is left alone. Faults of ours are
    recorded, then raised."""
    ends = None if remaining_ms is None else time.monotonic() + remaining_ms / 1000
    storage, settings = environment.storage, environment.settings
    record = load_job(storage, job_id)
    if record is None or record.status != "queued":
        logger.info("Job not queued; nothing to do", extra={"job_id": job_id})
        return
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(job_id=job_id)
    if storage.exists(cancel_key(job_id)):
        record.end(environment, "cancelled", ends=ends)
        return
    request = RenderRequest.model_validate(record.request, context={"limits": settings.request_limits})
    written = threading.Lock()  # the run and its look for a cancel both write the record
    last_write = touched = time.monotonic()
    readable = ReadableProgress()
    beat = min(5.0, settings.job_stall_seconds / 6)

    def on_stage(stage: str, progress: dict[str, Any] | None) -> None:
        nonlocal last_write
        if stage == record.status and (progress is None or time.monotonic() - last_write < _PROGRESS_WRITE_SECONDS):
            return
        with written:
            record.status = stage  # type: ignore[assignment]
            record.progress = readable.read(progress) if progress is not None else record.progress
            last_write = time.monotonic()
            record.save(storage)

    def alive_and_unwanted() -> bool:
        """Touch the record every `beat` (the run's sign of life); whether a cancel was asked for."""
        nonlocal touched
        if time.monotonic() - touched >= beat:
            with written:
                record.save(storage)
            touched = time.monotonic()
        return storage.exists(cancel_key(job_id))

    running = RUNNING_JOB.set(job_id)  # its chunks are stored under groups named after it
    try:
        with cancelled_when(alive_and_unwanted, every=min(LOOK_SECONDS, beat)) as cancelled:
            response = render_and_store(environment, request, remaining_ms, on_stage, cancelled)
    except RenderCancelled:
        record.end(environment, "cancelled", ends=ends)
        return
    except Exception as error:
        failed = failure(error)
        record.end(environment, "failed", error=failed.answer(), ends=ends)
        if failed.status >= 500:
            raise
        return
    finally:
        RUNNING_JOB.reset(running)
    record.end(environment, "succeeded", result=response.body(), ends=ends)


class ReadableProgress:
    """A render's progress counts, with what a person reads: `percent` of the frames (which
    never goes back, and reaches 100 only when the job has succeeded) and `etaSeconds` at the
    pace so far."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._percent = 0

    def read(self, counts: dict[str, Any]) -> dict[str, Any]:
        total, frames = counts.get("totalFrames"), counts.get("frames", 0)
        if not total:
            return counts
        self._percent = max(self._percent, min(99, frames * 100 // total))
        elapsed = time.monotonic() - self._started
        eta = round(elapsed / frames * max(total - frames, 0), 1) if frames else None
        return {**counts, "percent": self._percent, "etaSeconds": eta}
