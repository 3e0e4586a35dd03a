"""The emulated Lambda itself: the RIE runs a handler the way Lambda does (unprivileged,
read-only task root, Lambda's error and timeout shapes), from a task root staged for the
function user. A throwaway `probe` handler, written here, reports what it sees."""

import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.lambda_runtime import InvokeError, LambdaRuntime, lambda_runtime
from tests.support.processes import alive
from tests.support.seaweedfs import S3Server
from tests.support.task_root import readable_tempdir, stage_task_root, task_python, world_traversable

PROBE = '''
import os
import time


def can_write(folder):
    path = os.path.join(folder, f".probe-{os.getpid()}")
    try:
        with open(path, "x"):
            pass
    except OSError:
        return False
    os.remove(path)
    return True


def handler(event, context):
    action = event.get("action")
    if action == "raise":
        raise ValueError("probe failed on purpose")
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "put":
        import boto3
        from botocore.config import Config

        config = Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required")
        s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], config=config)
        s3.put_object(Bucket=event["bucket"], Key=event["key"], Body=event["body"].encode())
    print("probe says hello")
    return {
        "event": event,
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "can_write_task_root": can_write(os.environ["LAMBDA_TASK_ROOT"]),
        "can_write_tmp": can_write("/tmp"),
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
'''
NOBODY = pwd.getpwnam("nobody")


@pytest.fixture(scope="module")
def probe_root() -> Iterator[Path]:
    """A task root holding only probe.py, readable but not writable by the function user."""
    with readable_tempdir("probe-") as root:
        (root / "probe.py").write_text(PROBE)
        yield root


@pytest.fixture(scope="module")
def probe(probe_root: Path, lambda_task_root: Path, s3_server: S3Server) -> Iterator[LambdaRuntime]:
    env = {"PROBE_SETTING": "from-env", "AWS_LAMBDA_FUNCTION_TIMEOUT": "10", **s3_server.env()}
    python = task_python(lambda_task_root)
    with lambda_runtime("probe.handler", probe_root, env, python=python) as runtime:
        yield runtime


def test_the_function_runs_as_nobody_in_a_lambda_like_environment(probe: LambdaRuntime, probe_root: Path) -> None:
    result = probe.invoke({"hello": ["world", 1]})

    assert result["event"] == {"hello": ["world", 1]}
    assert (result["uid"], result["gid"]) == (NOBODY.pw_uid, NOBODY.pw_gid)
    assert set(result["groups"]) <= {NOBODY.pw_gid}  # root's supplementary groups are dropped
    assert result["can_write_task_root"] is False
    assert result["can_write_tmp"] is True
    assert result["cwd"] == str(probe_root)
    env = result["env"]
    assert env["LAMBDA_TASK_ROOT"] == str(probe_root)
    assert env["HOME"] == "/tmp"
    assert env["PROBE_SETTING"] == "from-env"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "function"
    assert env["AWS_DEFAULT_REGION"] == env["AWS_REGION"] == "us-east-1"
    assert "PYTEST_CURRENT_TEST" not in env  # nothing leaks from the test process
    assert 0 < result["remaining_ms"] <= 10_000  # the RIE enforces AWS_LAMBDA_FUNCTION_TIMEOUT
    assert "probe says hello" in probe.log_tail()


def test_a_raised_error_comes_back_as_lambda_shapes_it(probe: LambdaRuntime) -> None:
    result = probe.invoke({"action": "raise"})

    assert result["errorType"] == "ValueError"
    assert result["errorMessage"] == "probe failed on purpose"
    assert any("probe.py" in line for line in result["stackTrace"])
    assert probe.invoke({})["uid"] == NOBODY.pw_uid  # and the function still serves


def test_the_function_reaches_s3_with_the_credentials_in_its_env(probe: LambdaRuntime, s3_server: S3Server) -> None:
    client = s3_server.client()
    client.create_bucket(Bucket="from-lambda")

    probe.invoke({"action": "put", "bucket": "from-lambda", "key": "a/b.txt", "body": "written by nobody"})

    assert client.get_object(Bucket="from-lambda", Key="a/b.txt")["Body"].read() == b"written by nobody"


def test_a_timeout_is_an_invoke_error_and_the_next_invoke_starts_afresh(
    probe_root: Path, lambda_task_root: Path
) -> None:
    python = task_python(lambda_task_root)
    with lambda_runtime("probe.handler", probe_root, {"AWS_LAMBDA_FUNCTION_TIMEOUT": "1"}, python=python) as runtime:
        first = runtime.invoke({})["pid"]
        with pytest.raises(InvokeError, match="timed out") as raised:
            runtime.invoke({"action": "sleep", "seconds": 5})
        assert raised.value.status == 200
        assert runtime.invoke({})["pid"] != first  # the RIE killed the runtime and started a new one


def test_stopping_the_runtime_ends_the_function_process(probe_root: Path, lambda_task_root: Path) -> None:
    python = task_python(lambda_task_root)
    with lambda_runtime("probe.handler", probe_root, {}, python=python) as runtime:
        function_pid = runtime.invoke({})["pid"]
        assert alive(function_pid)

    assert runtime.process is not None and runtime.process.poll() is not None
    assert not alive(function_pid)


def test_a_task_root_the_function_user_cannot_reach_is_refused(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE)  # pytest's tmp_path sits under a 0700 folder

    with pytest.raises(PermissionError, match="stage_task_root"), lambda_runtime("probe.handler", tmp_path, {}):
        pass


def _fake_project(root: Path) -> Path:
    project = root / "project"
    (project / "handler").mkdir(parents=True)
    (project / "handler" / "app.py").write_text("SECRET_MODE = True\n")
    (project / "handler" / "app.py").chmod(0o600)
    (project / "render").mkdir()
    (project / "render" / "__init__.py").write_text("")
    (project / ".venv" / "bin").mkdir(parents=True)
    (project / ".venv" / "bin" / "python").symlink_to("/usr/bin/python3")
    (project / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    return project


def test_stage_task_root_uses_a_project_others_can_read_in_place() -> None:
    with readable_tempdir() as root:
        project = _fake_project(root)
        (project / "handler" / "app.py").chmod(0o644)

        assert stage_task_root(project, root / "staged") == project
        assert not (root / "staged").exists()


def test_stage_task_root_copies_a_closed_project_readable_and_read_only(tmp_path: Path) -> None:
    project = _fake_project(tmp_path)  # under pytest's 0700 folder: closed to others
    (project / "render").chmod(0o700)
    with readable_tempdir() as dest:
        staged = stage_task_root(project, dest / "task")

        assert staged == dest / "task"
        assert (staged / "handler" / "app.py").read_text() == "SECRET_MODE = True\n"
        assert (staged / ".venv" / "bin" / "python").readlink() == Path("/usr/bin/python3")
        for path in [staged, *staged.rglob("*")]:
            assert world_traversable(path), path
            assert not path.lstat().st_mode & (stat.S_IWGRP | stat.S_IWOTH) or path.is_symlink(), path
        assert stat.S_IMODE((project / "handler" / "app.py").stat().st_mode) == 0o600  # sources untouched
        assert stat.S_IMODE((project / "render").stat().st_mode) == 0o700
