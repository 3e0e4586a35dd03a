"""The API's contract for clients: the bodies the HTTP routes answer, as pydantic models for
the OpenAPI document Powertools generates from the resolver (`handler.app`), and the JSON
Schema of the direct-invoke events. Both are checked in at the repository's root, and a unit
test fails when they drift from the code; regenerate them with `make openapi`
(`python -m handler.contract`).

These models describe what handler/errors.py, handler/jobs.py and the routes already answer;
nothing validates an answer against them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from handler.callbacks import Delivery
from handler.jobs import Status
from handler.models import DIRECT_INVOKE, CheckResponse, RenderResponse

ROOT = Path(__file__).resolve().parents[1]
OPENAPI_FILE = ROOT / "openapi.json"
DIRECT_INVOKE_FILE = ROOT / "direct-invoke.schema.json"

TITLE = "Manim render worker"
VERSION = "1.0.0"
DESCRIPTION = """Renders Manim scripts to video (MP4, WebM, MOV, GIF) or a still (PNG) and stores \
the result in S3, answering with a presigned URL; synchronously, or as an async job to poll, \
cancel or be called back about.

Every error has the body `{"message": str, "errors": ...}`. Every answer is at most 1 MiB of JSON.

**Authentication.** IAM first: the function URL's `AWS_IAM` auth (and the HTTP API's render \
routes) need requests signed with AWS Signature Version 4 (SigV4, service `lambda` for a \
function URL, `execute-api` for the HTTP API), which OpenAPI cannot describe. A deployment may \
also set a bearer token (`API_TOKEN` or `API_TOKEN_PARAMETER`): then every route but `/health` \
(and `/openapi.json` and `/swagger` where they are served) needs `Authorization: Bearer <token>`, \
and answers 401 without it. Direct invokes (`lambda:InvokeFunction`) carry the events of \
`direct-invoke.schema.json` instead."""

BEARER = "bearerAuth"
BEARER_DESCRIPTION = (
    "The optional API token (`API_TOKEN` or `API_TOKEN_PARAMETER`), needed only where the deployment sets one. "
    "Requests to an `AWS_IAM` function URL are signed with SigV4 instead (or as well)."
)

RENDER_EXAMPLE = {
    "codeContent": (
        "from manim import *\n\nclass MyScene(Scene):\n    def construct(self):\n        self.play(Create(Circle()))"
    ),
    "quality": "-ql",
    "sceneName": "MyScene",
}
ASYNC_EXAMPLE = {**RENDER_EXAMPLE, "async": True, "jobId": "my-render-1"}


class FieldProblem(BaseModel):
    """One thing wrong with a request: where (`["body", "quality"]`, `["job_id"]`), and what."""

    loc: list[str]
    msg: str
    type: str


class ErrorDetails(BaseModel):
    """What went wrong: `type` names it, `class` (failures of a render) says whose fault it is;
    the other fields depend on the type (`limitSeconds`, `limit` and `value`, `tool`,
    `detail`, `status`, `duration`, ...)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type: str
    error_class: str | None = Field(
        None, alias="class", description="script_error, time_limit, resource_limit, cancelled, storage, request or internal"
    )


class ScriptErrorDetails(ErrorDetails):
    """Why the script cannot render (a 422)."""

    message: str | None = None
    line: int | None = None
    traceback: str | None = None
    scenes: list[str] | None = Field(
        None, description="The script's scenes (at most 50), when the scene was ambiguous or unknown"
    )


class ErrorBody(BaseModel):
    """The error shape of every failure."""

    message: str
    errors: ErrorDetails | None = None


class InvalidRequestBody(BaseModel):
    """A 400: the request's problems field by field; or, for a `frameAt` past the scene's
    end, `{"type": "FramePastEnd", "duration", "class": "request"}`."""

    message: str
    errors: list[FieldProblem] | ErrorDetails


class ScriptErrorBody(BaseModel):
    """A 422: the script cannot render; fix it."""

    message: str
    errors: ScriptErrorDetails


class WorkerHealth(BaseModel):
    protections: dict[str, Any]
    tools: dict[str, bool]
    restarts: int


class HealthResponse(BaseModel):
    """`GET /health`."""

    message: str = "Health is OK"
    worker: WorkerHealth


class JobAccepted(BaseModel):
    """An async render's 202."""

    model_config = ConfigDict(populate_by_name=True)

    job_id: str = Field(alias="jobId")
    status: Status
    status_url: str = Field(alias="statusUrl")


