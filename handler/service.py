"""One render request, from validated request to stored video: the same for every entry point."""

from __future__ import annotations

import time
import uuid

from aws_lambda_powertools import Logger

from handler.models import RenderRequest, RenderResponse, Timings
from handler.settings import Settings
from handler.storage import Storage
from render import RenderWorker

logger = Logger(child=True)


def video_key(job_id: str, scene_name: str) -> str:
    """The seed's key layout: `videos/<id>/<Scene>.mp4`."""
    return f"videos/{job_id}/{scene_name}.mp4"


def render_and_store(
    request: RenderRequest, settings: Settings, storage: Storage, worker: RenderWorker, remaining_ms: int | None
) -> RenderResponse:
    """Render the request's scene, upload the video and describe where it is.

    Raises render.RenderError for a script that does not render in time, and
    handler.storage.StorageError when the video cannot be stored.
    """
    started = time.monotonic()
    with worker.render(
        request.code_content,
        quality=request.quality,
        scene_name=request.scene_name,
        limits=settings.render_limits(remaining_ms),
    ) as video:
        logger.info("Rendered", extra={"scene": video.scene_name, "render_seconds": round(video.render_seconds, 3)})
        key = video_key(uuid.uuid4().hex, video.scene_name)
        upload_started = time.monotonic()
        storage.put_video(video.path, key)
        upload_seconds = time.monotonic() - upload_started
    return RenderResponse(
        s3_key=key,
        bucket=storage.bucket,
        url=storage.url_for(key),
        scene_name=video.scene_name,
        quality=request.quality,
        timings=Timings(
            render_seconds=round(video.render_seconds, 3),
            upload_seconds=round(upload_seconds, 3),
            total_seconds=round(time.monotonic() - started, 3),
        ),
    )
