"""Chunks fanned out over parallel invocations of this function, on Lambda.

The coordinating invocation plans and splits (handler.service), then asks one invocation per
range to render it; each uploads its piece under `jobs/chunks-<group>/` and leaves a marker
saying how it went. The coordinator waits for the markers, retries a piece that failed for a
reason of ours once, fails as a whole render would on a script's error, gives up before its
own timeout, downloads the pieces for render.chunks.join, and removes every piece.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from handler.errors import ChunkFailed, problem
from handler.models import RenderRequest
from handler.settings import Settings
from handler.storage import Storage, StorageError
from render import RendererFailed, RenderError, RenderWorker

RENDER_CHUNK_ACTION = "renderChunk"
_POLL_SECONDS = 0.5
# Failures of these classes may pass; a piece that failed so is asked for once more.
_TRANSIENT = ("storage", "internal")

Invoke = Callable[[dict[str, Any]], None]
ProgressCallback = Callable[[dict[str, Any]], None]


def _prefix(group: str) -> str:
    return f"jobs/chunks-{group}/"


def chunk_event(group: str, index: int, start: int, end: int) -> dict[str, Any]:
    return {"action": RENDER_CHUNK_ACTION, "group": group, "index": index, "start": start, "end": end}


@contextlib.contextmanager
def render_fanned_out(
    request: RenderRequest,
    ranges: list[tuple[int, int]],
    storage: Storage,
    invoke: Invoke,
    deadline: float,
    on_progress: ProgressCallback,
) -> Iterator[list[Path]]:
    """Have each range rendered by its own invocation; yield the pieces, in order, as files."""
    group = uuid.uuid4().hex
    prefix = _prefix(group)
    keys = [prefix + "request.json"]
    try:
        storage.write_json(prefix + "request.json", request.model_dump(by_alias=True, exclude={"run_async", "job_id"}))
        events = [chunk_event(group, index, start, end) for index, (start, end) in enumerate(ranges)]
        keys += [prefix + f"{index}.{suffix}" for index in range(len(ranges)) for suffix in ("json", "mp4")]
        for event in events:
            invoke(event)
        _wait_for_pieces(storage, prefix, events, invoke, deadline, on_progress)
        with tempfile.TemporaryDirectory(prefix="chunks-") as folder:
            pieces = [Path(folder) / f"{index}.mp4" for index in range(len(ranges))]
            for index, piece in enumerate(pieces):
                storage.download(prefix + f"{index}.mp4", piece)
            yield pieces
    finally:
        for key in keys:
            with contextlib.suppress(StorageError):
                storage.delete(key)


def _wait_for_pieces(
    storage: Storage,
    prefix: str,
    events: list[dict[str, Any]],
    invoke: Invoke,
    deadline: float,
    on_progress: ProgressCallback,
) -> None:
    pending = set(range(len(events)))
    retried: set[int] = set()
    while pending:
        for index in sorted(pending):
            marker = storage.read_json(prefix + f"{index}.json")
            if marker is None:
                continue
            if marker.get("ok"):
                pending.discard(index)
                on_progress({"chunks": len(events), "chunksDone": len(events) - len(pending)})
                continue
            answer = marker["error"]
            if answer.get("errors", {}).get("class") in _TRANSIENT and index not in retried:
                retried.add(index)
                storage.delete(prefix + f"{index}.json")
                invoke(events[index])
                continue
            raise ChunkFailed(answer)
        if pending and time.monotonic() > deadline:
            raise RendererFailed(f"{len(pending)} of {len(events)} chunks did not come back in time.")
        if pending:
            time.sleep(_POLL_SECONDS)


def run_chunk(event: dict[str, Any], settings: Settings, storage: Storage, worker: RenderWorker, remaining_ms: int | None) -> dict[str, Any]:
    """In a chunk's invocation: render the range, upload the piece, leave the marker.

    It never fans out again (the recursion guard): it calls the worker directly."""
    prefix = _prefix(str(event["group"]))
    index = int(event["index"])
    request = RenderRequest.model_validate(storage.read_json(prefix + "request.json"))
    try:
        with worker.render(
            request.code_content,
            quality=request.quality,
            scene_name=request.scene_name,
            limits=settings.render_limits(remaining_ms),
            ranges=[(int(event["start"]), int(event["end"]))],
        ) as video:
            storage.put_video(video.path, prefix + f"{index}.mp4")
        marker: dict[str, Any] = {"ok": True}
    except (RenderError, StorageError) as error:
        status, body = problem(error)
        marker = {"ok": False, "error": {"statusCode": status, **body}}
    storage.write_json(prefix + f"{index}.json", marker)
    return {"index": index, "ok": marker["ok"]}
