"""The Lambda handler: function URL and HTTP API events through Powertools' resolver, and
direct invokes.

Client errors come back as answers (a status and the seed's error body); faults of our
own (storage down, a broken renderer) are raised on a direct invoke, so that Lambda's
retries and failure destinations apply, and answered 5xx over HTTP.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from functools import lru_cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from handler.auth import expected_token, presents_token
from handler.dispatch import RUN_JOB_ACTION, Dispatcher, LambdaDispatcher, LocalDispatcher
from handler.errors import NOT_FOUND, UNAUTHORIZED, error_body, error_class, problem, validation_problem
from handler.fanout import RENDER_CHUNK_ACTION, Invoke, run_chunk
from handler.jobs import create_job, load_job, run_job, status_body
from handler.models import JOB_ID_PATTERN, RenderRequest
from handler.observability import logger, metrics, record_failure, tracer
from handler.service import render_and_store
from handler.settings import get_settings
from handler.storage import Storage, StorageError, storage_from_settings
from render import RenderError, RenderWorker

# Function URL and HTTP API (payload 2.0) events share one format, so one resolver serves both.
app = APIGatewayHttpResolver(enable_validation=True)

# Routes anyone may call, token or not.
OPEN_ROUTES = frozenset({"/health"})
ACCEPTED = 202
STATUS_ACTION = "status"


@lru_cache(maxsize=1)
def get_storage() -> Storage:
    """The storage of this execution environment, made once (its client is reused warm)."""
    return storage_from_settings(get_settings())


@lru_cache(maxsize=1)
def get_worker() -> RenderWorker:
    """The warm render worker of this execution environment, started on first use."""
    worker = RenderWorker(get_settings().render_work_dir)
    worker.start()
    logger.info("Render worker ready", extra={"protections": worker.protections, "tools": worker.tools})
    return worker


@lru_cache(maxsize=1)
def get_dispatcher() -> Dispatcher:
    """Where async jobs go: this function's own invocations on Lambda, a local pool elsewhere."""
    settings = get_settings()
    if settings.dispatches_to_lambda:
        return LambdaDispatcher(settings.function_name or "", settings.lambda_endpoint_url)
    return LocalDispatcher(lambda job_id: execute_job(job_id, None), settings.local_job_workers)


def fan_out() -> Invoke | None:
    """How chunks reach other invocations (on Lambda), or None to render them here."""
    dispatcher = get_dispatcher()
    return dispatcher.invoke if isinstance(dispatcher, LambdaDispatcher) else None


def execute_job(job_id: str, remaining_ms: int | None) -> None:
    run_job(job_id, get_settings(), get_storage(), get_worker(), remaining_ms, fan_out())


def _remaining_ms(context: LambdaContext | None) -> int | None:
    return context.get_remaining_time_in_millis() if context else None


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(status_code=status, content_type="application/json", body=body)


def render_now(request: RenderRequest, context: LambdaContext | None) -> dict[str, Any]:
    """A synchronous render's answer body; failures are raised."""
    remaining = _remaining_ms(context)
    return render_and_store(request, get_settings(), get_storage(), get_worker(), remaining, fan_out=fan_out()).body()


def submit_job(request: RenderRequest, job_id: str | None) -> dict[str, Any]:
    """Create the job (or find the one with that id) and start it; the 202 body's essentials."""
    storage = get_storage()
    job_id = job_id or uuid.uuid4().hex
    logger.thread_safe_append_keys(job_id=job_id)
    record, created = create_job(storage, request, job_id)
    if created:
        get_dispatcher().submit(job_id)
    return {"jobId": record.job_id, "status": record.status}


def idempotent_job_id(request: RenderRequest, headers: dict[str, str]) -> str | None:
    """The caller's `jobId`, or one derived from its `Idempotency-Key` header."""
    key = headers.get("idempotency-key")
    if request.job_id or not key:
        return request.job_id
    return "idem-" + hashlib.sha256(key.encode()).hexdigest()[:32]


@app.get("/health")
def health() -> dict[str, Any]:
    worker = get_worker()
    return {
        "message": "Health is OK",
        "worker": {"protections": worker.protections, "tools": worker.tools, "restarts": worker.restarts},
    }


