"""The Lambda handler: function URL and HTTP API events through Powertools' resolver, and
direct invokes.

Client errors come back as answers (a status and the seed's error body); faults of our
own (storage down, a broken renderer) are raised on a direct invoke, so that Lambda's
retries and failure destinations apply, and answered 5xx over HTTP. Over HTTP every
exception is caught at the edge: whatever the error table does not name is the API's own
500 body, never a Lambda error carrying our stack. Every answer is bounded
(`handler.errors.MAX_ANSWER_BYTES`).
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import json
import uuid
from pathlib import Path
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from aws_lambda_powertools.event_handler.openapi import swagger_ui
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from handler import contract
from handler.auth import presents_token
from handler.environment import Environment, current_environment
from handler.errors import (
    NOT_FOUND,
    UNAUTHORIZED,
    AnswerTooLarge,
    ChunkFailed,
    ChunksOverdue,
    check_size,
    error_body,
    failure,
    validation_problem,
)
from handler.fanout import give_up_range, render_chunk
from handler.jobs import cancel_job, create_job, give_up, given_up_if_stalled, load_job, run_job, status_body
from handler.models import (
    DIRECT_INVOKE,
    JOB_ID_PATTERN,
    CancelEvent,
    InvocationFailedEvent,
    RenderChunkEvent,
    RenderRequest,
    RunJobEvent,
    StatusEvent,
    event_errors,
)
from handler.observability import logger, metrics, tracer
from handler.pipeline import render_and_store
from handler.settings import Settings
from handler.storage import StorageError
from render import RenderError

# Function URL and HTTP API (payload 2.0) events share one format, so one resolver serves both.
app = APIGatewayHttpResolver(enable_validation=True)

# Routes anyone may call, token or not.
OPEN_ROUTES = frozenset({"/health"})
# The contract's routes (`OPENAPI_ROUTES`, the local server always): open too where served,
# answered 404 elsewhere. Swagger UI's script and style are Powertools' own copies, served here.
SWAGGER_ASSETS = Path(swagger_ui.__file__).parent
SWAGGER_FILES = {"swagger-ui-bundle.min.js": "text/javascript", "swagger-ui.min.css": "text/css"}
CONTRACT_ROUTES = frozenset({"/openapi.json", "/swagger", *(f"/swagger/{name}" for name in SWAGGER_FILES)})
ACCEPTED = 202
# Failures of a render: a direct invoke answers those of the caller, and raises ours.
_RENDER_FAILURES = (RenderError, StorageError, ChunkFailed, ChunksOverdue)


def _remaining_ms(context: LambdaContext | None) -> int | None:
    return context.get_remaining_time_in_millis() if context else None


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(status_code=status, content_type="application/json", body=body)


def _http_answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A function URL / HTTP API response made outside the resolver."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def _body(event: APIGatewayProxyEventV2) -> bytes:
    """The request's body as sent (function URLs base64-encode it)."""
    body = event.body or ""
    return base64.b64decode(body) if event.is_base64_encoded else body.encode()


def submit_job(environment: Environment, request: RenderRequest, job_id: str | None) -> dict[str, Any]:
    """Create the job (or find the one with that id) and start it; the 202 body's essentials."""
    job_id = job_id or uuid.uuid4().hex
    logger.thread_safe_append_keys(job_id=job_id)
    record, created = create_job(environment.storage, request, job_id)
    if created:
        environment.dispatcher.submit(job_id)
    return {"jobId": record.job_id, "status": record.status}


def idempotent_job_id(request: RenderRequest, headers: dict[str, str]) -> str | None:
    """The caller's `jobId`, or one derived from its `Idempotency-Key` header."""
    key = headers.get("idempotency-key")
    if request.job_id or not key:
        return request.job_id
    return "idem-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def _status(environment: Environment, job_id: str) -> tuple[int, dict[str, Any]]:
    storage = environment.storage
    record = load_job(storage, job_id)
    if record is None:
        return NOT_FOUND, error_body(f"No job {job_id!r}.", {"type": "JobNotFound"})
    return 200, status_body(given_up_if_stalled(environment, record), storage)


def _invocation_failed(environment: Environment, event: InvocationFailedEvent) -> dict[str, Any]:
    """Lambda's record of one of this function's own invocations that failed: its job, or its
    range, is given up as lost. Anything else it names is only logged (never raised: the
    failure destination is this function, and a failure here would come back to it)."""
    logger.warning("An invocation of this function failed", extra={"condition": event.request_context.get("condition")})
    try:
        failed = DIRECT_INVOKE.validate_python(event.request_payload, context={"limits": environment.settings.request_limits})
        if isinstance(failed, RunJobEvent):
            give_up(environment, failed.job_id)
        elif isinstance(failed, RenderChunkEvent):
            give_up_range(environment.storage, failed)
    except Exception:
        logger.exception("Could not record the failed invocation")
    return {"recorded": True}


