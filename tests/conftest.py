"""Fixtures of every kind of test. Settings are read from the environment, so each test gets a
clean one; the real services (tests/support/) are started once a session. The in-process
fixtures of the unit tests are in tests/unit/conftest.py."""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler.environment import Environment, use_environment
from handler.settings import Settings
from render import WorkerClient
from tests.support import leftovers
from tests.support.seaweedfs import S3Server, seaweed_s3
from tests.support.task_root import readable_tempdir, stage_task_root

_SETTING_NAMES = [field.alias for field in Settings.model_fields.values() if field.alias]
IMAGE_TESTS = Path(__file__).resolve().parent / "image"
# The shared temporary folders as the session found them, and what the functions left there.
_TEMP_AT_START = pytest.StashKey[leftovers.Entries]()
_TEMP_LEFT = pytest.StashKey[list[str]]()


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


def pytest_sessionstart(session: pytest.Session) -> None:
    """What the shared temporary folders hold as the session starts: none of it is ever removed
    or reported (it is not the session's, or it is an earlier run's)."""
    session.config.stash[_TEMP_AT_START] = leftovers.entries()


@pytest.fixture(autouse=True)
def discard_function_files(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that ran a function, remove what the functions' users made in /tmp, /dev/shm
    and /var/tmp during it (the hostile scenes plant there on purpose), as Lambda discards an
    environment's /tmp: what a test planted changes no later test, and no later `manim` run on
    this machine. Not the work folders of runtimes still running, which a module's or package's
    function keeps from test to test (they go when it stops), nor what the session found there."""
    started, began = leftovers.FUNCTIONS.started, time.time()
    yield
    if leftovers.FUNCTIONS.live_folders or leftovers.FUNCTIONS.started != started:
        now = leftovers.entries(skip=leftovers.FUNCTIONS.live_folders)
        # A second early: file times come from a coarser clock than time.time().
        made = leftovers.created_by_functions(request.config.stash[_TEMP_AT_START], now, since=began - 1)
        leftovers.remove(made, now)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the run if the functions' users left anything the session did not find in the shared
    temporary folders (every runtime has stopped by now, so no work folder is spared)."""
    if _TEMP_AT_START not in session.config.stash:
        return  # the session never started (a usage error)
    now = leftovers.entries()
    left = leftovers.outermost(leftovers.created_by_functions(session.config.stash[_TEMP_AT_START], now))
    if left:
        session.config.stash[_TEMP_LEFT] = leftovers.describe(left, now)
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    left = config.stash.get(_TEMP_LEFT, [])
    if left:
        terminalreporter.write_sep("=", "left in the shared temporary folders", red=True, bold=True)
        terminalreporter.line(
            f"What the functions' users made there, not there when the session started, and no test removed ({len(left)}):",
            red=True,
        )
        for line in left:
            terminalreporter.line(f"  {line}")


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
