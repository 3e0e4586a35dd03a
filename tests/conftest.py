"""Shared fixtures. Settings are read from the environment, so each test gets a clean one."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from handler.environment import Environment, use_environment
from handler.settings import Settings
from render import WorkerClient
from tests.services import S3Server, readable_tempdir, seaweed_s3, stage_task_root

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


@pytest.fixture(scope="session")
def worker(work_dir: Path) -> Iterator[WorkerClient]:
    """The warm worker every test's environment shares (started by its first task)."""
    client = WorkerClient(work_dir)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, work_dir: Path, worker: WorkerClient) -> Iterator[None]:
    """No setting leaks in from the machine or from another test; the store in tmp; the
    handler's environment assembled from these settings, with the shared worker."""
    for name in _SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RENDER_WORK_DIR", str(work_dir))
    monkeypatch.setenv("LOCAL_STORE_DIR", str(tmp_path / "store"))
    use_environment(Environment.assemble(Settings.from_env(), worker=worker))
    yield
    use_environment(None)


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


# Real services on loopback (tests/services.py): SeaweedFS S3 and the Lambda RIE.

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
