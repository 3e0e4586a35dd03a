"""`manim-lambda --function` on the Lambda invoke path: boto3 in the client invokes the
function (through the stand-in Lambda service, `AWS_ENDPOINT_URL_LAMBDA`), which runs the job
in a self-invocation, stores the video in SeaweedFS, and the client downloads it from its
presigned URL."""

import pytest

from tests.support import scripts
from tests.support.client_cli import client_env, manim_lambda
from tests.support.video import decode

ENVIRONMENTS = 2  # for `functions` (conftest.py): one runs the job while the other answers the polls
FIRST_UID = 2301
FUNCTION = ("--function", "function")  # the emulator's name for every function


@pytest.fixture
def lambda_env(service) -> dict[str, str]:
    """The client's environment: credentials to sign with (the stand-in checks none), and the
    Lambda endpoint boto3 is to use instead of AWS's."""
    credentials = {"AWS_ACCESS_KEY_ID": "AKIDCLIENT", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
    return client_env(AWS_ENDPOINT_URL_LAMBDA=service.url, **credentials)


def test_the_cli_renders_through_a_direct_invoke(functions, service, lambda_env, tmp_path):
    (tmp_path / "scene.py").write_text(scripts.CIRCLE)
    done = manim_lambda("render", "scene.py", "--quality", "-ql", "-o", "out.mp4", *FUNCTION, env=lambda_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "succeeded  100%|" in done.stderr
    assert len(decode(tmp_path / "out.mp4").frames) == 15
    job = done.stdout.rsplit("job ", 1)[1].split(",")[0]
    assert {"action": "runJob", "jobId": job} in [call["payload"] for call in service.received]  # run by a self-invoke
    looked = manim_lambda("status", job, *FUNCTION, env=lambda_env, cwd=tmp_path)
    assert looked.returncode == 0 and '"status": "succeeded"' in looked.stdout


def test_a_script_error_through_a_direct_invoke(functions, lambda_env, tmp_path):
    (tmp_path / "scene.py").write_text(scripts.TYPO)
    failed = manim_lambda("render", "scene.py", "--quality=-ql", "-o", "out.mp4", *FUNCTION, env=lambda_env, cwd=tmp_path)
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[-1] == "scene.py:7: NameError: name 'Circel' is not defined"
