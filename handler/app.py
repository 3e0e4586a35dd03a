"""The Lambda handler: function URL and HTTP API events through Powertools' resolver, and
direct invokes whose event is the request body.

Client errors come back as answers (a status and the seed's error body); faults of our
own (storage down, a broken renderer) are raised on a direct invoke, so that Lambda's
retries and failure destinations apply, and answered 5xx over HTTP.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from handler.auth import expected_token, presents_token
from handler.errors import NOT_FOUND, UNAUTHORIZED, error_body, render_problem, storage_problem, validation_problem
from handler.models import RenderRequest
from handler.service import render_and_store
from handler.settings import get_settings
from handler.storage import Storage, StorageError, storage_from_settings
from render import RenderError, RendererFailed, RenderWorker

logger = Logger()
# Function URL and HTTP API (payload 2.0) events share one format, so one resolver serves both.
app = APIGatewayHttpResolver(enable_validation=True)

# Routes anyone may call, token or not.
OPEN_ROUTES = frozenset({"/health"})


@lru_cache(maxsize=1)
def get_storage() -> Storage:
    """The storage of this execution environment, made once (its client is reused warm)."""
    return storage_from_settings(get_settings())


@lru_cache(maxsize=1)
def get_worker() -> RenderWorker:
    """The warm render worker of this execution environment, started on first use."""
    worker = RenderWorker(get_settings().render_work_dir)
    worker.start()
    logger.info("Render worker ready", extra={"protections": worker.protections})
    return worker


def _remaining_ms() -> int | None:
    context = app.lambda_context
    return context.get_remaining_time_in_millis() if context else None


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(status_code=status, content_type="application/json", body=body)


@app.get("/health")
def health() -> dict[str, Any]:
    worker = get_worker()
    return {"message": "Health is OK", "worker": {"protections": worker.protections, "restarts": worker.restarts}}


@app.post("/api/render")
def render(request: RenderRequest) -> dict[str, Any]:
    return render_and_store(request, get_settings(), get_storage(), get_worker(), _remaining_ms()).body()


@app.exception_handler(RequestValidationError)
def _invalid_request(error: RequestValidationError) -> Response:
    return _json(*validation_problem(error.errors()))


@app.exception_handler(RenderError)
def _render_failed(error: RenderError) -> Response:
    if isinstance(error, RendererFailed):
        logger.error("Renderer failed", extra={"reason": str(error)})
    return _json(*render_problem(error))


@app.exception_handler(StorageError)
def _storage_failed(error: StorageError) -> Response:
    logger.exception("Storage failed")
    return _json(*storage_problem(error))


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
    """A direct invoke: the event is the request body and the result is the response body.

    A client error is returned with its `statusCode`; a fault of ours is raised.
    """
    try:
        request = parse(event=event, model=RenderRequest)
    except ValidationError as error:
        status, body = validation_problem(error.errors())
        return {"statusCode": status, **body}
    remaining = context.get_remaining_time_in_millis() if context else None
    try:
        return render_and_store(request, get_settings(), get_storage(), get_worker(), remaining).body()
    except RendererFailed:
        raise
    except RenderError as error:
        status, body = render_problem(error)
        return {"statusCode": status, **body}


if os.environ.get("AWS_LAMBDA_RUNTIME_API"):
    get_worker()  # at init: Lambda's init phase pays for Manim's import, not the first request


@logger.inject_lambda_context
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    """The function's entry point, named by the Dockerfile's CMD."""
    if is_http_event(event):
        return unauthorized(event) or app.resolve(event, context)
    return invoke_directly(event, context)