@app.get(
    "/health", responses=contract.HEALTH_RESPONSES, openapi_extensions={"security": []}, tags=["health"], summary="Worker health"
)
def health() -> dict[str, Any]:
    worker = current_environment().start_worker()
    return {
        "message": "Health is OK",
        "worker": {"protections": worker.protections, "tools": worker.tools, "restarts": worker.restarts},
    }


@app.post(
    "/api/render",
    responses=contract.RENDER_RESPONSES,
    openapi_extensions=contract.RENDER_REQUEST_BODY,
    tags=["render"],
    summary="Render a scene",
)
def render_route() -> Response[dict[str, Any]]:
    environment = current_environment()
    event = app.current_event
    try:
        request = RenderRequest.model_validate_json(_body(event), context={"limits": environment.settings.request_limits})
    except ValidationError as error:  # located as the resolver locates a route's errors: in the body
        invalid = validation_problem({**found, "loc": ("body", *found["loc"])} for found in error.errors())
        return _json(invalid.status, invalid.body)
    if not request.run_async:
        body = render_and_store(environment, request, _remaining_ms(app.lambda_context)).body()
        return _json(200, body)
    host = event.headers.get("host") or event.request_context.domain_name
    base = f"{event.headers.get('x-forwarded-proto', 'http')}://{host}"
    accepted = submit_job(environment, request, idempotent_job_id(request, dict(event.headers)))
    return _json(ACCEPTED, {**accepted, "statusUrl": f"{base}/api/render/status/{accepted['jobId']}"})


@app.get("/api/render/status/<job_id>", responses=contract.STATUS_RESPONSES, tags=["jobs"], summary="An async job's record")
def job_status(job_id: Annotated[str, PathParam(pattern=JOB_ID_PATTERN)]) -> Response[dict[str, Any]]:
    return _json(*_status(current_environment(), job_id))


@app.post("/api/render/cancel/<job_id>", responses=contract.CANCEL_RESPONSES, tags=["jobs"], summary="Cancel an async job")
def job_cancel(job_id: Annotated[str, PathParam(pattern=JOB_ID_PATTERN)]) -> Response[dict[str, Any]]:
    return _json(*cancel_job(current_environment(), job_id))


def _route_missing() -> Response[Any]:
    return _json(NOT_FOUND, error_body(f"No route for {app.current_event.http_method} {app.current_event.path}."))


@functools.cache
def _openapi_json() -> str:
    return json.dumps(contract.openapi_document())


@functools.cache
def _swagger_asset(name: str) -> bytes:
    """One of Swagger UI's files, gzipped: the script is 1.5 MB as it is, over the answer limit
    (`MAX_ANSWER_BYTES`), and 0.4 MB gzipped (0.55 MB once base64-encoded for Lambda)."""
    return gzip.compress((SWAGGER_ASSETS / name).read_bytes(), mtime=0)


@app.get("/openapi.json", include_in_schema=False)
def openapi_route() -> Response[Any]:
    if not current_environment().settings.openapi_routes:
        return _route_missing()
    return Response(status_code=200, content_type="application/json", body=_openapi_json())


@app.get("/swagger", include_in_schema=False)
def swagger_route() -> Response[Any]:
    """Swagger UI (Powertools' page and files), showing `/openapi.json`'s document."""
    if not current_environment().settings.openapi_routes:
        return _route_missing()
    if (app.current_event.query_string_parameters or {}).get("format") == "json":
        return Response(status_code=200, content_type="application/json", body=_openapi_json())
    script, style = (f"/swagger/{name}" for name in SWAGGER_FILES)
    page = swagger_ui.generate_swagger_html(_openapi_json().replace("</", "<\\/"), script, style, "/swagger", None)
    return Response(status_code=200, content_type="text/html", body=page)


# No return annotation, deliberately: Powertools would validate (and so decode) the gzipped body.
@app.get("/swagger/<name>", include_in_schema=False)
def swagger_file(name: str):  # type: ignore[no-untyped-def]
    if not current_environment().settings.openapi_routes or name not in SWAGGER_FILES:
        return _route_missing()
    return Response(
        status_code=200,
        content_type=SWAGGER_FILES[name],
        body=_swagger_asset(name),
        headers={"Content-Encoding": "gzip", "Cache-Control": "public, max-age=86400"},
    )


