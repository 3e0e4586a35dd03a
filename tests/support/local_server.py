"""`make serve`'s server (`python -m handler.local serve`) in a process of its own, on the
embedded store, and its HTTP API as a caller uses it: `local_server`, `request`, and
`finished`, which polls a job to its end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.processes import free_ports

PROJECT = Path(__file__).resolve().parents[2]


def worker_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This process's environment without a bucket (so the embedded store), the worker's and
    the store's folders under `tmp_path`, and `extra`."""
    env = {key: value for key, value in os.environ.items() if key != "S3_BUCKET_NAME"}
    env.update(RENDER_WORK_DIR=str(tmp_path / "jobs"), LOCAL_STORE_DIR=str(tmp_path / "store"), **extra)
    return env


def request(url: str, body: object | None = None) -> tuple[int, dict[str, Any]]:
    """GET `url`, or POST `body` to it as JSON; the status and the JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@contextmanager
def local_server(tmp_path: Path, **env: str) -> Iterator[str]:
    """`make serve`'s server on a free port, until the block ends; yields its base URL."""
    (port,) = free_ports(1)
    process = subprocess.Popen(
        [sys.executable, "-m", "handler.local", "serve"],
        cwd=PROJECT,
        env=worker_env(tmp_path, PORT=str(port), **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=5).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the local server did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def finished(base: str, job_id: str, seconds: float = 120) -> dict[str, Any]:
    """Poll the job's status route until it has succeeded or failed; its last record."""
    deadline = time.monotonic() + seconds
    while (record := request(f"{base}/api/render/status/{job_id}")[1])["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, record
        time.sleep(0.05)
    return record
