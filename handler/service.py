"""One render request, from validated request to stored video: the same for every entry point
(HTTP, direct invoke, async job)."""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from handler.cache import acquire_lease, cache_key, release_lease
from handler.fanout import Invoke, render_fanned_out
from handler.models import RenderRequest, RenderResponse, Timings
from handler.observability import logger, record_count, record_seconds, tracer
from handler.settings import Settings
from handler.storage import Storage
from render import FRAME_RATES, RenderedVideo, RenderLimits, RenderWorker, choose_scene
from render.chunks import Plan, choose_chunks, split

# Told each stage as it starts ("rendering", "uploading"), with progress while rendering.
StageCallback = Callable[[str, dict[str, Any] | None], None]


def video_key(video_id: str, scene_name: str) -> str:
    """The seed's key layout: `videos/<id>/<Scene>.mp4`; the id is the cache key."""
    return f"videos/{video_id}/{scene_name}.mp4"


def _answer(
    request: RenderRequest, storage: Storage, key: str, scene: str, cached: bool, timings: Timings, chunks: int = 1
) -> RenderResponse:
    return RenderResponse(
        s3_key=key,
        bucket=storage.bucket,
        url=storage.url_for(key),
        scene_name=scene,
        quality=request.quality,
        cached=cached,
        chunks=chunks,
        timings=timings,
    )


def render_and_store(
    request: RenderRequest,
    settings: Settings,
    storage: Storage,
    worker: RenderWorker,
    remaining_ms: int | None,
    on_stage: StageCallback | None = None,
    fan_out: Invoke | None = None,
) -> RenderResponse:
    """Answer from the cache, or render the request's scene, upload it and say where it is.

    Chunks render in parallel children of `worker`, or with `fan_out` (on Lambda) in parallel
    invocations of this function, each given one range.

    Raises render.RenderError for a script that does not render within its limits, and
    handler.storage.StorageError when storage fails.
    """
    started = time.monotonic()
    stage = on_stage or (lambda _stage, _progress: None)
    scene = choose_scene(request.code_content, request.scene_name)
    key = video_key(cache_key(request.code_content, scene, request.quality), scene)
    logger.thread_safe_append_keys(scene=scene, quality=request.quality)
    if request.cache and storage.exists(key):
        return _cache_hit(request, storage, key, scene, started)
    limits = settings.render_limits(remaining_ms)
    if request.cache and not acquire_lease(storage, key, limits.timeout_seconds + settings.upload_margin_seconds, uuid.uuid4().hex):
        return _cache_hit(request, storage, key, scene, started)  # an identical request made it meanwhile
    logger.thread_safe_append_keys(cache="miss" if request.cache else "bypass")
    record_count("CacheMisses")
    try:
        stage("rendering", None)
        with tempfile.TemporaryDirectory(prefix="plan-") as scratch:
            plan_started = time.monotonic()
            chunking = _chunking(request, scene, settings, worker, limits, Path(scratch))
            plan_seconds = time.monotonic() - plan_started if request.chunks != 1 else 0.0
            # The plan spent part of the render's time; the render keeps to the same deadline.
            limits = replace(limits, timeout_seconds=max(1.0, limits.timeout_seconds - plan_seconds))
            with tracer.provider.in_subsegment("render") as segment, _rendered(
                request, scene, limits, worker, storage, chunking, fan_out, lambda progress: stage("rendering", progress)
            ) as video:
                segment.put_annotation("scene", scene)
                logger.info("Rendered", extra={"render_seconds": round(video.render_seconds, 3)})
                stage("uploading", None)
                upload_started = time.monotonic()
                with tracer.provider.in_subsegment("upload"):
                    storage.put_video(video.path, key)
                upload_seconds = time.monotonic() - upload_started
    finally:
        if request.cache:
            release_lease(storage, key)
    record_seconds("RenderTime", video.render_seconds)
    record_seconds("UploadTime", upload_seconds)
    timings = Timings(
        plan_seconds=round(plan_seconds, 3),
        render_seconds=round(video.render_seconds, 3),
        upload_seconds=round(upload_seconds, 3),
        total_seconds=round(time.monotonic() - started, 3),
    )
    return _answer(request, storage, key, scene, cached=False, timings=timings, chunks=video.chunks)


@dataclass(frozen=True)
class _Chunking:
    """How a render is split: the plan (frames and soundtrack), and the animation ranges."""

    plan: Plan
    ranges: list[tuple[int, int]]


@contextlib.contextmanager
def _rendered(
    request: RenderRequest,
    scene: str,
    limits: RenderLimits,
    worker: RenderWorker,
    storage: Storage,
    chunking: _Chunking | None,
    fan_out: Invoke | None,
    on_progress: Callable[[dict[str, Any]], None],
) -> Iterator[RenderedVideo]:
    """The video, rendered whole or in chunks, here or fanned out; joined in one place."""
    if chunking is None or fan_out is None:
        with worker.render(
            request.code_content,
            quality=request.quality,
            scene_name=scene,
            limits=limits,
            on_progress=on_progress,
            ranges=chunking and chunking.ranges,
            soundtrack=chunking and chunking.plan.soundtrack,
        ) as video:
            yield video
        return
    started = time.monotonic()
    deadline = started + limits.timeout_seconds
    with render_fanned_out(request, chunking.ranges, chunking.plan.frames, storage, fan_out, deadline, on_progress) as pieces:
        remaining = replace(limits, timeout_seconds=max(1.0, deadline - time.monotonic()))
        with worker.join(
            pieces, scene_name=scene, quality=request.quality, limits=remaining, soundtrack=chunking.plan.soundtrack
        ) as joined:
            yield RenderedVideo(joined, scene, request.quality, time.monotonic() - started, len(chunking.ranges))


def _chunking(
    request: RenderRequest, scene: str, settings: Settings, worker: RenderWorker, limits: RenderLimits, scratch: Path
) -> _Chunking | None:
    """How to split the render, or None to render whole: a plan pass says how many frames
    each animation makes (and mixes the scene's sound into a soundtrack kept in `scratch`),
    and a scene too short to benefit renders whole."""
    if request.chunks == 1:
        return None
    plan = worker.plan(request.code_content, quality=request.quality, limits=limits, scratch=scratch, scene_name=scene)
    chunks = choose_chunks(plan.frames, request.chunks, settings.max_chunks, FRAME_RATES[request.quality])
    return _Chunking(plan, split(plan.frames, chunks)) if chunks > 1 else None


def _cache_hit(request: RenderRequest, storage: Storage, key: str, scene: str, started: float) -> RenderResponse:
    logger.thread_safe_append_keys(cache="hit")
    record_count("CacheHits")
    timings = Timings(render_seconds=0, upload_seconds=0, total_seconds=round(time.monotonic() - started, 3))
    return _answer(request, storage, key, scene, cached=True, timings=timings)
