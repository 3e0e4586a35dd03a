"""How each failure reaches the caller: one status, one error class and one seed-shaped body
per kind, from one table, the same for HTTP answers, direct invokes, job records and metrics.

`{"message": str, "errors": ...}` everywhere; 4xx bodies never carry our stack traces. Every
answer is bounded (`MAX_ANSWER_BYTES`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from handler.observability import logger, record_failure
from handler.settings import Settings
from handler.storage import StorageError
from render import FramePastEnd, RenderCancelled, RenderError, RenderTimeout, ResourceLimitExceeded, ScriptError, ToolMissing

INVALID_REQUEST = 400
UNAUTHORIZED = 401
NOT_FOUND = 404
CONFLICT = 409
INTERNAL_ERROR = 500

# The error of a job or range whose invocation ended without an answer.
LOST = {
    "message": "The render's invocation ended without an answer (it died, timed out or never ran); it was given up.",
    "errors": {"type": "InvocationLost", "class": "lost"},
}

MAX_ANSWER_BYTES = 1024 * 1024
"""The largest answer the handler gives, as JSON: an HTTP response, a direct invoke's result,
and any failure's body (which job records and chunk markers keep, and status answers return).

Lambda refuses a response over 6 MB: the caller would get `ResponseSizeTooLarge` instead of
our answer. Everything a script can put into an answer is bounded well below this (the
worker's error texts to 4000 characters, scene lists to 50 names), so an answer over it is a
fault of ours: it is replaced by the 500 body, and logged."""


@dataclass(frozen=True)
class Problem:
    """A failure as the caller sees it."""

    status: int
    body: dict[str, Any]

    @property
    def error_class(self) -> str:
        """The class it is counted under: script_error, time_limit, resource_limit, storage, internal."""
        return str((self.body.get("errors") or {}).get("class", "internal"))

    def answer(self) -> dict[str, Any]:
        """The direct invoke's result: the body with its status."""
        return {"statusCode": self.status, **self.body}


class ChunkFailed(Exception):
    """A range rendered by another invocation failed as the whole render would have; that
    invocation's answer is this render's answer."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.body.get("message") or "A chunk failed.")
        self.problem = problem


class ChunksOverdue(Exception):
    """A range sent to another invocation did not come back before the render's deadline."""


class AnswerTooLarge(Exception):
    """An answer would have been over `MAX_ANSWER_BYTES`; answered as a fault of ours."""


def answer_size(answer: Any) -> int:
    """The size of `answer` as JSON, escaped as ASCII: never less than the UTF-8 Lambda sends."""
    return len(json.dumps(answer, default=str))


def check_size(answer: Any) -> None:
    """Raise AnswerTooLarge if `answer` is over `MAX_ANSWER_BYTES` as JSON."""
    size = answer_size(answer)
    if size > MAX_ANSWER_BYTES:
        raise AnswerTooLarge(f"An answer of {size} bytes is over the limit of {MAX_ANSWER_BYTES} bytes.")


def error_body(message: str, errors: Any = None) -> dict[str, Any]:
    """The seed's error shape."""
    return {"message": message, "errors": errors}


def validation_problem(errors: Iterable[Any]) -> Problem:
    """A request that is malformed or invalid: where, and what is wrong, field by field.

    The offending input is not echoed back (it may be 100 KiB of code).
    """
    fields = [
        {"loc": [str(part) for part in error.get("loc", ())], "msg": error.get("msg", ""), "type": error.get("type", "")}
        for error in errors
    ]
    if any(field["type"] == "json_invalid" for field in fields):
        return Problem(INVALID_REQUEST, error_body("The request body is not valid JSON.", fields))
    return Problem(INVALID_REQUEST, error_body("Invalid request.", fields))


# The setting behind each resource limit, named in the answer so an operator knows what to raise.
_LIMIT_SETTINGS = {
    limit: Settings.model_fields[field].alias
    for limit, field in {
        "memory": "render_memory_mb",
        "cpu": "render_timeout_seconds",
        "output": "render_max_output_mb",
        "processes": "render_max_processes",
        "open_files": "render_max_open_files",
    }.items()
}


def _script(error: ScriptError) -> tuple[str, dict[str, Any]]:
    return f"The script could not be rendered: {error.message}", error.details()


def _limit(error: ResourceLimitExceeded) -> tuple[str, dict[str, Any]]:
    return error.describe(_LIMIT_SETTINGS.get(error.limit)), error.details()


def _said(error: RenderError) -> tuple[str, dict[str, Any]]:
    return str(error), error.details()


def _renderer(error: RenderError) -> tuple[str, dict[str, Any]]:
    return "The renderer failed; this is our fault, please try again.", error.details()


def _overdue(error: ChunksOverdue) -> tuple[str, dict[str, Any]]:
    return "The renderer failed; this is our fault, please try again.", {"type": "ChunksOverdue", "detail": str(error)}


def _storage(error: StorageError) -> tuple[str, dict[str, Any]]:
    return "The video was rendered but could not be stored.", {"type": "StorageError", "detail": str(error)}


def _ours(_error: BaseException) -> tuple[str, dict[str, Any]]:
    return "The worker failed; this is our fault.", {"type": "InternalError"}


# Exception -> (status, error class, message and details), the first matching row wins.
_FAILURES: tuple[tuple[type[BaseException], int, str, Callable[[Any], tuple[str, dict[str, Any]]]], ...] = (
    (ScriptError, 422, "script_error", _script),
    (FramePastEnd, 400, "request", _said),
    (RenderTimeout, 408, "time_limit", _said),
    (RenderCancelled, CONFLICT, "cancelled", _said),
    (ResourceLimitExceeded, 413, "resource_limit", _limit),
    (ToolMissing, INTERNAL_ERROR, "internal", _said),  # retrying will not install it: say what is missing
    (RenderError, INTERNAL_ERROR, "internal", _renderer),
    (ChunksOverdue, INTERNAL_ERROR, "internal", _overdue),
    (StorageError, 502, "storage", _storage),
    (BaseException, INTERNAL_ERROR, "internal", _ours),
)


def problem(error: BaseException) -> Problem:
    """The status and body for any failure of a render request, with its class in `errors`;
    one over `MAX_ANSWER_BYTES` is answered as a fault of ours instead."""
    if isinstance(error, ChunkFailed):
        found = error.problem  # the range's own answer, passed on as it is
    else:
        status, error_class, describe = next(
            (status, error_class, describe) for kind, status, error_class, describe in _FAILURES if isinstance(error, kind)
        )
        message, details = describe(error)
        found = Problem(status, error_body(message, {**details, "class": error_class}))
    size = answer_size(found.body)
    if size > MAX_ANSWER_BYTES:
        logger.error("Failure body over the answer limit", extra={"status": found.status, "bytes": size})
        return problem(AnswerTooLarge(f"A {found.status} body of {size} bytes is over the limit of {MAX_ANSWER_BYTES} bytes."))
    return found


def failure(error: BaseException) -> Problem:
    """`problem(error)`, counted in the `Failures` metric by class, and logged with its
    traceback when it is a fault of ours."""
    found = problem(error)
    record_failure(found.error_class)
    if found.status >= 500:
        logger.error("Request failed", exc_info=error)
    return found
