"""What callers send and receive: the render API's bodies (seed-compatible, extended), and the
events a direct invoke may carry, each named by its `action` (a render request has none)."""

from __future__ import annotations

import keyword
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from handler.callbacks import check_url
from handler.settings import RequestLimits
from render import QUALITY_PRESETS, Output

# Each format, and whether it can carry an alpha channel (`transparent`) and needs a frame of
# even width and height (its codec's 4:2:0 chroma, or ProRes).
FORMATS = {"mp4": (False, True), "webm": (True, True), "gif": (False, False), "mov": (True, True), "png": (True, False)}

Quality = Literal["-ql", "-qm", "-qh", "-qp", "-qk"]
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
JobId = Annotated[str, Field(pattern=JOB_ID_PATTERN, strict=True)]


def _limits(info: ValidationInfo) -> RequestLimits:
    """The deployment's limits, which every validation of a request must be given."""
    limits = (info.context or {}).get("limits")
    if not isinstance(limits, RequestLimits):
        raise TypeError("a RenderRequest is validated with context={'limits': RequestLimits(...)}")
    return limits


class RenderRequest(BaseModel):
    """`POST /api/render`, or a direct invoke's event. Unknown fields are ignored.

    Validate it with `context={"limits": settings.request_limits}`."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    code_content: str = Field(alias="codeContent", min_length=1, strict=True)
    quality: Quality = "-qm"
    scene_name: str | None = Field(None, alias="sceneName", strict=True)
    cache: bool = Field(True, strict=True)
    run_async: bool = Field(False, alias="async", strict=True)
    job_id: JobId | None = Field(None, alias="jobId")
    callback_url: str | None = Field(None, alias="callbackUrl", strict=True, max_length=2048)
    chunks: Annotated[int, Field(ge=1, strict=True)] | Literal["auto"] = 1
    format: Literal["mp4", "webm", "gif", "mov", "png"] | None = None
    transparent: bool = Field(False, strict=True)
    resolution: tuple[Annotated[int, Field(ge=16, strict=True)], Annotated[int, Field(ge=16, strict=True)]] | None = None
    fps: Annotated[int, Field(ge=1, strict=True)] | None = None
    background_color: Annotated[str, Field(pattern=r"^#[0-9A-Fa-f]{6}$")] | None = Field(None, alias="backgroundColor")
    dry_run: bool = Field(False, alias="dryRun", strict=True)
    frame_at: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(None, alias="frameAt")

    @model_validator(mode="after")
    def _output_is_possible(self, info: ValidationInfo) -> RenderRequest:
        limits = _limits(info)
        alpha, even = FORMATS[self.format or "mp4"]
        if self.transparent and not alpha:
            raise ValueError(f"transparent needs format webm, mov or png, not {self.format or 'mp4'}")
        width, height, _ = self.size()
        if width * height > limits.max_pixels:
            raise ValueError(f"resolution {width}x{height} is over {limits.max_pixels} pixels a frame (MAX_PIXELS)")
        if even and (width % 2 or height % 2):
            raise ValueError(f"format {self.format or 'mp4'} needs an even width and height, not {width}x{height}")
        if self.fps is not None and self.fps > limits.max_fps:
            raise ValueError(f"fps is at most {limits.max_fps} (MAX_FPS)")
        if self.frame_at is not None and self.format != "png":
            raise ValueError("frameAt needs format png: it answers one frame, as a still")
        return self

    def size(self) -> tuple[int, int, int]:
        """The frame's width and height, and the frame rate: as asked, else the quality's."""
        width, height, fps = QUALITY_PRESETS[self.quality]
        if self.resolution is not None:
            width, height = self.resolution
        return width, height, self.fps or fps

    def output(self) -> Output:
        """What render/ is asked to write."""
        width, height = self.resolution or (None, None)
        return Output(
            format=self.format,
            transparent=self.transparent,
            width=width,
            height=height,
            fps=self.fps,
            background=self.background_color,
        )

    @field_validator("chunks")
    @classmethod
    def _within_chunk_limit(cls, chunks: int | str, info: ValidationInfo) -> int | str:
        limit = _limits(info).max_chunks
        if isinstance(chunks, int) and chunks > limit:
            raise ValueError(f"at most {limit} chunks (MAX_CHUNKS)")
        return chunks

    @field_validator("code_content")
    @classmethod
    def _within_size_limit(cls, code: str, info: ValidationInfo) -> str:
        limit = _limits(info).max_code_bytes
        size = len(code.encode("utf-8"))
        if size > limit:
            raise ValueError(f"code is {size} bytes; the limit is {limit} bytes (MAX_CODE_BYTES)")
        return code

    @field_validator("callback_url")
    @classmethod
    def _callback_can_be_made(cls, url: str | None, info: ValidationInfo) -> str | None:
        """Only a job calls back, always signed, and never where handler.callbacks refuses."""
        if url is None:
            return None
        if not info.data.get("run_async"):
            raise ValueError("callbackUrl needs async: true (a synchronous request is answered with the result itself)")
        limits = _limits(info)
        if not limits.signs_callbacks:
            raise ValueError(
                "callbackUrl cannot be used: this deployment has no webhook secret to sign callbacks with "
                "(WEBHOOK_SECRET or WEBHOOK_SECRET_PARAMETER)"
            )
        check_url(url, limits.runtime_api)
        return url

    @field_validator("scene_name")
    @classmethod
    def _is_class_name(cls, name: str | None) -> str | None:
        if name is not None and (not name.isidentifier() or keyword.iskeyword(name)):
            raise ValueError("sceneName must be a Python class name")
        return name

    @staticmethod
    def asking_for(output: Output) -> dict[str, Any]:
        """The request fields that ask for `output`: the inverse of `output()`."""
        fields: dict[str, Any] = {
            "format": output.format,
            "transparent": output.transparent or None,
            "resolution": [output.width, output.height] if output.width and output.height else None,
            "fps": int(output.fps) if output.fps is not None else None,
            "backgroundColor": output.background,
        }
        return {name: value for name, value in fields.items() if value is not None}

    def stored(self) -> dict[str, Any]:
        """The request as kept for a later invocation to run (a job, a chunk); a job keeps its
        callback URL in its record (`callback`)."""
        return self.model_dump(by_alias=True, exclude={"run_async", "job_id", "callback_url"})


class Timings(BaseModel):
    """Seconds spent in each step of the request."""

    model_config = ConfigDict(populate_by_name=True)

    plan_seconds: float = Field(0.0, alias="planSeconds")
    render_seconds: float = Field(alias="renderSeconds")  # a chunked render's join included
    join_seconds: float = Field(0.0, alias="joinSeconds")
    upload_seconds: float = Field(alias="uploadSeconds")
    total_seconds: float = Field(alias="totalSeconds")
    # This invocation's time and its chunk invocations', as Lambda bills them, and their price
    # at the deployment's `PRICE_PER_GB_SECOND` (requests' own charge left out).
    billed_seconds: float = Field(0.0, alias="billedSeconds")
    estimated_cost_usd: float = Field(0.0, alias="estimatedCostUsd")


class RenderResponse(BaseModel):
    """The seed's `message` and `s3Key`, plus where the video is and how it was made."""

    model_config = ConfigDict(populate_by_name=True)

    message: str = "Video created and uploaded successfully."
    s3_key: str = Field(alias="s3Key")
    bucket: str
    url: str
    scene_name: str = Field(alias="sceneName")
    quality: Quality
    format: str = "mp4"  # png too for a scene without animation, stored as its last frame
    width: int
    height: int
    fps: int
    frames: int | None = None  # in the video; 1 for a still; None for a cache hit
    cached: bool
    chunks: int = 1
    timings: Timings

    def body(self) -> dict[str, object]:
        """The JSON body, with the API's field names."""
        return self.model_dump(mode="json", by_alias=True)


