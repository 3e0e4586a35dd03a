"""The project's function as the Lambda-path tests run it (under the RIE, and in the built
image): the handler the Dockerfile's CMD names, the bundled events/, its environment storing to
the session's SeaweedFS, and the check that a video it stored is whole."""

import json
import re
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.support.seaweedfs import S3Server
from tests.support.video import decode

PROJECT = Path(__file__).resolve().parents[2]
EVENTS = PROJECT / "events"


def dockerfile_handler() -> str:
    """The handler the image runs: the Dockerfile's exec-form CMD."""
    match = re.search(r"^CMD\s+(\[.*\])\s*$", (PROJECT / "Dockerfile").read_text(), re.MULTILINE)
    assert match, "the Dockerfile has no exec-form CMD"
    (handler,) = json.loads(match.group(1))
    return handler


def event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def function_env(s3_server: S3Server, bucket: str, **settings: str) -> dict[str, str]:
    """The function's environment: S3 on SeaweedFS, its own work folder, and `settings`."""
    return {
        **s3_server.env(),
        "S3_BUCKET_NAME": bucket,
        "RENDER_WORK_DIR": f"/tmp/manim-worker-rie-{uuid.uuid4().hex}",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "120",
        **settings,
    }


def assert_stored_video(s3_server: S3Server, bucket: str, body: dict, tmp_path: Path, seconds: float) -> None:
    """The object is in the bucket as an MP4 that decodes to the expected length, and the
    answer's presigned URL serves the same bytes."""
    stored = s3_server.client().get_object(Bucket=bucket, Key=body["s3Key"])
    assert stored["ContentType"] == "video/mp4"
    data = stored["Body"].read()
    with urllib.request.urlopen(body["url"], timeout=10) as response:
        assert response.read() == data
    video = tmp_path / "video.mp4"
    video.write_bytes(data)
    assert decode(video).duration == pytest.approx(seconds, abs=0.1)