@app.post("/api/render")
def render(request: RenderRequest) -> Response[dict[str, Any]]:
    if not request.run_async:
        return _json(200, render_now(request, app.lambda_context))
    event = app.current_event
    host = event.headers.get("host") or event.request_context.domain_name
    base = f"{event.headers.get('x-forwarded-proto', 'http')}://{host}"
    accepted = submit_job(request, idempotent_job_id(request, dict(event.headers)))
    return _json(ACCEPTED, {**accepted, "statusUrl": f"{base}/api/render/status/{accepted['jobId']}"})


@app.get("/api/render/status/<job_id>")
def job_status(job_id: Annotated[str, PathParam(pattern=JOB_ID_PATTERN)]) -> Response[dict[str, Any]]:
    record = load_job(get_storage(), job_id)
    if record is None:
        return _json(NOT_FOUND, error_body(f"No job {job_id!r}.", {"type": "JobNotFound"}))
    return _json(200, status_body(record, get_storage()))


@app.exception_handler(RequestValidationError)
def _invalid_request(error: RequestValidationError) -> Response:
    return _json(*validation_problem(error.errors()))


@app.exception_handler(RenderError)
@app.exception_handler(StorageError)
def _render_failed(error: Exception) -> Response:
    status, body = problem(error)
    record_failure(error_class(error))
    if status >= 500:
        logger.exception("Render request failed")
    return _json(status, body)


@app.not_found
def _not_found(_: Exception) -> Response:
    return _json(NOT_FOUND, error_body(f"No route for {app.current_event.http_method} {app.current_event.path}."))


def is_http_event(event: Any) -> bool:
    """Function URL and HTTP API events carry `requestContext.http`; direct invokes do not."""
    return isinstance(event, dict) and isinstance(event.get("requestContext"), dict) and "http" in event["requestContext"]


def unauthorized(event: dict[str, Any]) -> dict[str, Any] | None:
    """With a token configured, the 401 answer for an HTTP event that lacks it, else None.

    Checked before the resolver runs, so that an unauthenticated caller learns nothing from
    validation errors; direct invokes are authorised by IAM alone and never come here.
    """
    expected = expected_token(get_settings())
    request = APIGatewayProxyEventV2(event)
    if expected is None or request.raw_path in OPEN_ROUTES or presents_token(request.headers, expected):
        return None
    return {
        "statusCode": UNAUTHORIZED,
        "headers": {"Content-Type": "application/json", "WWW-Authenticate": "Bearer"},
        "body": json.dumps(error_body("Missing or invalid bearer token.", {"type": "Unauthorized"})),
        "isBase64Encoded": False,
    }


def invoke_directly(event: Any, context: LambdaContext | None) -> dict[str, Any]:
    """A direct invoke. The event is a render request body (answered with the response
    body), `{"action": "status", "jobId": ...}` (answered with the job's status), or this
    function's own `{"action": "runJob", ...}` for an async job.

    A client error is returned with its `statusCode`; a fault of ours is raised.
    """
    action = event.get("action") if isinstance(event, dict) else None
    if action == RUN_JOB_ACTION:
        job_id = str(event.get("jobId"))
        execute_job(job_id, _remaining_ms(context))
        record = load_job(get_storage(), job_id)
        return {"jobId": job_id, "status": record.status if record else None}
    if action == RENDER_CHUNK_ACTION:
        return run_chunk(event, get_settings(), get_storage(), get_worker(), _remaining_ms(context))
    if action == STATUS_ACTION:
        record = load_job(get_storage(), str(event.get("jobId")))
        if record is None:
            return {"statusCode": NOT_FOUND, **error_body(f"No job {event.get('jobId')!r}.", {"type": "JobNotFound"})}
        return status_body(record, get_storage())
    try:
        request = parse(event=event, model=RenderRequest)
    except ValidationError as error:
        status, body = validation_problem(error.errors())
        return {"statusCode": status, **body}
    if request.run_async:
        accepted = submit_job(request, request.job_id)
        return {"statusCode": ACCEPTED, **accepted, "statusRequest": {"action": STATUS_ACTION, "jobId": accepted["jobId"]}}
    try:
        return render_now(request, context)
    except (RenderError, StorageError) as error:
        status, body = problem(error)
        record_failure(error_class(error))
        if status >= 500:
            raise
        return {"statusCode": status, **body}


if os.environ.get("AWS_LAMBDA_RUNTIME_API"):
    get_worker()  # at init: Lambda's init phase pays for Manim's import, not the first request


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    """The function's entry point, named by the Dockerfile's CMD."""
    logger.thread_safe_clear_keys()
    if is_http_event(event):
        return unauthorized(event) or app.resolve(event, context)
    return invoke_directly(event, context)
