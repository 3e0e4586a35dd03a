"""S3 going down in the middle of an upload, on the Lambda path: the handler under the RIE
stores to a SeaweedFS of this module's own (the session's serves every other test). The server
is frozen while the scene renders, so the video's PUT reaches it and is never answered, and
killed once part of the video has arrived. The caller is answered with the `storage` class,
nothing is left at the video's key, and once S3 is back the same request renders and stores
the video."""

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from handler.cache import LEASE_SECONDS
from tests.support.lambda_function import assert_stored_video, dockerfile_handler, event, function_env
from tests.support.lambda_runtime import LambdaRuntime, lambda_runtime
from tests.support.processes import tcp_sockets
from tests.support.seaweedfs import Seaweed, seaweed_service

# Sleeps before it plays, so that S3 can be frozen after the render has begun (its lease is
# stored) and before the upload.
SLOW_SCENE = """\
import time
from manim import *


class Slow(Scene):
    def construct(self):
        time.sleep(2)
        self.play(Create(Circle(color=BLUE)), run_time=0.5)
"""
# More than the PUT's headers: part of the video itself has reached the server.
BODY_ARRIVING_BYTES = 4096


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    with seaweed_service(tmp_path_factory.mktemp("outage-seaweed")) as running:
        yield running


@pytest.fixture(scope="module")
def bucket(seaweed: Seaweed) -> str:
    return seaweed.server.new_bucket("outage")


@pytest.fixture(scope="module")
def function(seaweed: Seaweed, bucket: str, lambda_task_root: Path) -> Iterator[LambdaRuntime]:
    with lambda_runtime(dockerfile_handler(), lambda_task_root, function_env(seaweed.server, bucket)) as runtime:
        yield runtime


def until(found: Callable[[], Any], what: str, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while not (result := found()):
        assert time.monotonic() < deadline, f"no {what} after {seconds} s"
        time.sleep(0.02)
    return result


def render_over_http(function: LambdaRuntime, code: str) -> tuple[int, dict]:
    request = event("function-url-render.json")
    request["body"] = json.dumps({"codeContent": code, "quality": "-ql"})
    answer = function.invoke(request)
    return answer["statusCode"], json.loads(answer["body"])


def test_s3_dying_during_the_upload_is_a_storage_error_that_leaves_nothing(function, seaweed, bucket, tmp_path):
    s3 = seaweed.server.client()
    answers: list[tuple[int, dict]] = []
    caller = threading.Thread(target=lambda: answers.append(render_over_http(function, SLOW_SCENE)))
    caller.start()
    try:
        listed = lambda: s3.list_objects_v2(Bucket=bucket, Prefix="videos/").get("Contents", [])  # noqa: E731
        lease = until(lambda: next((item["Key"] for item in listed() if item["Key"].endswith(".lease")), None), "lease")
        key = lease.removesuffix(".lease")
        time.sleep(0.5)  # the render has begun: the lookups that follow the lease are answered
        seaweed.freeze()
        s3_port = seaweed.ports["s3.port"]
        until(
            lambda: any(found.local[1] == s3_port and found.received > BODY_ARRIVING_BYTES for found in tcp_sockets()),
            "upload reaching the frozen server",
        )
        seaweed.stop(grace=0)  # killed with the upload in flight
    finally:
        caller.join(timeout=120)
    status, body = answers[0]
    assert status == 502, body
    assert (body["errors"]["type"], body["errors"]["class"]) == ("StorageError", "storage")
    assert body["message"] == "The video was rendered but could not be stored."
    assert body["errors"]["detail"].startswith(f"Could not upload the video to bucket {bucket!r}")

    seaweed.start()
    left = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert key not in left, left

    # The failed render could not give its lease up either: that holds the request up for the
    # lease's time at most, not for the failed render's whole time limit.
    started = time.monotonic()
    status, body = render_over_http(function, SLOW_SCENE)
    assert status == 200, body
    assert (body["s3Key"], body["cached"]) == (key, False)
    assert time.monotonic() - started < LEASE_SECONDS + 15
    assert_stored_video(seaweed.server, bucket, body, tmp_path, seconds=0.5)
