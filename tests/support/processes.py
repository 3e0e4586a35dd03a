"""Processes and ports for the services the tests run: free loopback ports, an HTTP stand-in
served from a thread, waiting for a service to be ready (failing fast, with its log, when it
dies), and stopping it with all it started (each service runs in its own process group);
whether a process still runs; and the machine's TCP sockets as the kernel lists them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple, Protocol

LOOPBACK = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports free right now; all are held open together so none repeats."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler], port: int = 0) -> Iterator[ThreadingHTTPServer]:
    """Serve HTTP with `handler` on a loopback `port` (0: any free one; the server's
    `server_address` says which) from a thread of this process, until the block ends."""
    server = ThreadingHTTPServer((LOOPBACK, port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def log_tail(path: Path, lines: int = 40) -> str:
    """The end of a service's log, to put in an error message."""
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(no log: {error})"
    return "\n".join(text.splitlines()[-lines:])


def port_open(port: int) -> bool:
    """True when something accepts connections on loopback `port`."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0


class _Exits(Protocol):
    """What `wait_for` needs of a service: a Popen, or a container's stand-in for one."""

    returncode: int | None

    def poll(self) -> int | None: ...


def wait_for(ready: Callable[[], bool], process: _Exits, what: str, log: Path, timeout: float) -> None:
    """Poll `ready` until it holds; fail fast if the process dies, and say why with its log."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}\n--- {log} ---\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f} s\n--- {log} ---\n{log_tail(log)}")
        time.sleep(0.05)


def stop_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group, SIGKILL it after `grace` seconds, then sweep any straggler."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Running, not merely a zombie left for a parent that is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except FileNotFoundError:
        return False


class TcpSocket(NamedTuple):
    """One IPv4 or IPv6 TCP socket of this machine, as /proc/net/tcp{,6} lists it."""

    local: tuple[str, int]  # (address, port)
    state: str  # the kernel's code: "01" established, "0A" listening
    received: int  # bytes that arrived and the socket's owner has not read yet
    inode: str


def tcp_sockets() -> list[TcpSocket]:
    """Every TCP socket of this machine's network namespace, read from /proc."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port = fields[1].split(":")
            host = socket.inet_ntoa(bytes.fromhex(address)[::-1]) if len(address) == 8 else address
            found.append(TcpSocket((host, int(port, 16)), fields[3], int(fields[4].split(":")[1], 16), fields[9]))
    return found
