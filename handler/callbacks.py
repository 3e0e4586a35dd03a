"""Signed callbacks: when an async job ends, its record is POSTed to the `callbackUrl` its
request named, so that a caller need not poll.

The body is the record as `GET /api/render/status/{jobId}` answers it, and
`X-Signature-256: sha256=<hex>` is its HMAC-SHA256 under the deployment's webhook secret (as
GitHub signs its webhooks): the receiver can tell that it came from this deployment, unaltered.
A callback is never sent unsigned; a deployment without a secret refuses `callbackUrl`.

The caller chooses where the callback goes, and this function sends it from inside its own
network, so where it may go is checked twice. At request time, from the URL alone: an address
written in it (in any form the resolver reads) and the Runtime API's own host and port. At
delivery, after resolving the host: every address it resolves to, and the connection is then
made to a checked address, never to what the name resolves to by then, so a name that answers
differently the second time (DNS rebinding) cannot slip past. Refused are link-local addresses
(169.254.0.0/16, fe80::/10) and the metadata services' (169.254.169.254, fd00:ec2::254), which
hand out credentials where the worker runs on an instance or a container service, and the
Lambda Runtime API, through which a callback could answer or fail this function's own
invocation. Anything else, loopback included, is the caller's to choose.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import ssl
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from handler.auth import SecretSetting
from handler.observability import logger

SIGNATURE_HEADER = "X-Signature-256"
MAX_ATTEMPTS = 4
# The wait before the second attempt, doubled before each further one.
FIRST_BACKOFF_SECONDS = 0.5
# One attempt's limit for connecting, and then for each read of the answer.
ATTEMPT_TIMEOUT_SECONDS = 5.0
# However little time is left, an attempt is given at least this long.
MIN_ATTEMPT_SECONDS = 1.0
# The longest a delivery may take, attempts and waits together; less if the invocation ends sooner.
DELIVERY_SECONDS = 30.0
# Kept back from the invocation's remaining time, to record how the delivery went.
RECORD_MARGIN_SECONDS = 2.0
METADATA_ADDRESSES = frozenset({ip_address("169.254.169.254"), ip_address("fd00:ec2::254")})

IPAddress = IPv4Address | IPv6Address
# What a name resolves to, ready to connect to: a socket family and a socket address.
Address = tuple[socket.AddressFamily, tuple[Any, ...]]


class Delivery(BaseModel):
    """How a job's callback went, kept in its record as `callback`. Before the job ends it
    holds only the URL (no attempt yet)."""

    url: str
    status: int | None = None  # the receiver's last answer; None when none came
    attempts: int = 0
    delivered: bool = False  # the receiver answered 2xx
    error: str | None = None  # why it was not delivered


class _Refused(Exception):
    """A callback aimed where callbacks may not go."""


@dataclass(frozen=True)
class _Target:
    """Where a callback goes, from its URL."""

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> _Target:
        """The URL's parts; a ValueError saying what is wrong with one that is not a plain
        http or https URL (http.client refuses spaces, control and non-ASCII characters)."""
        if not url.isascii() or any(char <= " " or char == "\x7f" for char in url):
            raise ValueError("callbackUrl must be ASCII without spaces or control characters (percent-encode them)")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("callbackUrl must be an http or https URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("callbackUrl may not carry a user name or password: the signature authenticates callbacks")
        port = parts.port if parts.port is not None else (443 if parts.scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme, parts.hostname, port, path)


def check_url(url: str, runtime_api: str | None) -> None:
    """Raise a ValueError saying why, for a callback URL that is not http(s) or that aims where
    callbacks may not go as far as the URL alone tells: no name is resolved here (delivery
    checks what names resolve to)."""
    target = _Target.parse(url)
    runtime = _runtime_endpoint(runtime_api, numeric=True)
    if runtime is not None and (target.host, target.port) == (runtime.host, runtime.port):
        raise ValueError(f"callbackUrl may not reach {target.host}:{target.port}, the Lambda Runtime API")
    try:
        _checked(_addresses(target.host, target.port, numeric=True), target.port, runtime)
    except _Refused as refused:
        raise ValueError(f"callbackUrl may not reach {refused}") from None


def signature(body: bytes, key: str) -> str:
    """The `X-Signature-256` value of `body`: its HMAC-SHA256 under `key`, as `sha256=<hex>`."""
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def call_back(url: str, record: dict[str, Any], secret: SecretSetting, runtime_api: str | None, ends: float | None) -> Delivery:
    """POST `record` as JSON to `url`, signed with `secret`, and say how it went; never raises,
    since a job's outcome stands whatever befalls its callback.

    An answer of 5xx, or no answer (DNS, connection, timeout), is retried with backoff, up to
    MAX_ATTEMPTS and within the time left: until `ends` (the invocation's end on the
    monotonic clock, less RECORD_MARGIN_SECONDS), or DELIVERY_SECONDS where nothing bounds
    it. Any other answer is final, a redirect too: following it would go where no check was
    made. A refused address ends the delivery at once.
    """
    delivery = Delivery(url=url)
    try:
        key = secret.value()
    except Exception:  # SSM can fail many ways; the record says only that the key was unreadable
        logger.exception("The webhook secret could not be read")
        key = None
    if not key:
        delivery.error = "The webhook secret could not be read; nothing was sent."
        return delivery
    body = json.dumps(record).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(body, key), "User-Agent": "manim-worker"}
    left = DELIVERY_SECONDS if ends is None else ends - RECORD_MARGIN_SECONDS - time.monotonic()
    stop = time.monotonic() + min(DELIVERY_SECONDS, left)
    backoff = FIRST_BACKOFF_SECONDS
    while True:
        delivery.attempts += 1
        timeout = max(min(ATTEMPT_TIMEOUT_SECONDS, stop - time.monotonic()), MIN_ATTEMPT_SECONDS)
        try:
            delivery.status, delivery.error = _post(url, body, headers, runtime_api, timeout), None
        except _Refused as refused:
            delivery.status, delivery.error = None, f"Refused: {refused}"
            break
        except (OSError, http.client.HTTPException, ValueError) as error:
            delivery.status, delivery.error = None, f"{type(error).__name__}: {error}"[:500]
        if delivery.status is not None and delivery.status < 500:
            break
        if delivery.attempts >= MAX_ATTEMPTS or time.monotonic() + backoff + MIN_ATTEMPT_SECONDS > stop:
            break
        time.sleep(backoff)
        backoff *= 2
    delivery.delivered = delivery.status is not None and 200 <= delivery.status < 300
    if not delivery.delivered and delivery.error is None:
        delivery.error = f"The receiver answered {delivery.status}."
    log = logger.info if delivery.delivered else logger.warning
    log("Callback delivered" if delivery.delivered else "Callback not delivered", extra={"callback": delivery.model_dump()})
    return delivery


def _post(url: str, body: bytes, headers: dict[str, str], runtime_api: str | None, timeout: float) -> int:
    """One POST to an address the URL's host resolves to, every one of them checked first;
    the answer's status (its body is not read)."""
    target = _Target.parse(url)
    runtime = _runtime_endpoint(runtime_api, numeric=False)
    addresses = _checked(_addresses(target.host, target.port, numeric=False), target.port, runtime)
    connection = _CheckedConnection(target, addresses, timeout)
    try:
        connection.request("POST", target.path, body, headers)
        return connection.getresponse().status
    finally:
        connection.close()


