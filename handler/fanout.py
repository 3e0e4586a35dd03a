"""Chunks fanned out over parallel invocations of this function, on Lambda.

The coordinating invocation plans and splits (handler.service), then asks one invocation per
range to render it; each uploads its piece under `jobs/chunks-<group>/` and keeps a marker
there saying how far it has got (`{"progress": ...}`) and at the end how it went
(`{"ok": ...}`). The coordinator waits for the markers, retries a piece that failed for a
reason of ours once, fails as a whole render would on a script's error, gives up before its
own timeout, downloads the pieces for the worker to join, and removes every piece.
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
# A chunk writes its progress to its marker at most this often.
_PROGRESS_WRITE_SECONDS = 1.0
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
    frames: list[int],
    storage: Storage,
    invoke: Invoke,
    deadline: float,
    on_progress: ProgressCallback,
) -> Iterator[list[Path]]:
    """Have each range rendered by its own invocation; yield the pieces, in order, as files.

    `on_progress` is told, as pieces report, the chunks done and the animations and frames
    drawn over all chunks (`frames` is the plan's count for each animation)."""
    group = uuid.uuid4().hex
    prefix = _prefix(group)
    keys = [prefix + "request.json"]
    try:
        storage.write_json(prefix + "request.json", request.model_dump(by_alias=True, exclude={"run_async", "job_id"}))
        events = [chunk_event(group, index, start, end) for index, (start, end) in enumerate(ranges)]
        keys += [prefix + f"{index}.{suffix}" for index in range(len(ranges)) for suffix in ("json", "mp4")]
        for event in events:
            invoke(event)
        _wait_for_pieces(storage, prefix, events, frames, invoke, deadline, on_progress)
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
    frames: list[int],
    invoke: Invoke,
    deadline: float,
    on_progress: ProgressCallback,
) -> None:
    pending = set(range(len(events)))
    retried: set[int] = set()
    # What each chunk has drawn: its last report while it runs, its whole range once done.
    drawn = [{"animations": 0, "frames": 0} for _ in events]
    reported: dict[str, int] = {}
    while pending:
        for index in sorted(pending):
            marker = storage.read_json(prefix + f"{index}.json")
            if marker is None:
                continue
            if "ok" not in marker:
                drawn[index] = _counts(marker.get("progress"))
                continue
            if marker["ok"]:
                pending.discard(index)
                start, end = events[index]["start"], events[index]["end"]
                drawn[index] = {"animations": end - start, "frames": sum(frames[start:end])}
                continue
            answer = marker["error"]
            if answer.get("errors", {}).get("class") in _TRANSIENT and index not in retried:
                retried.add(index)
                drawn[index] = {"animations": 0, "frames": 0}
                storage.delete(prefix + f"{index}.json")
                invoke(events[index])
                continue
            raise ChunkFailed(answer)
        progress = {
            "animations": sum(counts["animations"] for counts in drawn),
            "frames": sum(counts["frames"] for counts in drawn),
            "chunks": len(events),
            "chunksDone": len(events) - len(pending),
        }
        if progress != reported:
            on_progress(progress)
            reported = progress
        if pending and time.monotonic() > deadline:
            raise RendererFailed(f"{len(pending)} of {len(events)} chunks did not come back in time.")
        if pending:
            time.sleep(_POLL_SECONDS)


def _counts(progress: Any) -> dict[str, int]:
    """The animation and frame counts of a chunk's progress report, whatever it holds."""
    progress = progress if isinstance(progress, dict) else {}
    return {key: int(progress.get(key) or 0) for key in ("animations", "frames")}


def run_chunk(event: dict[str, Any], settings: Settings, storage: Storage, worker: RenderWorker, remaining_ms: int | None) -> dict[str, Any]:
    """In a chunk's invocation: render the range (reporting progress in the marker), upload
    the piece, leave the final marker.

    It never fans out again (the recursion guard): it calls the worker directly."""
    prefix = _prefix(str(event["group"]))
    index = int(event["index"])
    marker_key = prefix + f"{index}.json"
    request = RenderRequest.model_validate(storage.read_json(prefix + "request.json"))
    last_write = 0.0

    def report(progress: dict[str, Any]) -> None:
        nonlocal last_write
        if time.monotonic() - last_write < _PROGRESS_WRITE_SECONDS:
            return
        last_write = time.monotonic()
        with contextlib.suppress(StorageError):  # progress is a courtesy; the render goes on
            storage.write_json(marker_key, {"progress": progress})

    try:
        with worker.render(
            request.code_content,
            quality=request.quality,
            scene_name=request.scene_name,
            limits=settings.render_limits(remaining_ms),
            ranges=[(int(event["start"]), int(event["end"]))],
            on_progress=report,
        ) as video:
            storage.put_video(video.path, prefix + f"{index}.mp4")
        marker: dict[str, Any] = {"ok": True}
    except (RenderError, StorageError) as error:
        status, body = problem(error)
        marker = {"ok": False, "error": {"statusCode": status, **body}}
    storage.write_json(marker_key, marker)
    return {"index": index, "ok": marker["ok"]}
