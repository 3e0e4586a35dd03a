"""The test services themselves: SeaweedFS speaks real, authenticated S3 on loopback only, and
the Lambda RIE runs a handler the way Lambda does (unprivileged, read-only task root, Lambda's
error and timeout shapes). A throwaway `probe` handler, written here, reports what it sees."""

import contextlib
import os
import pwd
import socket
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support.lambda_runtime import InvokeError, LambdaRuntime, lambda_runtime
from tests.support.seaweedfs import S3Server, seaweed_s3
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


def _alive(pid: int) -> bool:
    """Running, not merely a zombie left for a parent that is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except FileNotFoundError:
        return False


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket `pid` listens on, read from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target.removeprefix("socket:[").removesuffix("]"))
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port = fields[1].split(":")
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                host = socket.inet_ntoa(bytes.fromhex(address)[::-1]) if len(address) == 8 else address
                found.add((host, int(port, 16)))
    return found


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
        assert _alive(function_pid)

    assert runtime.process.poll() is not None
    assert not _alive(function_pid)


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


def test_seaweed_serves_authenticated_s3_on_loopback_only_and_stops(tmp_path: Path) -> None:
    with seaweed_s3(tmp_path) as server:
        listening = _listening(server.pid)
        assert {host for host, _ in listening} == {"127.0.0.1"}
        assert {port for _, port in listening} <= set(server.ports.values())

        client = server.client()
        client.create_bucket(Bucket="round-trip")
        client.put_object(Bucket="round-trip", Key="videos/x/Scene.mp4", Body=b"\x00video", ContentType="video/mp4")
        stored = client.get_object(Bucket="round-trip", Key="videos/x/Scene.mp4")
        assert (stored["Body"].read(), stored["ContentType"]) == (b"\x00video", "video/mp4")

        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": "round-trip", "Key": "videos/x/Scene.mp4"}, ExpiresIn=60
        )
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == b"\x00video"

        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(url.split("?")[0], timeout=10)
        assert anonymous.value.code == 403
        with pytest.raises(ClientError):
            server.client(aws_secret_access_key="wrong").get_object(Bucket="round-trip", Key="videos/x/Scene.mp4")

    assert not _alive(server.pid)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", server.ports["s3.port"])) != 0
    assert not list(Path("/tmp").glob(f"seaweedfs-*-grpc-{server.ports['s3.port.grpc']}.sock"))