class CheckResponse(BaseModel):
    """A dry run's answer (`dryRun`): the script runs, and its scene is this long. Nothing was
    drawn, encoded or stored but this answer, kept for an identical check."""

    model_config = ConfigDict(populate_by_name=True)

    message: str = "The script runs; nothing was rendered."
    scene_name: str = Field(alias="sceneName")
    quality: Quality
    duration: float  # seconds
    frames: int
    animations: int  # its `play` and `wait` calls
    cached: bool
    check_seconds: float = Field(alias="checkSeconds")

    def body(self) -> dict[str, object]:
        """The JSON body, with the API's field names."""
        return self.model_dump(mode="json", by_alias=True)


# Direct invokes other than a render. Every action name the function answers is here.


class _Event(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    def payload(self) -> dict[str, Any]:
        """The event as sent to an invocation."""
        return self.model_dump(mode="json", by_alias=True)


class StatusEvent(_Event):
    """`{"action": "status", "jobId": ...}`: a job's status, as `GET /api/render/status/{jobId}`."""

    action: Literal["status"] = "status"
    job_id: JobId = Field(alias="jobId")


class CancelEvent(_Event):
    """`{"action": "cancel", "jobId": ...}`: stop a job, as `POST /api/render/cancel/{jobId}`."""

    action: Literal["cancel"] = "cancel"
    job_id: JobId = Field(alias="jobId")


class RunJobEvent(_Event):
    """This function's own invocation that runs an async job."""

    action: Literal["runJob"] = "runJob"
    job_id: JobId = Field(alias="jobId")


_Count = Annotated[int, Field(ge=0, strict=True)]


class RenderChunkEvent(_Event):
    """This function's own invocation that renders one range of a chunked render; the
    request it belongs to is stored under the group's prefix."""

    action: Literal["renderChunk"] = "renderChunk"
    group: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$", strict=True)]
    index: Annotated[int, Field(ge=0, strict=True)]
    # The range's first position and the one it stops before: [animation, frame] each.
    start: tuple[_Count, _Count]
    end: tuple[_Count, _Count]


class InvocationFailedEvent(_Event):
    """What Lambda sends an asynchronous invocation's failure destination (the template makes
    it this function) when one of this function's own invocations failed, timed out or aged
    out in the queue: the event it was sent, and why (`requestContext.condition`)."""

    request_payload: dict[str, Any] = Field(alias="requestPayload")
    request_context: dict[str, Any] = Field(alias="requestContext")


def _action(event: Any) -> str | None:
    if not isinstance(event, dict):
        return None
    if "requestPayload" in event and isinstance(event.get("requestContext"), dict):
        return "invocationFailed"
    return event.get("action", "render") if isinstance(event.get("action", "render"), str) else None


DirectInvoke = Annotated[
    Annotated[RenderRequest, Tag("render")]
    | Annotated[StatusEvent, Tag("status")]
    | Annotated[CancelEvent, Tag("cancel")]
    | Annotated[RunJobEvent, Tag("runJob")]
    | Annotated[RenderChunkEvent, Tag("renderChunk")]
    | Annotated[InvocationFailedEvent, Tag("invocationFailed")],
    Discriminator(_action, custom_error_type="invalid_action", custom_error_message="Unknown or missing action"),
]
DIRECT_INVOKE: TypeAdapter[DirectInvoke] = TypeAdapter(DirectInvoke)


def event_errors(error: ValidationError) -> list[dict[str, Any]]:
    """A direct invoke's validation errors, each located in the event as sent (pydantic
    puts the event's action first)."""
    return [{**found, "loc": found["loc"][1:]} for found in error.errors()]
