"""The real Lambda invoke path: the Runtime Interface Emulator running awslambdaric with the
handler the Dockerfile's CMD names, as an unprivileged user, fed the files in events/, storing
to a real S3-compatible server (SeaweedFS) through S3_ENDPOINT."""

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.lambda_function import assert_stored_video, dockerfile_handler, event, function_env
from tests.support.lambda_runtime import LambdaRuntime, lambda_runtime
from tests.support.processes import free_ports
from tests.support.seaweedfs import S3Server
from tests.support.video import probe


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket("videos")


@pytest.fixture(scope="module")
def function(s3_server: S3Server, bucket: str, lambda_task_root: Path) -> Iterator[LambdaRuntime]:
    with lambda_runtime(dockerfile_handler(), lambda_task_root, function_env(s3_server, bucket)) as runtime:
        yield runtime


def http(runtime: LambdaRuntime, name: str) -> tuple[int, dict]:
    result = runtime.invoke(event(name))
    assert "errorType" not in result, runtime.log_tail()
    return result["statusCode"], json.loads(result["body"])


@pytest.mark.parametrize("name", ["function-url-health.json", "http-api-health.json"])
def test_health(function, name):
    status, body = http(function, name)
    assert (status, body["message"]) == (200, "Health is OK")


@pytest.mark.parametrize("name", ["function-url-render.json", "http-api-render.json"])
def test_render_events_store_the_video_in_s3(function, s3_server, bucket, tmp_path, name):
    status, body = http(function, name)
    assert status == 200, body
    assert re.fullmatch(r"videos/[0-9a-f]{32}/SquareToCircle\.mp4", body["s3Key"])
    assert body["bucket"] == bucket
    assert body["url"].startswith(f"{s3_server.endpoint_url}/{bucket}/{body['s3Key']}?")
    assert_stored_video(s3_server, bucket, body, tmp_path, seconds=3.5)


def test_direct_invoke_returns_the_body(function, s3_server, bucket, tmp_path):
    body = function.invoke(event("direct-render-two-scenes.json"))
    assert body["sceneName"] == "Second" and body["s3Key"].endswith("/Second.mp4"), body
    assert_stored_video(s3_server, bucket, body, tmp_path, seconds=1.0)


@pytest.mark.parametrize(
    ("name", "key", "content_type", "size"),
    [
        ("direct-render-still.json", "Diagram.png", "image/png", (854, 480)),
        ("direct-render-vertical.json", "Vertical.mp4", "video/mp4", (480, 854)),
    ],
)
def test_a_still_and_a_vertical_video_through_the_runtime(function, s3_server, bucket, tmp_path, name, key, content_type, size):
    body = function.invoke(event(name))
    assert body["s3Key"].endswith(f"/{key}"), body
    assert (body["width"], body["height"]) == size
    stored = s3_server.client().get_object(Bucket=bucket, Key=body["s3Key"])
    assert stored["ContentType"] == content_type
    (tmp_path / key).write_bytes(stored["Body"].read())
    assert (probe(tmp_path / key).width, probe(tmp_path / key).height) == size


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("bad-malformed-json.json", 400),
        ("bad-unknown-quality.json", 400),
        ("bad-missing-code.json", 400),
        ("bad-scene-name.json", 400),
        ("bad-unknown-route.json", 404),
    ],
)
def test_bad_http_events(function, name, status):
    answer_status, body = http(function, name)
    assert answer_status == status
    assert set(body) == {"message", "errors"}


def test_a_script_error_comes_back_as_a_result(function):
    result = function.invoke(event("bad-script-error.json"))
    assert result["statusCode"] == 422
    assert (result["errors"]["type"], result["errors"]["line"]) == ("NameError", 8)
    assert result["errors"]["traceback"].startswith('Traceback (most recent call last):\n  File "scene.py", line 8')


def test_storage_down_raises_on_a_direct_invoke(s3_server, bucket, lambda_task_root):
    (closed_port,) = free_ports(1)
    env = function_env(s3_server, bucket) | {"S3_ENDPOINT": f"http://127.0.0.1:{closed_port}"}
    with lambda_runtime(dockerfile_handler(), lambda_task_root, env) as runtime:
        result = runtime.invoke(event("direct-render.json"))
    assert result["errorType"] == "StorageError"
    assert bucket in result["errorMessage"]
