"""Ranges of a chunked render sent to other invocations of this function, on Lambda.

render/ plans and splits a chunked render, and calls `LambdaRanges` once per range (all at
once). Each call stores the request under `jobs/chunks-<group>/` and invokes this function with
a `renderChunk` event; that invocation (`render_chunk`) renders the range, uploads the piece
there and keeps a marker saying how far it has got (`{"progress": ...}`) and at the end how it
went (`{"ok": ..., "seconds": ...}`, with the time it took). The call waits for the marker,
retries a range that failed for a reason of ours once, fails as a whole render would on a
script's error, gives up at the render's deadline, downloads the piece for render/ to join,
and removes everything it stored. Once the request is removed, the range is no longer wanted
(the render failed elsewhere, or was cancelled): its invocation stops and uploads nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from handler.cancel import cancelled_when
from handler.errors import LOST, ChunkFailed, ChunksOverdue, Problem, problem
from handler.models import RenderChunkEvent, RenderRequest
from handler.storage import Storage, StorageError
from render import Position, Progress, Range, RenderCancelled, RenderError, RenderSpec, render

if TYPE_CHECKING:
    from handler.environment import Environment

# How often a range's marker is read (see `_PollPace`).
_FIRST_POLL_SECONDS = 0.05
_BLIND_POLL_SECONDS = 0.25
_LONGEST_POLL_SECONDS = 1.0
_CLOSING_POLL_SECONDS = 0.1
_CLOSING_SECONDS = 1.0
# A chunk writes its progress to its marker at most this often.
_PROGRESS_WRITE_SECONDS = 0.5
# A range that is no longer wanted checks its request before each write; one it began just
# before the request went has landed after this long.
_SETTLE_SECONDS = 0.5
# Failures of these classes may pass; a range that failed so is asked for once more.
_TRANSIENT = ("storage", "internal", "lost")

Invoke = Callable[[dict[str, Any]], None]

# The async job whose render is running in this context, if any: its ranges are stored under
# groups named after it, so that a job given up as lost can remove them (`forget_ranges`).
RUNNING_JOB: ContextVar[str | None] = ContextVar("running_job", default=None)
# What a range's invocation may have stored in its group.
_PIECE_SUFFIXES = (".mp4", ".mov", ".webm")


def _prefix(group: str) -> str:
    return f"jobs/chunks-{group}/"


def _group(job_id: str | None, index: int) -> str:
    """The group of a render's range `index`: for a job, derived from it; else a random one."""
    if job_id is None:
        return uuid.uuid4().hex
    return hashlib.sha256(f"{job_id}/{index}".encode()).hexdigest()[:32]


def forget_ranges(storage: Storage, job_id: str, max_chunks: int) -> None:
    """Remove whatever the ranges of job `job_id` stored, its request first: a range still
    rendering sees it gone and stops, uploading nothing."""
    for index in range(max_chunks):
        prefix = _prefix(_group(job_id, index))
        for name in ("request.json", "marker.json", *(f"piece{suffix}" for suffix in _PIECE_SUFFIXES)):
            with contextlib.suppress(StorageError):
                storage.delete(prefix + name)


class LambdaRanges:
    """render/'s `run_range` on Lambda: each range rendered by its own invocation."""

    def __init__(self, storage: Storage, invoke: Invoke) -> None:
        self._storage = storage
        self._invoke = invoke

    def __call__(self, work: Range) -> float | None:
        """Render `work` in another invocation; the seconds that invocation took."""
        assert work.spec.span is not None
        start, end = work.spec.span
        group = _group(RUNNING_JOB.get(), work.index)
        prefix = _prefix(group)
        event = RenderChunkEvent(group=group, index=work.index, start=start, end=end).payload()
        piece = prefix + "piece" + work.piece.suffix
        keys = [prefix + name for name in ("request.json", "marker.json")] + [piece]
        try:
            request = {
                "codeContent": work.spec.code,
                "quality": work.spec.quality,
                "sceneName": work.spec.scene,
                **RenderRequest.asking_for(work.spec.output),
            }
            self._storage.write_json(prefix + "request.json", request)
            self._invoke(event)
            seconds = self._wait(prefix, event, work)
            if not work.stopped.is_set():
                self._storage.download(piece, work.piece)
            return seconds
        finally:
            for key in keys:  # the request first: a range that sees it gone writes nothing more
                with contextlib.suppress(StorageError):
                    self._storage.delete(key)
                if work.stopped.is_set() and key == keys[0]:
                    time.sleep(_SETTLE_SECONDS)  # for a write it began before that to land

    def _wait(self, prefix: str, event: dict[str, Any], work: Range) -> float | None:
        """Until the range's marker says it is done (the seconds its invocations took), or
        it is no longer wanted (None); its progress is passed on meanwhile."""
        retried = False
        spent = 0.0  # by a failed invocation of it
        pace = _PollPace(work.frames)
        while not work.stopped.wait(pace.pause):
            marker = self._storage.read_json(prefix + "marker.json")
            progress = _progress(marker.get("progress")) if marker is not None and "ok" not in marker else None
            pace.read(progress.frames if progress is not None else None)
            if progress is not None:
                work.on_progress(progress)
            elif marker is not None and marker["ok"]:
                return spent + (_seconds(marker) or 0.0)
            elif marker is not None:
                spent += _seconds(marker) or 0.0
                answer = dict(marker["error"])
                failed = Problem(int(answer.pop("statusCode")), answer)
                if failed.error_class not in _TRANSIENT or retried:
                    raise ChunkFailed(failed)
                retried = True
                pace = _PollPace(work.frames)
                work.on_progress(Progress())
                self._storage.delete(prefix + "marker.json")
                self._invoke(event)
            if work.spec.deadline.passed():
                raise ChunksOverdue(f"Chunk {work.index} did not come back in time.")
        return None


