"""The hostile-scene suite runs through the real Lambda invoke path (the Runtime Interface
Emulator, awslambdaric, the Dockerfile's handler, an unprivileged function user), with
credentials and a token in the function's environment that no script may ever see. With
`--image` (make image-test) the same cases run in the built image's container."""

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import scripts
from tests.support.container_runtime import container_runtime
from tests.support.lambda_function import dockerfile_handler, function_env
from tests.support.lambda_runtime import LambdaRuntime, lambda_runtime
from tests.support.seaweedfs import S3Server
from tests.support.video import decode

# The function's user, as on Lambda: a bare uid with no passwd entry and no groups.
FUNCTION_UID = 993
# The limits the hostile function runs with: small, so that breaking them is quick.
TIMEOUT_SECONDS = 8
MAX_OUTPUT_MB = 16


@pytest.fixture(scope="package")
def secret_values(s3_server: S3Server) -> list[str]:
    """Values in the function's environment that must never reach a caller. (The access key
    id is not among them: every presigned URL names it, by design of SigV4.)"""
    return [s3_server.secret_key, API_TOKEN]


API_TOKEN = f"fake-api-token-{secrets.token_hex(16)}"


@pytest.fixture(scope="package")
def hostile_bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket("hostile")


@pytest.fixture(scope="package")
def function(request: pytest.FixtureRequest, s3_server: S3Server, hostile_bucket: str) -> Iterator[LambdaRuntime]:
    """The function under the RIE on this machine, or the built image's container with --image."""
    env = function_env(
        s3_server,
        hostile_bucket,
        API_TOKEN=API_TOKEN,
        RENDER_TIMEOUT_SECONDS=str(TIMEOUT_SECONDS),
        RENDER_MAX_OUTPUT_MB=str(MAX_OUTPUT_MB),
    )
    image = request.config.getoption("image")
    if image:
        # As on Lambda, the emulator is out of the function's reach (see container_runtime).
        runtime = container_runtime(image, env, emulator_as_root=True)
    else:
        runtime = lambda_runtime(dockerfile_handler(), request.getfixturevalue("lambda_task_root"), env, user=FUNCTION_UID)
    with runtime as started:
        yield started


@pytest.fixture
def render(function: LambdaRuntime, secret_values: list[str]) -> Callable[..., dict]:
    """Invoke the function directly with a script; check that no secret is in the answer."""

    def invoke(code: str, **fields: object) -> dict:
        result = function.invoke({"codeContent": code, "quality": "-ql", **fields})
        answer = json.dumps(result)
        leaked = [value for value in secret_values if value in answer]
        assert not leaked, f"the answer carries a secret of the function: {answer[:2000]}"
        return result

    return invoke


@pytest.fixture
def next_render_is_correct(render: Callable[..., dict], s3_server: S3Server, hostile_bucket: str, tmp_path: Path):
    """After a hostile scene, an ordinary one still renders exactly as it should."""

    def check() -> None:
        body = render(scripts.CIRCLE, cache=False)
        assert "s3Key" in body and body["cached"] is False, body
        video = tmp_path / "next.mp4"
        video.write_bytes(s3_server.client().get_object(Bucket=hostile_bucket, Key=body["s3Key"])["Body"].read())
        decoded = decode(video)
        assert (decoded.width, decoded.height, len(decoded.frames)) == (854, 480, 15)
        first, last = decoded.frames[0], decoded.frames[-1]
        assert first[0, 0].max() < 10, "the background is no longer black"
        assert decoded.lit_fraction(-1) > 0.02 and decoded.lit_fraction(0) < decoded.lit_fraction(-1)
        assert last[240, 427][2] > 100, "the circle is no longer blue"

    return check
