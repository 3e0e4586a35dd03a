"""A stand-in for a Lambda function URL with `AWS_IAM` auth, in front of the local server: it
recomputes each request's SigV4 signature with botocore from the one identity it knows, answers
403 as a function URL does when the signature is missing or wrong, and forwards the rest.

It is also an HTTP proxy: a client whose `http_proxy` points here can use a function URL's own
host name (`<id>.lambda-url.<region>.on.aws`, which resolves nowhere here) and sign for it."""

from __future__ import annotations

import contextlib
import datetime
import hmac
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.support.processes import LOOPBACK, free_ports, serving

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$"
)
# How far a request's X-Amz-Date may be from now, as AWS allows.
_CLOCK_SKEW = datetime.timedelta(minutes=5)


@dataclass
class FunctionUrl:
    """Where the stand-in listens, and each request's credential scope (region and service)
    once its signature checked out, or the reason it was refused."""

    url: str
    checked: list[str] = field(default_factory=list)


def signature_problem(method: str, host: str, path: str, headers: Any, body: bytes, key: str, secret: str) -> str | None:
    """Why the request's SigV4 signature is not one that `key` and `secret` made, or None
    when it is (its region and service are read from its credential scope)."""
    found = _AUTHORIZATION.match(headers.get("Authorization") or "")
    if found is None:
        return "no SigV4 Authorization header"
    if found["key"] != key:
        return f"unknown access key {found['key']}"
    signed = found["signed"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return f"host and x-amz-date must be signed, not only {signed}"
    stamp = headers.get("X-Amz-Date") or ""
    if not re.fullmatch(r"\d{8}T\d{6}Z", stamp):
        return f"no X-Amz-Date, or a malformed one: {stamp!r}"
    when = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    if abs(datetime.datetime.now(datetime.UTC) - when) > _CLOCK_SKEW or found["date"] != stamp[:8]:
        return f"the signature's time {stamp} is not now"
    request = AWSRequest(
        method=method, url=f"http://{host}{path}", data=body, headers={name: headers.get(name) for name in signed}
    )
    request.context["timestamp"] = stamp
    auth = SigV4Auth(Credentials(key, secret), found["service"], found["region"])
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    return None if hmac.compare_digest(expected, found["signature"]) else "the signature does not match"


@contextlib.contextmanager
def function_url(backend: str, key: str, secret: str) -> Iterator[FunctionUrl]:
    """Check requests signed by `key` and `secret`, and forward those that are to `backend`
    (a base URL), until the block ends."""
    (port,) = free_ports(1)
    stand_in = FunctionUrl(url=f"http://{LOOPBACK}:{port}")

    class Gate(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = urlsplit(self.path).path  # an absolute URL when sent as a proxy
            problem = signature_problem(self.command, self.headers["Host"], path, self.headers, body, key, secret)
            if problem is not None:
                stand_in.checked.append(problem)
                self._reply(403, b'{"Message":"Forbidden"}')
                return
            found = _AUTHORIZATION.match(self.headers["Authorization"])
            assert found is not None
            stand_in.checked.append(f"{found['region']}/{found['service']}")
            forwarded = urllib.request.Request(
                backend + path, data=body if self.command == "POST" else None, method=self.command,
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            try:
                with urllib.request.urlopen(forwarded, timeout=120) as response:
                    self._reply(response.status, response.read())
            except urllib.error.HTTPError as error:
                self._reply(error.code, error.read())

        def _reply(self, status: int, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _answer

        def log_message(self, *_: Any) -> None:
            pass

    with serving(Gate, port):
        yield stand_in
