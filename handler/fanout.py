"""Ranges of a chunked render sent to other invocations of this function, on Lambda.

render/ plans and splits a chunked render, and calls `LambdaRanges` once per range (all at
once). Each call stores the request under `jobs/chunks-<group>/` and invokes this function with
a `renderChunk` event; that invocation (`render_chunk`) renders the range, uploads the piece
there and keeps a marker saying how far it has got (`{"progress": ...}`) and at the end how it
went (`{"ok": ...}`). The call waits for the marker, retries a range that failed for a reason
of ours once, fails as a whole render would on a script's error, gives up at the render's
deadline, downloads the piece for render/ to join, and removes everything it stored.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from handler.errors import ChunkFailed, ChunksOverdue, Problem, problem
from handler.models import RenderChunkEvent, RenderRequest
from handler.storage import Storage, StorageError
from render import Position, Progress, Range, RenderError, RenderSpec, render

if TYPE_CHECKING:
    from handler.environment import Environment

# How often a range's marker is read (see `_PollPace`).
_FIRST_POLL_SECONDS = 0.05
_BLIND_POLL_SECONDS = 0.25
_LONGEST_POLL_SECONDS = 1.0
# A chunk writes its progress to its marker at most this often.
_PROGRESS_WRITE_SECONDS = 0.5
# Failures of these classes may pass; a range that failed so is asked for once more.
_TRANSIENT = ("storage", "internal")

Invoke = Callable[[dict[str, Any]], None]


def _prefix(group: str) -> str:
    return f"jobs/chunks-{group}/"


class LambdaRanges:
    """render/'s `run_range` on Lambda: each range rendered by its own invocation."""

    def __init__(self, storage: Storage, invoke: Invoke) -> None:
        self._storage = storage
        self._invoke = invoke

    def __call__(self, work: Range) -> None:
        assert work.spec.span is not None
        start, end = work.spec.span
        group = uuid.uuid4().hex
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
            self._wait(prefix, event, work)
            if not work.stopped.is_set():
                self._storage.download(piece, work.piece)
        finally:
            for key in keys:
                with contextlib.suppress(StorageError):
                    self._storage.delete(key)

    def _wait(self, prefix: str, event: dict[str, Any], work: Range) -> None:
        """Until the range's marker says it is done; its progress is passed on meanwhile."""
        retried = False
        pace = _PollPace(work.frames)
        while not work.stopped.wait(pace.pause):
            marker = self._storage.read_json(prefix + "marker.json")
            progress = _progress(marker.get("progress")) if marker is not None and "ok" not in marker else None
            pace.read(progress.frames if progress is not None else None)
            if progress is not None:
                work.on_progress(progress)
            elif marker is not None and marker["ok"]:
                return
            elif marker is not None:
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


class _PollPace:
    """How long to wait before reading a range's marker again.

    Until the range has reported drawing twice, the pause starts at `_FIRST_POLL_SECONDS` and
    grows half again each time, up to `_BLIND_POLL_SECONDS`. From then on it is half the time
    the range still needs at the pace it has been drawing (seen between its reports), between
    `_FIRST_POLL_SECONDS` and `_LONGEST_POLL_SECONDS`. So a range is seen done soon after it is,
    and a long one is read about once a second while it draws.
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
        if self._rate is None or self._seen is None:
            self.pause = min(self.pause * 1.5, _BLIND_POLL_SECONDS)
            return
        left = (self.frames - self._seen[0]) / self._rate - (now - self._seen[1])
        self.pause = min(max(left / 2, _FIRST_POLL_SECONDS), _LONGEST_POLL_SECONDS)


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
    storage, settings = environment.storage, environment.settings
    prefix = _prefix(event.group)
    marker_key = prefix + "marker.json"
    last_write = 0.0

    def report(progress: Progress) -> None:
        nonlocal last_write
        if time.monotonic() - last_write < _PROGRESS_WRITE_SECONDS:
            return
        last_write = time.monotonic()
        with contextlib.suppress(StorageError):  # progress is a courtesy; the render goes on
            storage.write_json(marker_key, {"progress": progress.counts()})

    try:
        stored = storage.read_json(prefix + "request.json") or {}
        request = RenderRequest.model_validate(stored, context={"limits": settings.request_limits})
        spec = RenderSpec(
            code=request.code_content,
            quality=request.quality,
            limits=settings.render_limits,
            deadline=settings.render_deadline(remaining_ms),
            scene=request.scene_name,
            span=(Position(*event.start), Position(*event.end)),
            output=request.output(),
        )
        with render(environment.worker, spec, on_progress=report) as video:
            storage.put_video(video.path, f"{prefix}piece.{request.format or 'mp4'}")
        marker: dict[str, Any] = {"ok": True}
    except (RenderError, StorageError) as error:
        marker = {"ok": False, "error": problem(error).answer()}
    storage.write_json(marker_key, marker)
    return {"index": event.index, "ok": marker["ok"]}
