"""Settings from the environment, validated once per execution environment; and, on Lambda,
the AWS SDK's configuration pinned to files no script can write."""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from render import Deadline, RenderLimits

# Used when no Lambda deadline bounds a render (the local server, `make run`).
LOCAL_RENDER_TIMEOUT_SECONDS = 600.0
# The handler's HOME on Lambda: a path the function's user cannot create (Lambda's filesystem
# is read-only but for /tmp, and the user is not root), so nothing under `~` can be planted.
SEALED_HOME = "/nonexistent"


@dataclass(frozen=True)
class RequestLimits:
    """The limits a render request is validated against (given to pydantic as its context)."""

    max_code_bytes: int
    max_chunks: int
    max_pixels: int = 3840 * 2160
    max_fps: int = 60
    # A `callbackUrl` needs a webhook secret to sign with, and may not aim at the Runtime API.
    signs_callbacks: bool = False
    runtime_api: str | None = None


class Settings(BaseModel):
    """Every setting the worker reads; the field aliases are the environment variable names."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    bucket: str | None = Field(None, alias="S3_BUCKET_NAME")
    s3_endpoint: str | None = Field(None, alias="S3_ENDPOINT")
    presigned_url_expires_seconds: int = Field(3600, alias="PRESIGNED_URL_EXPIRES_SECONDS", ge=1, le=604800)
    max_code_bytes: int = Field(100 * 1024, alias="MAX_CODE_BYTES", ge=1)
    render_timeout_seconds: float | None = Field(None, alias="RENDER_TIMEOUT_SECONDS", gt=0)
    upload_margin_seconds: float = Field(20.0, alias="UPLOAD_MARGIN_SECONDS", ge=0)
    render_memory_mb: int = Field(2048, alias="RENDER_MEMORY_MB", ge=256)
    render_max_output_mb: int = Field(512, alias="RENDER_MAX_OUTPUT_MB", ge=1)
    render_max_processes: int = Field(64, alias="RENDER_MAX_PROCESSES", ge=8)
    render_max_open_files: int = Field(256, alias="RENDER_MAX_OPEN_FILES", ge=64)
    render_work_dir: Path = Field(Path("/tmp/manim-worker"), alias="RENDER_WORK_DIR")
    local_store_dir: Path = Field(Path("/tmp/manim-worker/store"), alias="LOCAL_STORE_DIR")
    local_store_url: str | None = Field(None, alias="LOCAL_STORE_URL")
    max_chunks: int = Field(8, alias="MAX_CHUNKS", ge=1, le=64)
    max_pixels: int = Field(3840 * 2160, alias="MAX_PIXELS", ge=64, le=7680 * 4320)
    max_fps: int = Field(60, alias="MAX_FPS", ge=1, le=240)
    job_dispatch: Literal["auto", "lambda", "local"] = Field("auto", alias="JOB_DISPATCH")
    local_job_workers: int = Field(2, alias="LOCAL_JOB_WORKERS", ge=1, le=16)
    job_stall_seconds: float = Field(60.0, alias="JOB_STALL_SECONDS", ge=5)
    # Lambda's price per GB-second (x86, us-east-1, first tier) and the function's memory, for
    # the estimated cost in `timings` (Lambda sets the memory; 3008 MB elsewhere).
    price_per_gb_second: float = Field(0.0000166667, alias="PRICE_PER_GB_SECOND", ge=0)
    function_memory_mb: int = Field(3008, alias="AWS_LAMBDA_FUNCTION_MEMORY_SIZE", ge=128)
    lambda_endpoint_url: str | None = Field(None, alias="LAMBDA_ENDPOINT_URL")
    function_name: str | None = Field(None, alias="AWS_LAMBDA_FUNCTION_NAME")
    runtime_api: str | None = Field(None, alias="AWS_LAMBDA_RUNTIME_API", repr=False)
    api_token: str | None = Field(None, alias="API_TOKEN", repr=False)
    api_token_parameter: str | None = Field(None, alias="API_TOKEN_PARAMETER")
    webhook_secret: str | None = Field(None, alias="WEBHOOK_SECRET", repr=False)
    webhook_secret_parameter: str | None = Field(None, alias="WEBHOOK_SECRET_PARAMETER")
    service_name: str = Field("manim-worker", alias="POWERTOOLS_SERVICE_NAME")
    metrics_namespace: str = Field("ManimWorker", alias="POWERTOOLS_METRICS_NAMESPACE")
    # Serve the API's contract (`/openapi.json`, Swagger UI at `/swagger`); the local server always does.
    openapi_routes: bool = Field(False, alias="OPENAPI_ROUTES")
    local_port: int = Field(3001, alias="PORT", ge=1, le=65535)
    local_render_uid: int = Field(64999, alias="LOCAL_RENDER_UID", ge=0)
    # The AWS SDK's own: read only to keep a deployment's choice (see `sdk_environment`).
    aws_config_file: str | None = Field(None, alias="AWS_CONFIG_FILE")
    aws_shared_credentials_file: str | None = Field(None, alias="AWS_SHARED_CREDENTIALS_FILE")

    @classmethod
    def from_env(cls) -> Settings:
        """Read the environment; an empty variable counts as unset, as SAM passes empty parameters."""
        aliases = {field.alias for field in cls.model_fields.values()}
        return cls.model_validate({key: value for key, value in os.environ.items() if key in aliases and value})

    def render_deadline(self, remaining_ms: int | None, cancelled: threading.Event | None = None) -> Deadline:
        """When a render started now must be done: after the setting, but never past the
        invocation's deadline less the time kept back for the upload; or once `cancelled`."""
        if remaining_ms is None:
            return Deadline.after(self.render_timeout_seconds or LOCAL_RENDER_TIMEOUT_SECONDS, cancelled)
        budget = remaining_ms / 1000 - self.upload_margin_seconds
        if self.render_timeout_seconds is not None:
            budget = min(budget, self.render_timeout_seconds)
        return Deadline.after(max(budget, Deadline.MIN_SECONDS), cancelled)

    def cost_of(self, seconds: float) -> float:
        """The estimated price of running this function for `seconds`, in US dollars."""
        return seconds * self.function_memory_mb / 1024 * self.price_per_gb_second

    @property
    def dispatches_to_lambda(self) -> bool:
        """Whether async jobs run in invocations of this function (on Lambda, by default)."""
        if self.job_dispatch == "auto":
            return self.runtime_api is not None and self.function_name is not None
        return self.job_dispatch == "lambda"

    @property
    def render_limits(self) -> RenderLimits:
        """What each process of a render may use."""
        return RenderLimits(
            memory_mb=self.render_memory_mb,
            max_output_mb=self.render_max_output_mb,
            max_processes=self.render_max_processes,
            max_open_files=self.render_max_open_files,
        )

    @property
    def request_limits(self) -> RequestLimits:
        return RequestLimits(
            max_code_bytes=self.max_code_bytes,
            max_chunks=self.max_chunks,
            max_pixels=self.max_pixels,
            max_fps=self.max_fps,
            signs_callbacks=bool(self.webhook_secret or self.webhook_secret_parameter),
            runtime_api=self.runtime_api,
        )

    def sdk_environment(self) -> dict[str, str]:
        """On Lambda, the variables that keep the AWS SDK (botocore) from reading any file a
        script can write; nothing elsewhere.

        Scripts run as the handler's user, and can write anywhere it can: all of /tmp, which
        the image makes everyone's HOME. botocore reads `~/.aws/config` and
        `~/.aws/credentials` whenever a client is made (an `endpoint_url` or `ca_bundle` there
        redirects every client made afterwards), and takes service models and endpoint rules
        from `~/.aws/models` before its own. So the config and credentials files are
        `/dev/null` unless the deployment names its own (which it should keep out of /tmp),
        and HOME is `SEALED_HOME`: the render worker gets its own HOME (render/sandbox.py),
        and nothing else in the handler's process needs one. Off Lambda nothing changes, so a
        developer's `~/.aws` profiles keep working for `make serve` and `make run`.
        """
        if self.runtime_api is None:
            return {}
        return {
            "HOME": SEALED_HOME,
            "AWS_CONFIG_FILE": self.aws_config_file or os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": self.aws_shared_credentials_file or os.devnull,
        }


def pin_sdk_configuration() -> None:
    """Apply `Settings.sdk_environment()` to this process. handler/__init__.py calls it, so it
    runs before any module of the handler imports boto3: botocore fixes its path to
    `~/.aws/models` (`Loader.CUSTOMER_DATA_PATH`) from HOME when `botocore.loaders` is
    first imported, and reads the other two variables whenever a client is made."""
    pinned = Settings.from_env().sdk_environment()
    if not pinned:
        return
    os.environ.update(pinned)
    loaders = sys.modules.get("botocore.loaders")
    if loaders is not None:  # imported before the handler (a wrapper, a layer): HOME came too late
        loaders.Loader.CUSTOMER_DATA_PATH = os.path.join(pinned["HOME"], ".aws", "models")
