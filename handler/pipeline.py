"""One render request, from validated request to stored video: the same for every entry point
(HTTP, direct invoke, async job).

The cache is asked first; on a miss the lease makes identical requests render once, render/
renders (whole or chunked, ranges sent to other invocations on Lambda), and the video is
uploaded under the cache's key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from handler.cache import acquire_lease, cache_key, release_lease
from handler.models import RenderRequest, RenderResponse, Timings
from handler.observability import logger, record_count, record_seconds, tracer
from render import Progress, RenderSpec, choose_scene, render

if TYPE_CHECKING:
    from handler.environment import Environment

# Told each stage as it starts ("rendering", "uploading"), with progress while rendering.
StageCallback = Callable[[str, dict[str, Any] | None], None]


def video_key(video_id: str, scene_name: str) -> str:
    """The seed's key layout: `videos/<id>/<Scene>.mp4`; the id is the cache key."""
    return f"videos/{video_id}/{scene_name}.mp4"


def render_and_store(
    environment: Environment,
    request: RenderRequest,
    remaining_ms: int | None,
    on_stage: StageCallback | None = None,
) -> RenderResponse:
    """Answer from the cache, or render the request's scene, upload it and say where it is.

    Raises render.RenderError for a script that does not render within its limits,
    handler.storage.StorageError when storage fails, and handler.errors.ChunkFailed or
    ChunksOverdue when a range sent to another invocation failed or did not come back.
    """
    started = time.monotonic()
    settings, storage = environment.settings, environment.storage
    stage = on_stage or (lambda _stage, _progress: None)
    scene = choose_scene(request.code_content, request.scene_name)
    key = video_key(cache_key(request.code_content, scene, request.quality), scene)
    logger.thread_safe_append_keys(scene=scene, quality=request.quality)
    if request.cache and storage.exists(key):
        return _cache_hit(environment, request, key, scene, started)
    deadline = settings.render_deadline(remaining_ms)
    lease = None
    if request.cache:
        lease = acquire_lease(storage, key, deadline.seconds_left() + settings.upload_margin_seconds)
        if lease is None:
            return _cache_hit(environment, request, key, scene, started)  # an identical request made it meanwhile
    logger.thread_safe_append_keys(cache="miss" if request.cache else "bypass")
    record_count("CacheMisses")
    spec = RenderSpec(request.code_content, request.quality, settings.render_limits, deadline, scene)

    def rendering(progress: Progress) -> None:
        stage("rendering", progress.counts())

    try:
        stage("rendering", None)
        with tracer.provider.in_subsegment("render") as segment, render(
            environment.worker,
            spec,
            chunks=request.chunks,
            max_chunks=settings.max_chunks,
            run_range=environment.run_range,
            on_progress=rendering,
        ) as video:
            segment.put_annotation("scene", scene)
            logger.info("Rendered", extra={"render_seconds": round(video.render_seconds, 3)})
            stage("uploading", None)
            upload_started = time.monotonic()
            with tracer.provider.in_subsegment("upload"):
                storage.put_video(video.path, key)
            upload_seconds = time.monotonic() - upload_started
    finally:
        if lease is not None:
            release_lease(storage, lease)
    record_seconds("RenderTime", video.render_seconds)
    record_seconds("UploadTime", upload_seconds)
    timings = Timings(
        plan_seconds=round(video.plan_seconds, 3),
        render_seconds=round(video.render_seconds, 3),
        join_seconds=round(video.join_seconds, 3),
        upload_seconds=round(upload_seconds, 3),
        total_seconds=round(time.monotonic() - started, 3),
    )
    return _answer(environment, request, key, scene, cached=False, timings=timings, chunks=video.chunks)


def _cache_hit(environment: Environment, request: RenderRequest, key: str, scene: str, started: float) -> RenderResponse:
    logger.thread_safe_append_keys(cache="hit")
    record_count("CacheHits")
    timings = Timings(render_seconds=0, upload_seconds=0, total_seconds=round(time.monotonic() - started, 3))
    return _answer(environment, request, key, scene, cached=True, timings=timings)


def _answer(
    environment: Environment, request: RenderRequest, key: str, scene: str, cached: bool, timings: Timings, chunks: int = 1
) -> RenderResponse:
    storage = environment.storage
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
