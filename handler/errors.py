"""How each failure reaches the caller: one status and one seed-shaped body per kind.

`{"message": str, "errors": ...}` everywhere; 4xx bodies never carry our stack traces.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from handler.storage import StorageError
from render import RenderError, RenderTimeout, ResourceLimitExceeded, ScriptError, ToolMissing

INVALID_REQUEST = 400
UNAUTHORIZED = 401
NOT_FOUND = 404
RENDER_TIME_LIMIT = 408
RENDER_RESOURCE_LIMIT = 413
SCRIPT_ERROR = 422
INTERNAL_ERROR = 500
STORAGE_ERROR = 502


class ChunkFailed(RenderError):
    """A piece of a fanned-out render failed as the whole render would have; its status and
    body are the answer."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(answer.get("message") or "A chunk failed.")
        self.status = int(answer["statusCode"])
        self.body = {"message": answer.get("message"), "errors": answer.get("errors")}


def error_body(message: str, errors: Any = None) -> dict[str, Any]:
    """The seed's error shape."""
    return {"message": message, "errors": errors}


def validation_problem(errors: Iterable[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """A request that is malformed or invalid: where, and what is wrong, field by field.

    The offending input is not echoed back (it may be 100 KiB of code).
    """
    fields = [
        {"loc": [str(part) for part in error.get("loc", ())], "msg": error.get("msg", ""), "type": error.get("type", "")}
        for error in errors
    ]
    if any(field["type"] == "json_invalid" for field in fields):
        return INVALID_REQUEST, error_body("The request body is not valid JSON.", fields)
    return INVALID_REQUEST, error_body("Invalid request.", fields)


def render_problem(error: RenderError) -> tuple[int, dict[str, Any]]:
    """A render that ended without a video."""
    if isinstance(error, ScriptError):
        return SCRIPT_ERROR, error_body(f"The script could not be rendered: {error.message}", error.details())
    if isinstance(error, RenderTimeout):
        return RENDER_TIME_LIMIT, error_body(str(error), error.details())
    if isinstance(error, ResourceLimitExceeded):
        return RENDER_RESOURCE_LIMIT, error_body(str(error), error.details())
    if isinstance(error, ToolMissing):  # retrying will not install it: say what is missing
        return INTERNAL_ERROR, error_body(str(error), error.details())
    return INTERNAL_ERROR, error_body("The renderer failed; this is our fault, please try again.", error.details())


def storage_problem(error: StorageError) -> tuple[int, dict[str, Any]]:
    """The video was made but could not be stored."""
    return STORAGE_ERROR, error_body(
        "The video was rendered but could not be stored.", {"type": "StorageError", "detail": str(error)}
    )


def error_class(error: BaseException) -> str:
    """The class a failure is counted under, the same in responses, job records and metrics."""
    if isinstance(error, ChunkFailed):
        return str((error.body.get("errors") or {}).get("class", "internal"))
    if isinstance(error, ScriptError):
        return "script_error"
    if isinstance(error, RenderTimeout):
        return "time_limit"
    if isinstance(error, ResourceLimitExceeded):
        return "resource_limit"
    if isinstance(error, StorageError):
        return "storage"
    return "internal"


def problem(error: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and body for any failure of a render request, with its class in `errors`."""
    if isinstance(error, ChunkFailed):
        return error.status, error.body  # the piece's own answer, passed on as it is
    if isinstance(error, RenderError):
        status, body = render_problem(error)
    elif isinstance(error, StorageError):
        status, body = storage_problem(error)
    else:
        status, body = INTERNAL_ERROR, error_body("The worker failed; this is our fault.", {"type": "InternalError"})
    body["errors"] = {**body["errors"], "class": error_class(error)}
    return status, body
