"""Fixtures of the Lambda-path tests: the stand-in for the Lambda service, which delivers a
function's own asynchronous invokes back to the emulated functions a module lists in its
`targets`. The function user's task root and the S3 server are tests/conftest.py's."""

from collections.abc import Iterator

import pytest

from tests.support.lambda_service import LambdaService, lambda_service


@pytest.fixture(scope="module")
def service() -> Iterator[LambdaService]:
    with lambda_service() as running:
        yield running
