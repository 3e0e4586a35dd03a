"""Run the handler off Lambda: invoke it once with an event file, or serve its routes over HTTP.

Both feed the same `lambda_handler` the same events Lambda would (the server turns each
HTTP request into a function URL event), so what works here works there.

    python -m handler.local invoke events/function-url-render.json
    python -m handler.local serve            # PORT, default 3001

The server also serves a page to try scenes at `/` (handler/static/), a caller of the same
HTTP API; its editor is Debian's CodeMirror (`libjs-codemirror`), read from where apt puts it.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from handler.settings import Settings

# Lambda's longest timeout: a local invocation has as long as the longest real one.
LOCAL_DEADLINE_SECONDS = 900

HTML, JS, CSS = "text/html; charset=utf-8", "text/javascript; charset=utf-8", "text/css; charset=utf-8"
# The page at `/` and the only files it loads, by URL path: its own (in PAGE) and three of
# Debian's CodeMirror 5 (in CODEMIRROR). Fixed lists, so that no file path is built from a request.
PAGE = Path(__file__).resolve().parent / "static"
PAGE_FILES = {"/": ("index.html", HTML), "/static/page.js": ("page.js", JS), "/static/page.css": ("page.css", CSS)}
CODEMIRROR = Path("/usr/share/javascript/codemirror")
CODEMIRROR_FILES = {
    "/static/codemirror/codemirror.js": ("lib/codemirror.js", JS),
    "/static/codemirror/codemirror.css": ("lib/codemirror.css", CSS),
    "/static/codemirror/python.js": ("mode/python/python.js", JS),
}


@dataclass
class LocalContext:
    """The parts of Lambda's context object that the handler and Powertools read."""

    function_name: str = "manim-worker-local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 3008
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:manim-worker-local"
    deadline: float = field(default_factory=lambda: time.monotonic() + LOCAL_DEADLINE_SECONDS)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def _query_parameters(query: str) -> dict[str, str]:
    values: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        values.setdefault(name, []).append(value)
    return {name: ",".join(found) for name, found in values.items()}


def function_url_event(method: str, target: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The event a Lambda function URL would send for this HTTP request (payload 2.0)."""
    url = urlsplit(target)
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": url.path,
        "rawQueryString": url.query,
        # As function URLs send them: a name given several times has its values joined by commas.
        **({"queryStringParameters": _query_parameters(url.query)} if url.query else {}),
        "headers": {name.lower(): value for name, value in headers.items()},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {
                "method": method,
                "path": url.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("User-Agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "timeEpoch": int(time.time() * 1000),
        },
        "body": base64.b64encode(body).decode("ascii"),
        "isBase64Encoded": True,
    }


def page_file(path: str) -> tuple[HTTPStatus, str, bytes] | None:
    """The status, type and bytes answering a GET of `path` if it is the page or one of its
    files, else None. CodeMirror comes from a system package: without it the answer is a 500
    that says what to install (the page then says so too, and keeps a plain text box)."""
    if path in PAGE_FILES:
        name, content_type = PAGE_FILES[path]
        return HTTPStatus.OK, content_type, (PAGE / name).read_bytes()
    if path not in CODEMIRROR_FILES:
        return None
    name, content_type = CODEMIRROR_FILES[path]
    try:
        return HTTPStatus.OK, content_type, (CODEMIRROR / name).read_bytes()
    except OSError:
        missing = f"{CODEMIRROR / name} is missing: install Debian's libjs-codemirror (make serve does).\n"
        return HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", missing.encode()


def invoke(event: Any) -> Any:
    """Call the real handler with `event`, as one Lambda invocation would."""
    from handler.app import lambda_handler

    return lambda_handler(event, LocalContext())


class _Handler(BaseHTTPRequestHandler):
    """Every request becomes a function URL event, except GETs of the page, its files and
    stored videos."""

    protocol_version = "HTTP/1.1"
    server_version = "manim-worker-local"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.command == "GET":
            page = page_file(urlsplit(self.path).path)
            if page is not None:
                status, content_type, data = page
                self._send(status, data, {"Content-Type": content_type})
                return
            if self._serve_stored_video():
                return
        result = invoke(function_url_event(self.command, self.path, dict(self.headers), body))
        payload = base64.b64decode(result["body"]) if result.get("isBase64Encoded") else result.get("body", "").encode()
        self._send(result["statusCode"], payload, result.get("headers", {}))

    def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _serve_stored_video(self) -> bool:
        """The embedded store's URLs point here; serve the file if the path names one."""
        from handler.environment import current_environment
        from handler.storage import LocalStorage, content_type

        storage = current_environment().storage
        path = urlsplit(self.path).path.lstrip("/")
        if not isinstance(storage, LocalStorage) or not path.startswith("videos/"):
            return False
        try:
            data = storage.path_of(path).read_bytes()
        except (OSError, ValueError):
            self.send_error(HTTPStatus.NOT_FOUND)
            return True
        self._send(HTTPStatus.OK, data, {"Content-Type": content_type(path)})
        return True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer


class _Server(ThreadingHTTPServer):
    """A thread a request. Connections waiting to be accepted queue in the kernel: Python's
    default of 5 would have a burst of callers (a batch of async jobs sent at once) reset."""

    request_queue_size = 128


def serve(settings: Settings, port: int) -> None:
    """Serve the handler's routes on `port` until interrupted."""
    from handler.environment import Environment, use_environment

    if not settings.bucket and not settings.local_store_url:  # the embedded store's URLs point here
        settings = settings.model_copy(update={"local_store_url": f"http://127.0.0.1:{port}"})
    settings = settings.model_copy(update={"openapi_routes": True})  # the contract, always served here
    environment = Environment.assemble(settings, serving=True)
    use_environment(environment)
    environment.start_worker()  # now, not on the first request
    server = _Server(("127.0.0.1", port), _Handler)
    print(
        f"Serving the render worker on http://127.0.0.1:{port} (the page to try scenes at /, POST /api/render, "
        "GET /health, /swagger)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handler.local", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    invoke_parser = commands.add_parser("invoke", help="invoke the handler once with an event file")
    invoke_parser.add_argument("event", type=Path)
    serve_parser = commands.add_parser("serve", help="serve the HTTP routes locally")
    settings = Settings.from_env()
    serve_parser.add_argument("--port", type=int, default=settings.local_port)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(settings, args.port)
        return 0
    from handler.environment import current_environment

    current_environment().start_worker()  # as Lambda's init would, before the invocation
    result = invoke(json.loads(args.event.read_text(encoding="utf-8")))
    body = json.loads(result["body"]) if isinstance(result.get("body"), str) else result
    if "body" in result:
        result = {**result, "body": body}
    print(json.dumps(result, indent=2))
    if "s3Key" in body:
        print(f"\nThe video is at {body['url']}", file=sys.stderr)
    return 0 if result.get("statusCode", 200) < 400 else 1


if __name__ == "__main__":
    sys.exit(main())
