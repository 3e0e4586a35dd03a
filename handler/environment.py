"""What one execution environment holds for all its invocations, assembled once: the settings,
the storage, the warm render worker, where async jobs go and the token callers must present.

Every AWS SDK client the handler uses is made here, at assembly (Lambda's init), before any
script has run: a client reads the SDK's configuration when it is made, so none is left to be
made later, when a script could have written files it would read (see
`handler.settings.pin_sdk_configuration` for the files themselves)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from handler.auth import ExpectedToken
from handler.dispatch import Dispatcher, LambdaDispatcher, LocalDispatcher
from handler.fanout import LambdaRanges
from handler.observability import logger
from handler.settings import Settings
from handler.storage import Storage, storage_from_settings
from render import RunRange, WorkerClient


@dataclass
class Environment:
    """Assembled at init on Lambda, at the first request elsewhere."""

    settings: Settings
    storage: Storage
    worker: WorkerClient
    dispatcher: Dispatcher = field(init=False)
    token: ExpectedToken = field(init=False)

    @classmethod
    def assemble(cls, settings: Settings, worker: WorkerClient | None = None) -> Environment:
        """Everything `settings` describe; the worker is started on its first task unless
        `start_worker` is called (a running `worker` may be lent instead)."""
        environment = cls(settings, storage_from_settings(settings), worker or WorkerClient(settings.render_work_dir))
        environment.token = ExpectedToken(settings)
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