@app.exception_handler(RequestValidationError)
def _invalid_path(error: RequestValidationError) -> Response:
    found = validation_problem(error.errors())
    return _json(found.status, found.body)


@app.exception_handler(Exception)
def _failed(error: Exception) -> Response:
    """Whatever a route raised, answered from the error table: a render's failure by its own
    row, anything unexpected by the last, the API's own 500 body (logged with its traceback,
    never shown). Powertools' own HTTP errors keep the status it gives them."""
    if isinstance(error, ServiceError):
        raise error
    found = failure(error)
    return _json(found.status, found.body)


@app.not_found
def _not_found(_: Exception) -> Response:
    return _route_missing()


def is_http_event(event: Any) -> bool:
    """Function URL and HTTP API events carry `requestContext.http`; direct invokes do not."""
    return isinstance(event, dict) and isinstance(event.get("requestContext"), dict) and "http" in event["requestContext"]


def unauthorized(environment: Environment, event: dict[str, Any]) -> dict[str, Any] | None:
    """With a token configured, the 401 answer for an HTTP event that lacks it, else None.

    Checked before the resolver runs, so that an unauthenticated caller learns nothing from
    validation errors; direct invokes are authorised by IAM alone and never come here.
    """
    request = APIGatewayProxyEventV2(event)
    if request.raw_path in OPEN_ROUTES or (environment.settings.openapi_routes and request.raw_path in CONTRACT_ROUTES):
        return None
    expected = environment.token.value()
    if expected is None or presents_token(request.headers, expected):
        return None
    body = error_body("Missing or invalid bearer token.", {"type": "Unauthorized"})
    return _http_answer(UNAUTHORIZED, body, {"WWW-Authenticate": "Bearer"})


def answer_http(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """A function URL or HTTP API event's response. Nothing escapes as a Lambda error: an
    exception the resolver did not answer (assembling the environment, reading the token)
    is the error table's answer too, and so is an answer over the size limit."""
    try:
        answer = unauthorized(current_environment(), event) or app.resolve(event, context)
        check_size(answer)
    except Exception as error:  # noqa: BLE001 - the edge: every exception gets the API's answer
        found = failure(error)
        return _http_answer(found.status, found.body)
    return answer


def invoke_directly(environment: Environment, event: Any, context: LambdaContext | None) -> dict[str, Any]:
    """A direct invoke (models.DirectInvoke): a render request body (answered with the
    response body), a `status` or `cancel` request (answered as their routes answer), or this
    function's own `runJob` and `renderChunk` events, and Lambda's records of its own
    invocations that failed (its failure destination).

    A client error is returned with its `statusCode`; a fault of ours is raised.
    """
    try:
        message = DIRECT_INVOKE.validate_python(event, context={"limits": environment.settings.request_limits})
    except ValidationError as error:
        return validation_problem(event_errors(error)).answer()
    if isinstance(message, RunJobEvent):
        run_job(environment, message.job_id, _remaining_ms(context))
        record = load_job(environment.storage, message.job_id)
        return {"jobId": message.job_id, "status": record.status if record else None}
    if isinstance(message, RenderChunkEvent):
        return render_chunk(environment, message, _remaining_ms(context))
    if isinstance(message, StatusEvent):
        status, body = _status(environment, message.job_id)
        return body if status == 200 else {"statusCode": status, **body}
    if isinstance(message, CancelEvent):
        status, body = cancel_job(environment, message.job_id)
        return {"statusCode": status, **body}
    if isinstance(message, InvocationFailedEvent):
        return _invocation_failed(environment, message)
    if message.run_async:
        accepted = submit_job(environment, message, message.job_id)
        status_request = StatusEvent(job_id=accepted["jobId"]).payload()
        return {"statusCode": ACCEPTED, **accepted, "statusRequest": status_request}
    try:
        return render_and_store(environment, message, _remaining_ms(context)).body()
    except _RENDER_FAILURES as error:
        found = failure(error)
        if found.status >= 500:
            raise
        return found.answer()


def answer_directly(event: Any, context: LambdaContext | None) -> dict[str, Any]:
    """A direct invoke's result (`invoke_directly`); one over the size limit is a fault of
    ours, and raised as ours are."""
    answer = invoke_directly(current_environment(), event, context)
    try:
        check_size(answer)
    except AnswerTooLarge as error:
        failure(error)  # counted and logged
        raise
    return answer


if Settings.from_env().runtime_api:
    current_environment().start_worker()  # at init: Lambda's init phase pays for Manim's import


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    """The function's entry point, named by the Dockerfile's CMD."""
    logger.thread_safe_clear_keys()
    if is_http_event(event):
        return answer_http(event, context)
    return answer_directly(event, context)