class JobStatus(BaseModel):
    """A job's record (`GET /api/render/status/{jobId}`, and the cancel route's 200 and 202)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    job_id: str = Field(alias="jobId")
    status: Status
    created_at: float = Field(alias="createdAt")
    updated_at: float = Field(alias="updatedAt")
    progress: dict[str, Any] | None = Field(
        None, description="animations, frames, totalFrames, percent, etaSeconds; chunks and chunksDone for a chunked render"
    )
    result: RenderResponse | CheckResponse | None = None
    error: dict[str, Any] | None = Field(None, description="What a synchronous request would have answered, with its statusCode")
    callback: Delivery | None = None
    s3_key: str | None = Field(None, alias="s3Key")
    url: str | None = None
    cancel_requested: bool | None = Field(None, alias="cancelRequested", description="In the cancel route's 202")


def _json(content: type[BaseModel], description: str, example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"model": content}
    if example is not None:
        media["examples"] = {"example": {"value": example}}
    return {"description": description, "content": {"application/json": media}}


UNAUTHORIZED = _json(
    ErrorBody,
    "The deployment sets a bearer token and the request lacks it",
    {"message": "Missing or invalid bearer token.", "errors": {"type": "Unauthorized"}},
)
INVALID = _json(
    InvalidRequestBody,
    "The request is invalid",
    {
        "message": "Invalid request.",
        "errors": [{"loc": ["body", "quality"], "msg": "Input should be '-ql', ...", "type": "literal_error"}],
    },
)
JOB_NOT_FOUND = _json(ErrorBody, "No such job", {"message": "No job 'abc'.", "errors": {"type": "JobNotFound"}})
INTERNAL = _json(ErrorBody, "A fault of ours (RendererFailed, ToolMissing, ChunksOverdue, InternalError)")
STORAGE = _json(
    ErrorBody,
    "The store (S3) could not be reached",
    {"message": "...", "errors": {"type": "StorageError", "detail": "...", "class": "storage"}},
)

RENDER_RESPONSES: dict[int, Any] = {
    200: {
        "description": "The video (or, with `dryRun`, the check's answer)",
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [{"$ref": "#/components/schemas/RenderResponse"}, {"$ref": "#/components/schemas/CheckResponse"}]
                }
            }
        },
    },
    202: _json(
        JobAccepted,
        "With `async`: the job, to poll",
        {"jobId": "my-render-1", "status": "queued", "statusUrl": "https://.../api/render/status/my-render-1"},
    ),
    400: INVALID,
    401: UNAUTHORIZED,
    408: _json(
        ErrorBody,
        "The render ran past its time limit",
        {"message": "...", "errors": {"type": "TimeLimitExceeded", "limitSeconds": 30, "class": "time_limit"}},
    ),
    413: _json(
        ErrorBody,
        "The render went past a resource limit",
        {
            "message": "...",
            "errors": {"type": "ResourceLimitExceeded", "limit": "memory", "value": 2048, "class": "resource_limit"},
        },
    ),
    422: _json(
        ScriptErrorBody,
        "The script cannot render",
        {
            "message": "The script could not be rendered: NameError: name 'x' is not defined",
            "errors": {
                "type": "NameError",
                "message": "NameError: name 'x' is not defined",
                "line": 8,
                "traceback": "...",
                "class": "script_error",
            },
        },
    ),
    500: INTERNAL,
    502: _json(
        ErrorBody,
        "The video was rendered but could not be stored",
        {
            "message": "The video was rendered but could not be stored.",
            "errors": {"type": "StorageError", "detail": "...", "class": "storage"},
        },
    ),
}
STATUS_RESPONSES: dict[int, Any] = {
    200: _json(JobStatus, "The job's record"),
    400: INVALID,
    401: UNAUTHORIZED,
    404: JOB_NOT_FOUND,
    500: INTERNAL,
    502: STORAGE,
}
CANCEL_RESPONSES: dict[int, Any] = {
    200: _json(JobStatus, "The job was queued and is now cancelled"),
    202: _json(JobStatus, "The job is running and stops within about a second (`cancelRequested`)"),
    400: INVALID,
    401: UNAUTHORIZED,
    404: JOB_NOT_FOUND,
    409: _json(
        ErrorBody,
        "The job has already ended",
        {"message": "Job 'abc' has already ended: succeeded.", "errors": {"type": "JobEnded", "status": "succeeded"}},
    ),
    500: INTERNAL,
    502: STORAGE,
}
HEALTH_RESPONSES: dict[int, Any] = {200: _json(HealthResponse, "The worker is up"), 500: INTERNAL}

# The request body, which the render route reads itself (its validation needs the deployment's limits).
RENDER_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/RenderRequest"},
                "examples": {
                    "render": {"summary": "Render a scene", "value": RENDER_EXAMPLE},
                    "async": {"summary": "Render as a job to poll", "value": ASYNC_EXAMPLE},
                },
            }
        },
    },
}


_REF = "#/components/schemas/"
_POWERTOOLS_422 = f"{_REF}HTTPValidationError"


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of `handler.app`'s routes, as Powertools generates it."""
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    from handler.app import app
    from handler.models import RenderRequest

    schema = app.get_openapi_schema(
        title=TITLE,
        version=VERSION,
        description=DESCRIPTION,
        security_schemes={BEARER: HTTPBearer(description=BEARER_DESCRIPTION)},
        security=[{BEARER: []}, {}],
    )
    document: dict[str, Any] = json.loads(schema.model_dump_json(by_alias=True, exclude_none=True))
    schemas = document["components"]["schemas"]
    schemas["RenderRequest"] = RenderRequest.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    # Powertools gives every route its default 422 (HTTPValidationError) when validation is on;
    # this API answers an invalid request 400 (declared by each route), and 422 only for a
    # script that cannot render. So the default goes, and the bodies nothing refers to now.
    for operations in document["paths"].values():
        for operation in operations.values():
            answers = operation["responses"]
            if _POWERTOOLS_422 in json.dumps(answers.get("422", {})):
                del answers["422"]
    for unused in ("ResponseValidationError", "HTTPValidationError", "ValidationError"):
        others = {name: schema for name, schema in schemas.items() if name != unused}
        if f'"{_REF}{unused}"' not in json.dumps([document["paths"], others]):
            schemas.pop(unused, None)
    return document


def direct_invoke_schema() -> dict[str, Any]:
    """The JSON Schema of a direct invoke's event (`handler.models.DIRECT_INVOKE`)."""
    schema = DIRECT_INVOKE.json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Direct invoke event", **schema}


def dumps(document: dict[str, Any]) -> str:
    """The checked-in form of a document."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    """Write openapi.json and direct-invoke.schema.json at the repository's root."""
    OPENAPI_FILE.write_text(dumps(openapi_document()), encoding="utf-8")
    DIRECT_INVOKE_FILE.write_text(dumps(direct_invoke_schema()), encoding="utf-8")
    print(f"Wrote {OPENAPI_FILE.name} and {DIRECT_INVOKE_FILE.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
