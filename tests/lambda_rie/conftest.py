"""Fixtures of the Lambda-path tests: the stand-in for the Lambda service, which delivers a
function's own asynchronous invokes back to the emulated functions a module lists in its
`targets`; and for a module that sets `ENVIRONMENTS` and `FIRST_UID`, that many execution
environments of the function sharing a bucket of the module's own. The function user's task
root and the S3 server are tests/conftest.py's."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.lambda_function import environments
from tests.support.lambda_runtime import LambdaRuntime
from tests.support.lambda_service import LambdaService, lambda_service
from tests.support.seaweedfs import S3Server


@pytest.fixture(scope="module")
def service() -> Iterator[LambdaService]:
    with lambda_service() as running:
        yield running


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server, request: pytest.FixtureRequest) -> str:
    """A bucket of the module's own, named after it."""
    return s3_server.new_bucket(request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-"))


@pytest.fixture(scope="module")
def functions(
    s3_server: S3Server, bucket: str, lambda_task_root: Path, service: LambdaService, request: pytest.FixtureRequest
) -> Iterator[list[LambdaRuntime]]:
    """The module's `ENVIRONMENTS` environments, as bare uids from its `FIRST_UID` on (Lambda's
    sandbox users are), storing to `bucket`, with its `SETTINGS` if it has any; `service`
    delivers their self-invokes to any of them."""
    uids = range(request.module.FIRST_UID, request.module.FIRST_UID + request.module.ENVIRONMENTS)
    settings = getattr(request.module, "SETTINGS", {})
    with environments(s3_server, bucket, lambda_task_root, service, uids, **settings) as runtimes:
        yield runtimes
