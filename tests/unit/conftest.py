"""Fixtures of the unit tests: the handler's warm worker, settings, the embedded store and
moto's S3, all in this process."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from handler.app import get_storage, get_worker
from handler.settings import Settings, get_settings
from render import RenderWorker
from tests.support.moto_s3 import moto_s3


@pytest.fixture(scope="session")
def worker(work_dir: Path) -> Iterator[RenderWorker]:
    """The handler's warm worker, shared by the session's tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RENDER_WORK_DIR", str(work_dir))
        get_settings.cache_clear()
        started = get_worker()
    yield started
    started.close()
    get_worker.cache_clear()


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """Set environment settings for this test and return the settings the worker now sees."""

    def apply(**values: str) -> Settings:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        get_storage.cache_clear()
        return get_settings()

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
