"""Fixtures for the image tests: the built image (`--image`, given by `make image-test`), a
client of the container engine DOCKER_HOST names, and a bucket on the session's SeaweedFS."""

from typing import Any

import docker
import pytest

from tests.support.seaweedfs import S3Server


@pytest.fixture(scope="session")
def image(request: pytest.FixtureRequest) -> str:
    return request.config.getoption("image")


@pytest.fixture(scope="session")
def engine() -> Any:
    return docker.from_env(timeout=1800)


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket("image")
