"""Render through the service as a caller: submit an async job, follow it, fetch the file.

The service is reached one of three ways, each a `Service`: its HTTP API (the local server, or
a function URL behind a bearer token or signed with SigV4: `HttpService`), or a direct invoke
of the function (`FunctionService`). Every answer the service gives as an error becomes a
`RequestRejected` (a `ScriptError` when the script is at fault), so a caller handles one kind.
"""

from __future__ import annotations

import http.client
import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

Quality = Literal["-ql", "-qm", "-qh", "-qp", "-qk"]
Format = Literal["mp4", "webm", "gif", "mov", "png"]
ENDED = ("succeeded", "failed", "cancelled")
# The first status read of a job, this long after its submit (see `_followed`).
FIRST_POLL_SECONDS = 0.1
# A render can take minutes, so an answer may be that long in coming (Lambda's longest timeout).
READ_TIMEOUT_SECONDS = 900


class ServiceError(Exception):
    """The service could not be reached, or failed on its side without an answer."""


class RequestRejected(ServiceError):
    """The service answered with an error (`{"message", "errors"}`, its status): the request,
    or the render it ran, failed. `errors` says why, as the README's error table describes."""

    def __init__(self, status: int, message: str, errors: Any = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message, self.errors = status, message, errors


class ScriptError(RequestRejected):
    """The script cannot render (a 422): `line` is the line of the script to fix (None when the
    error has none, such as no scene found), `kind` the error's type, such as `NameError`."""

    def __init__(self, message: str, errors: dict[str, Any]) -> None:
        super().__init__(422, message, errors)
        self.line: int | None = errors.get("line")
        self.kind: str = errors.get("type", "Error")
        self.traceback: str | None = errors.get("traceback")
        # Python's own last line, `NameError: name 'x' is not defined`, when there is a
        # traceback; else the service's message (no scene found, say) after the error's type.
        lines = (self.traceback or "").strip().splitlines()
        self.detail: str = lines[-1] if lines else f"{self.kind}: {errors.get('message') or message}"

    def at(self, path: str) -> str:
        """The error as compilers show one, `path:line: detail`, so that an editor or a
        terminal can jump to the line."""
        where = f"{path}:{self.line}" if self.line is not None else path
        return f"{where}: {self.detail}"


class JobCancelled(ServiceError):
    """The job was cancelled before it ended."""


def _rejection(status: int, body: dict[str, Any]) -> RequestRejected:
    """The exception for an error answer, or for a failed job's `error` (the same shape); AWS's
    own answers in front of the function (a function URL's 403) say `Message`."""
    message, errors = body.get("message") or body.get("Message") or f"HTTP {status}", body.get("errors")
    if status == 422 and isinstance(errors, dict):
        return ScriptError(message, errors)
    return RequestRejected(status, message, errors)


class Service(Protocol):
    """One way to reach the service: each call answers its status and JSON body."""

    def submit(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]: ...

    def status(self, job_id: str) -> tuple[int, dict[str, Any]]: ...

    def cancel(self, job_id: str) -> tuple[int, dict[str, Any]]: ...


def _is_function_url(url: str) -> bool:
    return ".lambda-url." in (urlsplit(url).hostname or "")


@dataclass(frozen=True)
class HttpService:
    """The HTTP API at `url`: the local server, an API behind a bearer `token`, or a function
    URL with IAM auth, whose requests are signed with SigV4 (`sigv4`: None signs only for a
    `*.lambda-url.*` host) from the standard credential chain, for `region` (read from a
    function URL's host when not given)."""

    url: str
    token: str | None = None
    sigv4: bool | None = None
    region: str | None = None

    def submit(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self._send("POST", "/api/render", request)

    def status(self, job_id: str) -> tuple[int, dict[str, Any]]:
        return self._send("GET", f"/api/render/status/{job_id}")

    def cancel(self, job_id: str) -> tuple[int, dict[str, Any]]:
        return self._send("POST", f"/api/render/cancel/{job_id}")

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        url = self.url.rstrip("/") + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.sigv4 or (self.sigv4 is None and _is_function_url(url)):
            headers = self._signed(method, url, data, headers)
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=READ_TIMEOUT_SECONDS) as response:
                return response.status, _json_object(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _json_object(error.read())
        except OSError as error:
            raise ServiceError(f"could not reach {url}: {error}") from error

    def _signed(self, method: str, url: str, data: bytes | None, headers: dict[str, str]) -> dict[str, str]:
        """`headers` plus SigV4's, for service `lambda`, as a function URL with IAM auth wants."""
        session = boto3.Session()
        host = urlsplit(url).hostname or ""
        region = self.region or (host.split(".")[2] if _is_function_url(url) else session.region_name)
        credentials = session.get_credentials()
        if credentials is None or region is None:
            raise ServiceError("signing needs AWS credentials and a region (the standard chain, or --region)")
        request = AWSRequest(method=method, url=url, data=data, headers=headers)
        SigV4Auth(credentials.get_frozen_credentials(), "lambda", region).add_auth(request)
        return dict(request.headers.items())


def _json_object(raw: bytes) -> dict[str, Any]:
    """An answer's body; one that is not a JSON object (a proxy's error page) as its message."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {"message": raw.decode(errors="replace")[:500]}


class FunctionService:
    """The function `name`, invoked directly with boto3 (credentials, region and endpoint from
    the standard chain: `AWS_ENDPOINT_URL_LAMBDA` too). A submit is never retried by boto3, so
    that a slow answer cannot start a second job; reading a job's status is."""

    def __init__(self, name: str, region: str | None = None) -> None:
        self.name = name
        once = Config(read_timeout=READ_TIMEOUT_SECONDS, retries={"max_attempts": 0})
        try:
            self._submitter = boto3.client("lambda", region_name=region, config=once)
            self._reader = boto3.client("lambda", region_name=region)
        except BotoCoreError as error:
            raise ServiceError(f"cannot invoke {name}: {error}") from error

    def submit(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self._invoke(self._submitter, request)

    def status(self, job_id: str) -> tuple[int, dict[str, Any]]:
        return self._invoke(self._reader, {"action": "status", "jobId": job_id})

    def cancel(self, job_id: str) -> tuple[int, dict[str, Any]]:
        return self._invoke(self._submitter, {"action": "cancel", "jobId": job_id})

    def _invoke(self, client: Any, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The invoke's result as an HTTP answer: a direct invoke carries its status in the
        result (`statusCode`, 200 when absent); a function error is a fault of the service's."""
        try:
            answer = client.invoke(FunctionName=self.name, Payload=json.dumps(event).encode())
        except (BotoCoreError, ClientError) as error:
            raise ServiceError(f"could not invoke {self.name}: {error}") from error
        body = _json_object(answer["Payload"].read())
        if "FunctionError" in answer:
            raise ServiceError(f"{self.name} failed: {body.get('errorType')}: {body.get('errorMessage')}")
        return int(body.pop("statusCode", 200)), body


@dataclass(frozen=True)
class Result:
    """A finished render: where the file is stored and, if it was downloaded, where it is now.
    `timings` are the service's (README, "Timings"); `seconds` the caller's own wait, from
    submit to the file on disk."""

    job_id: str
    key: str
    url: str
    path: Path | None
    scene_name: str
    format: str
    cached: bool
    timings: dict[str, float]
    seconds: float


def _answer(exchange: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    """The body of a successful answer; an error answer raised as `_rejection` says."""
    status, body = exchange
    if status >= 400:
        raise _rejection(status, body)
    return body


def status(job_id: str, service: Service) -> dict[str, Any]:
    """The job's record (status, progress, result or error), as the status route answers it."""
    return _answer(service.status(job_id))


def cancel(job_id: str, service: Service) -> dict[str, Any]:
    """Ask the job to stop; its record. A job that has already ended is a `RequestRejected`
    with status 409, an unknown one 404."""
    return _answer(service.cancel(job_id))


def render(
    code: str,
    service: Service,
    *,
    quality: Quality = "-qm",
    scene: str | None = None,
    format: Format | None = None,  # noqa: A002 - the API's own name for it
    chunks: int | Literal["auto"] | None = None,
    output: Path | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    poll_seconds: float = 1.0,
) -> Result:
    """Render `code` as an async job, so that no connection has to stay open for the whole
    render and `on_progress` sees each record polled (soon after the submit, then less often,
    at most `poll_seconds` apart); then download the file to `output` (when given). A failed
    job raises what its error is (`ScriptError` for the script's own); an interrupted wait
    cancels the job, which would otherwise run on (and be billed)."""
    started = time.monotonic()
    request: dict[str, Any] = {"codeContent": code, "quality": quality, "async": True}
    optional = {"sceneName": scene, "format": format, "chunks": chunks}
    request.update({name: value for name, value in optional.items() if value is not None})
    job_id = _answer(service.submit(request))["jobId"]
    try:
        record = _followed(job_id, service, on_progress, poll_seconds)
    except KeyboardInterrupt:
        service.cancel(job_id)
        raise
    if record["status"] == "cancelled":
        raise JobCancelled(f"job {job_id} was cancelled")
    if record["status"] == "failed":
        error = record["error"] or {}
        raise _rejection(int(error.get("statusCode", 500)), error)
    result = record["result"]
    if output is not None:
        _download(result["url"], output)
    return Result(
        job_id=job_id,
        key=result["s3Key"],
        url=result["url"],
        path=output,
        scene_name=result["sceneName"],
        format=result["format"],
        cached=result["cached"],
        timings=result["timings"],
        seconds=round(time.monotonic() - started, 3),
    )


def _followed(
    job_id: str, service: Service, on_progress: Callable[[dict[str, Any]], None] | None, poll_seconds: float
) -> dict[str, Any]:
    """Poll the job until it has ended; its last record. The first read is `FIRST_POLL_SECONDS`
    after the submit and each pause half again as long, up to `poll_seconds`: a short render
    is seen done soon after it is, and a long one costs a status read a second or so (each is
    an invocation on Lambda)."""
    pause = FIRST_POLL_SECONDS
    while True:
        time.sleep(min(pause, poll_seconds))
        record = status(job_id, service)
        if on_progress is not None:
            on_progress(record)
        if record["status"] in ENDED:
            return record
        pause *= 1.5


def _download(url: str, path: Path) -> None:
    """Fetch a stored file: a presigned S3 URL, or the local server's URL of its embedded
    store. It carries its own authorisation, so no token or signature of ours goes with it.
    The file is written beside `path` and renamed when whole: a failed download leaves
    neither a partial file nor a changed `path`."""
    partial = path.with_name(f".{path.name}.part")
    try:
        with urllib.request.urlopen(url, timeout=READ_TIMEOUT_SECONDS) as response, partial.open("wb") as file:
            shutil.copyfileobj(response, file)
            if response.length:  # bytes the server promised and never sent: the connection broke
                raise http.client.IncompleteRead(b"", response.length)
        partial.replace(path)
    except (OSError, http.client.HTTPException) as error:  # HTTPException: the body was cut short
        partial.unlink(missing_ok=True)
        raise ServiceError(f"could not download {url}: {error}") from error
