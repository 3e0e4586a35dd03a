"""Shared fixtures. Settings are read from the environment, so each test gets a clean one."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from handler.app import get_storage, get_worker
from handler.settings import Settings, get_settings
from render import RenderWorker
from tests.support.moto_s3 import moto_s3
from tests.support.seaweedfs import S3Server, seaweed_s3
from tests.support.task_root import readable_tempdir, stage_task_root

_SETTING_NAMES = [field.alias for field in Settings.model_fields.values()]
IMAGE_TESTS = Path(__file__).resolve().parent / "image"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--image",
        metavar="NAME",
        help="a built function image: run tests/image and the security suite against it (make image-test)",
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/image needs a built image and a container engine: only with --image."""
    if not config.getoption("image") and collection_path.is_relative_to(IMAGE_TESTS):
        return True
    return None


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The warm worker's folder for the whole session (one worker serves every test)."""
    return tmp_path_factory.mktemp("worker")


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, work_dir: Path) -> Iterator[None]:
    """No setting leaks in from the machine or from another test; the store in tmp."""
    for name in _SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RENDER_WORK_DIR", str(work_dir))
    monkeypatch.setenv("LOCAL_STORE_DIR", str(tmp_path / "store"))
    get_settings.cache_clear()
    get_storage.cache_clear()
    yield
    get_settings.cache_clear()
    get_storage.cache_clear()


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


# Real services on loopback (tests/support/): SeaweedFS S3 and the Lambda RIE's task root.

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 API (SeaweedFS) for the whole session; give each test its own bucket."""
    with seaweed_s3(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


@pytest.fixture(scope="session")
def lambda_task_root() -> Iterator[Path]:
    """The project as a task root the unprivileged function user can read; run its
    `.venv/bin/python` (a copy when the checkout is closed to other users)."""
    with readable_tempdir("task-root-") as dest:
        yield stage_task_root(PROJECT_ROOT, dest)
