"""The project's function as the Lambda-path tests run it (under the RIE, and in the built
image): the handler the Dockerfile's CMD names, the bundled events/, its environment storing to
the session's SeaweedFS, several execution environments of it, polling a job to its end, and
the check that a video it stored is whole."""

import contextlib
import json
import re
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from tests.support.lambda_runtime import LambdaRuntime, lambda_runtime
from tests.support.lambda_service import LambdaService
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


@contextlib.contextmanager
def environments(
    s3_server: S3Server, bucket: str, task_root: Path, service: LambdaService, uids: Iterable[int], **settings: str
) -> Iterator[list[LambdaRuntime]]:
    """One execution environment of the function a uid, until the block ends, each with its own
    work folder and its own user, as each Lambda environment has its own /tmp and sandbox user
    (its cleanup removes whatever else its user runs or writes). All store to `bucket`, with
    `settings`, and invoke the function through `service`, which delivers those invokes to any
    of them."""
    with contextlib.ExitStack() as stack:
        runtimes = [
            stack.enter_context(
                lambda_runtime(
                    dockerfile_handler(),
                    task_root,
                    function_env(s3_server, bucket, LAMBDA_ENDPOINT_URL=service.url, **settings),
                    user=uid,
                )
            )
            for uid in uids
        ]
        service.targets.extend(runtimes)
        yield runtimes


def poll_job(function: LambdaRuntime, job_id: str, seconds: float = 120) -> dict:
    """Ask `function` for the job's status (a direct invoke) until it has ended; its record."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        record = function.invoke({"action": "status", "jobId": job_id})
        if record.get("status") in ("succeeded", "failed", "cancelled"):
            return record
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end: {record}")


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
