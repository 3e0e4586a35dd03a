"""The AWS Lambda Runtime Interface Emulator (shipped inside `aws-sam-cli`) driving
`python -m awslambdaric <handler>` as an unprivileged user: the real Lambda invoke path (event
and error shapes, timeouts, restarts) without a container. `container_runtime` runs the built
image the same way."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.leftovers import function_running, uid_of
from tests.support.processes import LOOPBACK, free_ports, log_tail, port_open, stop_group, wait_for
from tests.support.task_root import task_python, world_traversable

# Time the first invoke may take on top of the function timeout: the RIE starts the runtime
# (Python start-up plus the handler module's imports) lazily, on the first invoke.
INIT_ALLOWANCE_SECONDS = 30.0
_RIE_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


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

    def invoke_if_idle(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Invoke with `event` if no invocation is running, as Lambda uses an idle environment,
        and return its result; None (and nothing done) if one is running."""
        if not self._one_at_a_time.acquire(blocking=False):
            return None
        self._one_at_a_time.release()
        return self.invoke(event)

    def try_invoke(self, event: dict[str, Any]) -> bool:
        """An asynchronous invocation: `invoke_if_idle`, whose result goes nowhere, as on
        Lambda; False (and nothing done) if an invocation is running."""
        try:
            return self.invoke_if_idle(event) is not None
        except InvokeError:
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


def rie_binary(venv: Path) -> Path:
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


def _as_user(user: str | int | None) -> list[str]:
    """A command prefix that runs what follows as `user` (a name, or a bare uid with the same
    gid and no passwd entry, as Lambda's sandbox users have): no supplementary groups. Only
    the function drops: the emulator, like Lambda's own runtime API service, stays out of the
    function's reach."""
    if user is None:
        return []
    uid, gid = (user, user) if isinstance(user, int) else pwd.getpwnam(user)[2:4]
    if os.geteuid() != 0 and os.geteuid() != uid:
        raise PermissionError(f"running the function as {user!r} needs root; pass user=None")
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]


@contextlib.contextmanager
def lambda_runtime(
    handler: str,
    task_root: Path,
    env: dict[str, str],
    user: str | int | None = "nobody",
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
    rie = rie_binary(python.parent.parent)
    if user is not None:
        closed = [str(path) for path in (task_root, python, rie) if not world_traversable(path)]
        if closed:
            raise PermissionError(f"{user} cannot reach {closed}: use stage_task_root and its venv's python")
    full_env = lambda_env(
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
        *rie_addresses(rie_port, api_port),
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
        work_dir = Path(full_env["RENDER_WORK_DIR"]) if "RENDER_WORK_DIR" in full_env else None
        if work_dir is not None:
            # The environment ends with the runtime, as on Lambda: nothing of it stays in /tmp
            # (removed after the function has stopped; callbacks run last-in, first-out).
            stack.callback(shutil.rmtree, work_dir, ignore_errors=True)
        if user is not None:
            # What its user creates elsewhere in /tmp goes after each test (tests/conftest.py).
            stack.enter_context(function_running(uid_of(user), work_dir))
        stack.callback(stop_group, process, 5.0)
        wait_for(lambda: port_open(rie_port), process, "the Lambda RIE", log_path, ready_timeout)
        yield LambdaRuntime(
            url=invocations_url(rie_port),
            function_timeout=float(full_env["AWS_LAMBDA_FUNCTION_TIMEOUT"]),
            log_path=log_path,
            process=process,
        )


def lambda_env(env: dict[str, str]) -> dict[str, str]:
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


def rie_addresses(rie_port: int, api_port: int) -> list[str]:
    """The emulator's flags for its invoke API and the runtime API, both on loopback."""
    return [
        "--runtime-interface-emulator-address",
        f"{LOOPBACK}:{rie_port}",
        "--runtime-api-address",
        f"{LOOPBACK}:{api_port}",
    ]


def invocations_url(rie_port: int) -> str:
    return f"http://{LOOPBACK}:{rie_port}/2015-03-31/functions/function/invocations"
