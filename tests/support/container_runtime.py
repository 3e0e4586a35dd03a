"""The function image, run as Lambda runs it: read-only, an arbitrary uid, a tmpfs /tmp, under
the RIE, in the container engine DOCKER_HOST names (for the image tests, `make image-test`)."""

from __future__ import annotations

import contextlib
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.lambda_runtime import LambdaRuntime, invocations_url, lambda_env, rie_addresses, rie_binary
from tests.support.processes import free_ports, port_open, wait_for

# The uid Lambda gives a function is its own choice, with no passwd entry: any unusual one does.
ARBITRARY_UID = "54321:54321"
# Lambda's /tmp (EphemeralStorage): writable, executable, as large as the template's default.
LAMBDA_TMPFS = "rw,exec,nosuid,nodev,size=2048m,mode=1777"
_RIE_IN_CONTAINER = "/opt/rie/aws-lambda-rie"


class _Container:
    """The part of a Popen that `wait_for` uses, for a container: has it exited?"""

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
    rie = rie_binary(Path(sys.prefix))
    rie_port, api_port = free_ports(2)
    with contextlib.ExitStack() as stack:
        if log_path is None:
            log_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="image-"))) / "container.log"
        full_env = lambda_env(env)
        uid, _, gid = ARBITRARY_UID.partition(":")
        drop = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"] if emulator_as_root else []
        container = client.containers.run(
            image,
            entrypoint=[_RIE_IN_CONTAINER, *rie_addresses(rie_port, api_port)],
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
        wait_for(lambda: port_open(rie_port), _Container(container), f"the image {image}", log_path, ready_timeout)
        yield LambdaRuntime(
            url=invocations_url(rie_port),
            function_timeout=float(full_env["AWS_LAMBDA_FUNCTION_TIMEOUT"]),
            log_path=log_path,
            process=None,
        )


def _copy_logs(container: Any, log_path: Path) -> None:
    with log_path.open("ab") as log:
        for chunk in container.logs(stream=True, follow=True):
            log.write(chunk)
            log.flush()
