"""Fixtures of the unit tests: settings, the embedded store and moto's S3, all in this process
(the warm worker they share is tests/conftest.py's)."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from handler.environment import Environment, use_environment
from handler.settings import Settings
from render import WorkerClient
from tests.support.moto_s3 import moto_s3


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch, worker: WorkerClient) -> Callable[..., Environment]:
    """Set environment settings for this test and return the environment the handler now serves with."""

    def apply(**values: str) -> Environment:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        environment = Environment.assemble(Settings.from_env(), worker=worker)
        use_environment(environment)
        return environment

    return apply


@pytest.fixture
def local_store(tmp_path: Path) -> Path:
    """The embedded store's directory (the default storage when no bucket is set)."""
    return tmp_path / "store"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's S3 with its bucket, BUCKET of tests/support/moto_s3.py; a client of it."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with moto_s3() as client:
        yield client
