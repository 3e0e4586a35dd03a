"""The handler called in-process as a function URL calls it, for tests of the HTTP routes
that need no server: `http`, and `wait_for_job`, which polls a job's status route to its end."""

import json
import time

from handler.app import lambda_handler
from handler.local import LocalContext, function_url_event


def http(method: str, path: str, body: object = None, **headers: str) -> tuple[int, dict]:
    raw = b"" if body is None else json.dumps(body).encode()
    event = function_url_event(method, path, {"Host": "worker.test", "Content-Type": "application/json", **headers}, raw)
    result = lambda_handler(event, LocalContext())
    return result["statusCode"], json.loads(result["body"])


def wait_for_job(job_id: str, seconds: float = 120) -> tuple[dict, list[dict]]:
    """Poll the status route until the job ends; return its last record and all seen."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, body = http("GET", f"/api/render/status/{job_id}")
        assert status == 200, body
        seen.append(body)
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body, seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end: {seen[-1]}")