class _PollPace:
    """How long to wait before reading a range's marker again.

    Until the range has reported drawing, the pause starts at `_FIRST_POLL_SECONDS` and grows
    half again each time, up to `_BLIND_POLL_SECONDS` (it may be waiting for an environment).
    Once it draws, but its pace is not known yet (two reports apart), the pause is
    `_CLOSING_POLL_SECONDS`: a short range may end before its next report. From then on it is
    half the time the range still needs at the pace it has been drawing, between
    `_FIRST_POLL_SECONDS` and `_LONGEST_POLL_SECONDS`, and at most `_CLOSING_POLL_SECONDS` in its
    last `_CLOSING_SECONDS`. So a range is seen done soon after it is (its end is read within a
    tenth of a second), and a long one is read about once a second while it draws.
    """

    def __init__(self, frames: int) -> None:
        self.frames = frames  # the range's, by the plan
        self.pause = _FIRST_POLL_SECONDS / 1.5
        self._seen: tuple[int, float] | None = None  # the last new frame count, and when it was seen
        self._rate: float | None = None  # frames a second

    def read(self, frames: int | None) -> None:
        """Note a read of the marker, with the frames it reported drawn (None: no progress)."""
        now = time.monotonic()
        if frames is not None and frames > 0 and (self._seen is None or frames > self._seen[0]):
            if self._seen is not None:
                self._rate = (frames - self._seen[0]) / max(now - self._seen[1], 1e-3)
            self._seen = (frames, now)
        if self._seen is None:
            self.pause = min(self.pause * 1.5, _BLIND_POLL_SECONDS)
            return
        if self._rate is None:
            self.pause = _CLOSING_POLL_SECONDS
            return
        left = (self.frames - self._seen[0]) / self._rate - (now - self._seen[1])
        self.pause = min(max(left / 2, _FIRST_POLL_SECONDS), _LONGEST_POLL_SECONDS)
        if left < _CLOSING_SECONDS:
            self.pause = min(self.pause, _CLOSING_POLL_SECONDS)


def _seconds(marker: dict[str, Any]) -> float | None:
    """The seconds a range's invocation says it took (a marker is written by the function,
    but read as anything stored is: it may be missing or odd)."""
    seconds = marker.get("seconds")
    return float(seconds) if isinstance(seconds, int | float) and 0 <= seconds < 86_400 else None


def _progress(reported: Any) -> Progress:
    """A chunk's progress report, or none if it is not one."""
    try:
        return Progress.model_validate(reported)
    except ValidationError:
        return Progress()


def render_chunk(environment: Environment, event: RenderChunkEvent, remaining_ms: int | None) -> dict[str, Any]:
    """In a chunk's invocation: render the range (reporting progress in the marker), upload
    the piece, leave the final marker.

    It never sends a range elsewhere again (the recursion guard): it renders in its worker."""
    started = time.monotonic()
    storage, settings = environment.storage, environment.settings
    prefix = _prefix(event.group)
    marker_key = prefix + "marker.json"
    last_write = 0.0

    def report(progress: Progress) -> None:
        nonlocal last_write
        if time.monotonic() - last_write < _PROGRESS_WRITE_SECONDS or cancelled.is_set() or unwanted():
            return
        last_write = time.monotonic()
        with contextlib.suppress(StorageError):  # progress is a courtesy; the render goes on
            storage.write_json(marker_key, {"progress": progress.counts()})

    def unwanted() -> bool:
        return not storage.exists(prefix + "request.json")

    try:
        stored = storage.read_json(prefix + "request.json") or {}
        request = RenderRequest.model_validate(stored, context={"limits": settings.request_limits})
        with cancelled_when(unwanted) as cancelled:  # the render it belongs to removes the request
            spec = RenderSpec(
                code=request.code_content,
                quality=request.quality,
                limits=settings.render_limits,
                deadline=settings.render_deadline(remaining_ms, cancelled),
                scene=request.scene_name,
                span=(Position(*event.start), Position(*event.end)),
                output=request.output(),
            )
            with render(environment.worker, spec, on_progress=report) as video:
                if cancelled.is_set() or unwanted():
                    raise RenderCancelled()
                storage.put_video(video.path, f"{prefix}piece.{request.format or 'mp4'}")
        marker: dict[str, Any] = {"ok": True}
    except RenderCancelled:
        return {"index": event.index, "ok": False}  # nobody reads a marker now: none is left behind
    except (RenderError, StorageError) as error:
        marker = {"ok": False, "error": problem(error).answer()}
    marker["seconds"] = round(time.monotonic() - started, 3)
    storage.write_json(marker_key, marker)
    return {"index": event.index, "ok": marker["ok"]}


def give_up_range(storage: Storage, event: RenderChunkEvent) -> None:
    """The range's invocation failed without an answer (Lambda told the failure destination):
    say so in its marker, as `lost`, if the render still wants it."""
    prefix = _prefix(event.group)
    if storage.exists(prefix + "request.json"):
        lost = Problem(500, LOST)
        storage.write_json(prefix + "marker.json", {"ok": False, "error": lost.answer()})
