"""What one execution environment holds for all its invocations, assembled once: the settings,
the storage, the warm render worker, where async jobs go, the token callers must present and
the key callbacks are signed with.

Every AWS SDK client the handler uses is made here, at assembly (Lambda's init), before any
script has run: a client reads the SDK's configuration when it is made, so none is left to be
made later, when a script could have written files it would read (see
`handler.settings.pin_sdk_configuration` for the files themselves)."""

from __future__ import annotations

import os
import stat
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import render
from handler.auth import SecretSetting
from handler.dispatch import Dispatcher, LambdaDispatcher, LocalDispatcher
from handler.fanout import LambdaRanges
from handler.observability import logger
from handler.settings import Settings
from handler.storage import Storage, storage_from_settings
from render import Leftovers, RunRange, WorkerClient


@dataclass
class Environment:
    """Assembled at init on Lambda, at the first request elsewhere."""

    settings: Settings
    storage: Storage
    worker: WorkerClient
    dispatcher: Dispatcher = field(init=False)
    token: SecretSetting = field(init=False)
    webhook_secret: SecretSetting = field(init=False)

    @classmethod
    def assemble(cls, settings: Settings, worker: WorkerClient | None = None, *, serving: bool = False) -> Environment:
        """Everything `settings` describe (`serving`: for the local server); the worker is
        started on its first task unless `start_worker` is called (a `worker` may be lent)."""
        environment = cls(settings, storage_from_settings(settings), worker or _worker_client(settings, serving))
        environment.token = SecretSetting(settings.api_token, settings.api_token_parameter)
        environment.webhook_secret = SecretSetting(settings.webhook_secret, settings.webhook_secret_parameter)
        if settings.dispatches_to_lambda:
            environment.dispatcher = LambdaDispatcher(settings.function_name or "", settings.lambda_endpoint_url)
        else:
            from handler.jobs import run_job  # jobs run through this environment

            environment.dispatcher = LocalDispatcher(
                lambda job_id: run_job(environment, job_id, None), settings.local_job_workers
            )
        return environment

    @property
    def run_range(self) -> RunRange | None:
        """How a chunked render sends a range elsewhere: to another invocation of this function
        on Lambda; None renders every range here, in the worker."""
        if isinstance(self.dispatcher, LambdaDispatcher):
            return LambdaRanges(self.storage, self.dispatcher.invoke)
        return None

    def start_worker(self) -> WorkerClient:
        """Start the warm worker now (Lambda's init phase pays for Manim's import)."""
        self.worker.start()
        logger.info("Render worker ready", extra={"protections": self.worker.protections, "tools": self.worker.tools})
        return self.worker


def _worker_client(settings: Settings, serving: bool) -> WorkerClient:
    """The worker's client, contained as far as where it runs allows.

    - On Lambda the function's uid is its own: every process and file of that uid a task
      leaves is removed after it (the embedded store is spared).
    - The local server run as root runs the worker and its tasks as `LOCAL_RENDER_UID`, a uid
      of their own, which can write neither the store nor another request's folder; what a
      task leaves of that uid is removed too.
    - Anywhere else (a developer's own uid, the handler in tests) tasks share the uid of
      everything else the user runs: nothing of it can be removed as theirs (/health says so).
    """
    keep = [settings.local_store_dir]
    if settings.runtime_api is not None and os.getuid() != 0:
        return WorkerClient(settings.render_work_dir, leftovers=Leftovers(), keep=keep)
    if serving and os.getuid() == 0 and settings.local_render_uid != 0:
        needed = [Path(render.__file__).parent, Path(sys.prefix), settings.render_work_dir]
        if all(_reachable_by_others(path) for path in needed):
            uid = settings.local_render_uid
            return WorkerClient(settings.render_work_dir, leftovers=Leftovers(uid=uid), keep=keep, user=uid)
        logger.warning("Tasks run as root: LOCAL_RENDER_UID cannot reach the code or RENDER_WORK_DIR", extra={"needed": needed})
    return WorkerClient(settings.render_work_dir, keep=keep)


def _reachable_by_others(path: Path) -> bool:
    """Whether a user of no group can reach `path` (or, if it does not exist yet, the folder
    it will be made in): every folder on the way searchable by others."""
    existing = next(folder for folder in (path, *path.parents) if folder.exists())
    return all(folder.stat().st_mode & stat.S_IXOTH for folder in (existing, *existing.parents))


_current: Environment | None = None
_assembling = threading.Lock()


def current_environment() -> Environment:
    """This execution environment, assembled from the process's settings on first use."""
    global _current  # noqa: PLW0603 - one environment per process, by design
    with _assembling:
        if _current is None:
            _current = Environment.assemble(Settings.from_env())
        return _current


def use_environment(environment: Environment | None) -> None:
    """Serve with `environment` from now on (the local server and tests assemble their own);
    None assembles one again from the settings on next use."""
    global _current  # noqa: PLW0603 - one environment per process, by design
    with _assembling:
        _current = environment
