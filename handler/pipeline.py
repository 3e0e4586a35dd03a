"""One render request, from validated request to stored video: the same for every entry point
(HTTP, direct invoke, async job).

The cache is asked first; on a miss the lease makes identical requests render once, render/
renders (whole or chunked, ranges sent to other invocations on Lambda), and the video is
uploaded under the cache's key.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from handler.cache import acquire_lease, cache_key, holding
from handler.models import CheckResponse, RenderRequest, RenderResponse, Timings
from handler.observability import logger, record_count, record_seconds, tracer
from handler.storage import Storage
from render import Progress, RenderCancelled, RenderSpec, check, choose_scene, render

if TYPE_CHECKING:
    from handler.environment import Environment

# Told each stage as it starts ("rendering", "uploading"), with progress while rendering.
StageCallback = Callable[[str, dict[str, Any] | None], None]


def video_key(video_id: str, scene_name: str, suffix: str = ".mp4") -> str:
    """The seed's key layout: `videos/<id>/<Scene>.mp4` (`.png` for a scene without animation,
    stored as its last frame); the id is the cache key."""
    return f"videos/{video_id}/{scene_name}{suffix}"


def _stored(storage: Storage, request: RenderRequest, video_id: str, scene_name: str) -> str | None:
    """The key of the render already stored for this request, if any: in the format asked
    for, or without one, an MP4 or (for a scene without animation) a PNG."""
    suffixes = [f".{request.format}"] if request.format else [".mp4", ".png"]
    return next((key for suffix in suffixes if storage.exists(key := video_key(video_id, scene_name, suffix))), None)


def render_and_store(
    environment: Environment,
    request: RenderRequest,
    remaining_ms: int | None,
    on_stage: StageCallback | None = None,
    cancelled: threading.Event | None = None,
) -> RenderResponse | CheckResponse:
    """Answer from the cache, or render the request's scene, upload it and say where it is
    (or for a dry run, check that the script runs and say how long its scene is).

    Raises render.RenderError for a script that does not render within its limits (and
    RenderCancelled once `cancelled` is set, before anything is uploaded),
    handler.storage.StorageError when storage fails, and handler.errors.ChunkFailed or
    ChunksOverdue when a range sent to another invocation failed or did not come back.
    """
    started = time.monotonic()
    settings, storage = environment.settings, environment.storage
    stage = on_stage or (lambda _stage, _progress: None)
    scene = choose_scene(request.code_content, request.scene_name)
    video_id = cache_key(request.code_content, scene, request.quality, request.output(), request.frame_at)
    if request.dry_run:
        return _check(environment, request, scene, video_key(video_id, scene, ".check.json"), remaining_ms)
    key = video_key(video_id, scene, f".{request.format or 'mp4'}")
    logger.thread_safe_append_keys(scene=scene, quality=request.quality)
    if request.cache and (stored := _stored(storage, request, video_id, scene)) is not None:
        return _cache_hit(environment, request, stored, scene, started)
    deadline = settings.render_deadline(remaining_ms, cancelled)
    lease = None
    if request.cache:
        lease = acquire_lease(storage, key, deadline.seconds_left() + settings.upload_margin_seconds)
        if lease is None:  # an identical request made it meanwhile
            return _cache_hit(environment, request, _stored(storage, request, video_id, scene) or key, scene, started)
    logger.thread_safe_append_keys(cache="miss" if request.cache else "bypass")
    record_count("CacheMisses")
    spec = RenderSpec(
        request.code_content,
        request.quality,
        settings.render_limits,
        deadline,
        scene,
        output=request.output(),
        frame_at=request.frame_at,
    )

    def rendering(progress: Progress) -> None:
        stage("rendering", progress.counts())

    with holding(storage, lease):
        stage("rendering", None)
        with (
            tracer.provider.in_subsegment("render") as segment,
            render(
                environment.worker,
                spec,
                chunks=request.chunks,
                max_chunks=settings.max_chunks,
                run_range=environment.run_range,
                on_progress=rendering,
            ) as video,
        ):
            segment.put_annotation("scene", scene)
            logger.info("Rendered", extra={"render_seconds": round(video.render_seconds, 3)})
            if deadline.cancelled.is_set():
                raise RenderCancelled()
            stage("uploading", None)
            upload_started = time.monotonic()
            key = video_key(video_id, scene, video.path.suffix)
            with tracer.provider.in_subsegment("upload"):
                storage.put_video(video.path, key)
            upload_seconds = time.monotonic() - upload_started
    record_seconds("RenderTime", video.render_seconds)
    record_seconds("UploadTime", upload_seconds)
    total_seconds = time.monotonic() - started
    billed = math.ceil((total_seconds + video.elsewhere_seconds) * 1000) / 1000  # Lambda bills by the millisecond
    timings = Timings(
        plan_seconds=round(video.plan_seconds, 3),
        render_seconds=round(video.render_seconds, 3),
        join_seconds=round(video.join_seconds, 3),
        upload_seconds=round(upload_seconds, 3),
        total_seconds=round(total_seconds, 3),
        billed_seconds=billed,
        estimated_cost_usd=round(settings.cost_of(billed), 8),
    )
    return _answer(environment, request, key, scene, cached=False, timings=timings, chunks=video.chunks, frames=video.frames)


def _check(environment: Environment, request: RenderRequest, scene: str, key: str, remaining_ms: int | None) -> CheckResponse:
    """A dry run: the check kept under `key` for an identical request, or a new one, kept there."""
    settings, storage = environment.settings, environment.storage
    kept = storage.read_json(key) if request.cache else None
    if kept is not None:
        return CheckResponse.model_validate({**kept, "cached": True})
    spec = RenderSpec(
        request.code_content,
        request.quality,
        settings.render_limits,
        settings.render_deadline(remaining_ms),
        scene,
        output=request.output(),
    )
    checked = check(environment.worker, spec)
    answer = CheckResponse(
        scene_name=scene,
        quality=request.quality,
        duration=round(checked.seconds, 3),
        frames=checked.frames,
        animations=checked.animations,
        cached=False,
        check_seconds=round(checked.check_seconds, 3),
    )
    storage.write_json(key, answer.model_dump(by_alias=True, exclude={"cached"}))
    return answer


def _cache_hit(environment: Environment, request: RenderRequest, key: str, scene: str, started: float) -> RenderResponse:
    logger.thread_safe_append_keys(cache="hit")
    record_count("CacheHits")
    timings = Timings(render_seconds=0, upload_seconds=0, total_seconds=round(time.monotonic() - started, 3))
    return _answer(environment, request, key, scene, cached=True, timings=timings)


def _answer(
    environment: Environment,
    request: RenderRequest,
    key: str,
    scene: str,
    cached: bool,
    timings: Timings,
    chunks: int = 1,
    frames: int | None = None,
) -> RenderResponse:
    storage = environment.storage
    width, height, fps = request.size()
    return RenderResponse(
        s3_key=key,
        bucket=storage.bucket,
        url=storage.url_for(key),
        scene_name=scene,
        quality=request.quality,
        format=PurePosixPath(key).suffix.lstrip("."),
        width=width,
        height=height,
        fps=fps,
        frames=frames,
        cached=cached,
        chunks=chunks,
        timings=timings,
    )