class _CheckedConnection(http.client.HTTPConnection):
    """An HTTP or HTTPS connection to addresses already checked, whatever the host name
    resolves to by the time it connects. The name is still what is sent as `Host`, and what
    the server's certificate is verified against."""

    def __init__(self, target: _Target, addresses: list[Address], timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._addresses = addresses
        self._tls = ssl.create_default_context() if target.scheme == "https" else None

    def connect(self) -> None:
        sock = _connect(self._addresses, self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host) if self._tls else sock


def _connect(addresses: list[Address], timeout: float | None) -> socket.socket:
    """A socket connected to the first of `addresses` that accepts, as socket.create_connection
    connects to a name's, but without resolving anything again."""
    failure: OSError = OSError("no address to connect to")
    for family, address in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError as error:
            sock.close()
            failure = error
            continue
        return sock
    raise failure


@dataclass(frozen=True)
class _Endpoint:
    """The Lambda Runtime API, from `AWS_LAMBDA_RUNTIME_API` ("host:port")."""

    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def _runtime_endpoint(runtime_api: str | None, *, numeric: bool) -> _Endpoint | None:
    """The Runtime API's host, port and addresses (only if its host is an address, when
    `numeric`); None off Lambda."""
    if not runtime_api:
        return None
    host, _, port = runtime_api.rpartition(":")
    host, port_number = host.strip("[]").lower(), int(port) if port.isdigit() else 80
    resolved = _addresses(host, port_number, numeric=numeric)
    return _Endpoint(host, port_number, tuple(_plain(address[0]) for _, address in resolved))


def _addresses(host: str, port: int, *, numeric: bool) -> list[Address]:
    """What `host` resolves to; with `numeric`, only what it says as an address in any form the
    resolver reads (`169.254.169.254`, `0xa9fea9fe`, `[::ffff:a9fe:a9fe]`; an IPv6 zone, which
    a URL may spell `%25eth0`, left out), nothing for a name."""
    if numeric:
        host = host.partition("%")[0]
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST if numeric else 0)
    except socket.gaierror:
        if numeric:
            return []
        raise
    return [(family, address) for family, _, _, _, address in found]


def _checked(addresses: list[Address], port: int, runtime: _Endpoint | None) -> list[Address]:
    """`addresses`, if a callback may go to every one of them; else _Refused, naming the first
    that it may not."""
    for _, address in addresses:
        plain = _plain(address[0])
        if plain in METADATA_ADDRESSES:
            raise _Refused(f"{plain}, a metadata service's address")
        if plain.is_link_local:
            raise _Refused(f"{plain}, a link-local address")
        if runtime is not None and port == runtime.port and _same_host(plain, runtime.addresses):
            raise _Refused(f"{plain}:{port}, the Lambda Runtime API")
    return addresses


def _plain(text: str) -> IPAddress:
    """An address as it is compared: without an IPv6 zone, and an IPv4-mapped IPv6 address as
    the IPv4 address it reaches."""
    address = ip_address(text.partition("%")[0])
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _same_host(address: IPAddress, runtime: tuple[IPAddress, ...]) -> bool:
    """Whether `address` reaches the Runtime API's host: it is one of its addresses, or both
    are this machine's own (a loopback or unspecified address reaches any local listener on
    that port)."""

    def local(candidate: IPAddress) -> bool:
        return candidate.is_loopback or candidate.is_unspecified

    return address in runtime or (local(address) and any(local(known) for known in runtime))
