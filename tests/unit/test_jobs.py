"""Async jobs and status polling, in-process with the local dispatcher (the pool that `make
serve` uses); the Lambda self-invoke path is in tests/lambda_rie/test_jobs.py."""

import itertools
import json
import time
from pathlib import Path

import pytest

from handler.app import lambda_handler
from handler.environment import Environment
from handler.jobs import JobRecord, create_job, run_job
from handler.local import LocalContext
from handler.models import RenderRequest
from tests.support import scripts
from tests.support.handler_calls import http, wait_for_job

# About three seconds of rendering at -ql, in thirty animations: long enough to watch.
MANY_ANIMATIONS = """\
from manim import *


class Steps(Scene):
    def construct(self):
        dot = Dot()
        for _ in range(30):
            self.play(dot.animate.shift(RIGHT * 0.1), run_time=1)
"""


def test_an_async_request_is_accepted_at_once_and_polled_to_success(local_store):
    started = time.monotonic()
    status, accepted = http("POST", "/api/render", {"codeContent": MANY_ANIMATIONS, "quality": "-ql", "async": True})
    assert time.monotonic() - started < 1
    assert status == 202
    assert accepted["status"] == "queued"
    assert accepted["statusUrl"] == f"http://worker.test/api/render/status/{accepted['jobId']}"
    final, seen = wait_for_job(accepted["jobId"])
    statuses = [record["status"] for record in seen]
    order = ["queued", "rendering", "uploading", "succeeded"]
    assert statuses == sorted(statuses, key=order.index)  # never backwards
    rendering = [record["progress"] for record in seen if record["status"] == "rendering" and record["progress"]]
    assert rendering and 0 < rendering[-1]["animations"] <= 30 and rendering[-1]["frames"] > 0
    # What a person reads: the share of the plan's frames drawn, never going back, and the time left.
    assert {progress["totalFrames"] for progress in rendering} == {30 * 15}
    percents = [progress["percent"] for progress in rendering]
    assert percents == sorted(percents) and percents[0] >= 0 and percents[-1] <= 99
    assert percents[-1] == rendering[-1]["frames"] * 100 // (30 * 15)
    assert all(progress["etaSeconds"] >= 0 for progress in rendering if progress["frames"])
    assert (final["progress"]["percent"], final["progress"]["etaSeconds"]) == (100, 0)
    assert final["s3Key"].endswith("/Steps.mp4") and (local_store / final["s3Key"]).is_file()
    assert final["url"] == final["result"]["url"] and final["result"]["cached"] is False
    assert final["result"]["timings"]["renderSeconds"] > 0 and final["error"] is None


def test_a_failed_job_carries_the_same_error_as_a_synchronous_request(local_store):
    _, sync = http("POST", "/api/render", {"codeContent": scripts.RAISES_IN_CONSTRUCT, "quality": "-ql"})
    _, accepted = http("POST", "/api/render", {"codeContent": scripts.RAISES_IN_CONSTRUCT, "quality": "-ql", "async": True})
    final, _ = wait_for_job(accepted["jobId"])
    assert final["status"] == "failed"
    assert final["error"] == {"statusCode": 422, **sync}
    assert final["error"]["errors"]["class"] == "script_error"


def http_api_status_event(job_id: str) -> dict:
    """What the HTTP API's signed status route sends (payload 2.0), from the bundled GET event."""
    event = json.loads((Path(__file__).parents[2] / "events" / "http-api-health.json").read_text())
    path = f"/api/render/status/{job_id}"
    event["routeKey"] = event["requestContext"]["routeKey"] = "GET /api/render/status/{jobId}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["pathParameters"] = {"jobId": job_id}
    caller = {"accountId": "123456789012", "userArn": "arn:aws:iam::123456789012:user/caller"}
    event["requestContext"]["authorizer"] = {"iam": caller}
    return event


def test_the_http_apis_status_route_answers_the_jobs_record(local_store):
    _, accepted = http("POST", "/api/render", {"codeContent": scripts.CIRCLE, "quality": "-ql", "async": True})
    final, _ = wait_for_job(accepted["jobId"])
    result = lambda_handler(http_api_status_event(accepted["jobId"]), LocalContext())
    body = json.loads(result["body"])
    assert (result["statusCode"], body["jobId"], body["status"]) == (200, accepted["jobId"], "succeeded")
    assert body == final  # the same record as through the function URL
    missing = lambda_handler(http_api_status_event("no-such-job"), LocalContext())
    assert missing["statusCode"] == 404


def test_unknown_and_malformed_job_ids(local_store):
    missing = {"message": "No job 'no-such-job'.", "errors": {"type": "JobNotFound"}}
    assert http("GET", "/api/render/status/no-such-job") == (404, missing)
    assert http("GET", "/api/render/status/bad.id")[0] == 400
    assert lambda_handler({"action": "status", "jobId": "nope"}, LocalContext())["statusCode"] == 404


def test_a_client_job_id_makes_repeating_the_request_return_the_same_job(local_store):
    body = {"codeContent": scripts.CIRCLE, "quality": "-ql", "async": True, "jobId": "my-job-1"}
    first = http("POST", "/api/render", body)[1]
    second = http("POST", "/api/render", body)[1]
    assert first["jobId"] == second["jobId"] == "my-job-1"
    final, _ = wait_for_job("my-job-1")
    assert final["status"] == "succeeded"
    assert http("POST", "/api/render", body)[1]["status"] == "succeeded"  # not started again


def test_an_idempotency_key_header_does_the_same(local_store):
    body = {"codeContent": scripts.CIRCLE, "quality": "-ql", "async": True}
    first = http("POST", "/api/render", body, **{"Idempotency-Key": "order-42"})[1]
    second = http("POST", "/api/render", body, **{"Idempotency-Key": "order-42"})[1]
    third = http("POST", "/api/render", body, **{"Idempotency-Key": "order-43"})[1]
    assert first["jobId"] == second["jobId"] != third["jobId"]
    for job in (first["jobId"], third["jobId"]):
        assert wait_for_job(job)[0]["status"] == "succeeded"


@pytest.mark.parametrize("job_id", ["", "a" * 65, "../../etc", "with space"])
def test_a_bad_client_job_id_is_400(job_id):
    status, body = http("POST", "/api/render", {"codeContent": scripts.CIRCLE, "async": True, "jobId": job_id})
    assert status == 400 and body["errors"][0]["loc"] == ["body", "jobId"]


def test_direct_invokes_can_be_async_and_poll(local_store):
    accepted = lambda_handler({"codeContent": scripts.CIRCLE, "quality": "-ql", "async": True}, LocalContext())
    assert accepted["statusCode"] == 202 and accepted["status"] == "queued"
    deadline = time.monotonic() + 60
    while True:
        record = lambda_handler({"action": "status", "jobId": accepted["jobId"]}, LocalContext())
        if record["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert record["status"] == "succeeded" and record["s3Key"].endswith("/DrawCircle.mp4")


def test_an_async_chunked_job_reports_its_chunks(local_store):
    code = MANY_ANIMATIONS
    _, accepted = http("POST", "/api/render", {"codeContent": code, "quality": "-ql", "async": True, "chunks": 2})
    final, seen = wait_for_job(accepted["jobId"])
    assert final["status"] == "succeeded" and final["result"]["chunks"] == 2
    chunked = [record["progress"] for record in seen if record["progress"] and "chunks" in record["progress"]]
    assert chunked and all(progress["chunks"] == 2 for progress in chunked)
    assert max(progress["frames"] for progress in chunked) <= 30 * 15  # frames drawn, never more than the scene has


def queued(environment: Environment, job_id: str) -> JobRecord:
    """A job of the circle script, queued and never dispatched (its invocation not yet come)."""
    body = {"codeContent": scripts.CIRCLE, "quality": "-ql", "async": True}
    request = RenderRequest.model_validate(body, context={"limits": environment.settings.request_limits})
    return create_job(environment.storage, request, job_id)[0]


def test_a_running_job_is_cancelled_within_seconds_and_nothing_is_uploaded(local_store):
    _, accepted = http("POST", "/api/render", {"codeContent": MANY_ANIMATIONS, "quality": "-ql", "async": True})
    job = accepted["jobId"]
    while http("GET", f"/api/render/status/{job}")[1]["status"] == "queued":
        time.sleep(0.05)
    status, answer = http("POST", f"/api/render/cancel/{job}")
    assert (status, answer["cancelRequested"]) == (202, True)
    asked = time.monotonic()
    final, _ = wait_for_job(job)
    assert final["status"] == "cancelled" and time.monotonic() - asked < 5
    assert final["result"] is None and not list((local_store / "videos").rglob("*.mp4"))
    conflict = {"message": f"Job '{job}' has already ended: cancelled.", "errors": {"type": "JobEnded", "status": "cancelled"}}
    assert http("POST", f"/api/render/cancel/{job}") == (409, conflict)
    assert http("POST", "/api/render/cancel/no-such-job")[0] == 404
    # The worker is started again for the next render.
    assert http("POST", "/api/render", {"codeContent": scripts.CIRCLE, "quality": "-ql"})[0] == 200


def test_a_direct_cancel_of_a_finished_job_is_409_and_of_an_unknown_one_404(local_store):
    accepted = lambda_handler({"codeContent": scripts.CIRCLE, "quality": "-ql", "async": True}, LocalContext())
    wait_for_job(accepted["jobId"])
    assert lambda_handler({"action": "cancel", "jobId": accepted["jobId"]}, LocalContext())["statusCode"] == 409
    assert lambda_handler({"action": "cancel", "jobId": "no-such-job"}, LocalContext())["statusCode"] == 404


def test_a_queued_job_is_cancelled_at_once_and_never_runs(configure, local_store):
    environment = configure()
    queued(environment, "waiting")
    status, answer = http("POST", "/api/render/cancel/waiting")
    assert (status, answer["status"]) == (200, "cancelled")
    run_job(environment, "waiting", None)  # its invocation arrives late
    assert http("GET", "/api/render/status/waiting")[1]["status"] == "cancelled"
    assert not (local_store / "videos").exists()


def test_a_job_without_a_sign_of_life_is_reported_lost(configure, local_store):
    environment = configure(JOB_STALL_SECONDS="5")
    for status in ("queued", "rendering"):
        record = queued(environment, status)
        record.status = status
        record.save(environment.storage)
        assert http("GET", f"/api/render/status/{status}")[1]["status"] == status  # alive a moment ago
        record.updated_at = time.time() - 6
        environment.storage.write_json(f"jobs/{status}.json", record.model_dump(by_alias=True))
        final = http("GET", f"/api/render/status/{status}")[1]
        assert (final["status"], final["error"]["errors"]["class"]) == ("failed", "lost")
        assert "ended without an answer" in final["error"]["message"]


# Six seconds without a frame drawn: the script thinks for three seconds before its first
# animation, in the plan pass and again in the render.
THINKS_FIRST = """\
import time
from manim import *


class Thinks(Scene):
    def construct(self):
        time.sleep(3)
        self.play(FadeIn(Dot()), run_time=0.2)
"""


def test_a_running_job_touches_its_record_while_nothing_else_moves(configure, local_store):
    configure(JOB_STALL_SECONDS="5")  # so touched every 5 / 6 s; polling reads would give it up after 5
    _, accepted = http("POST", "/api/render", {"codeContent": THINKS_FIRST, "quality": "-ql", "async": True})
    final, seen = wait_for_job(accepted["jobId"])
    assert final["status"] == "succeeded", final
    touched = sorted({record["updatedAt"] for record in seen})
    assert final["updatedAt"] - final["createdAt"] > 5
    assert max(later - earlier for earlier, later in itertools.pairwise(touched)) < 2


def test_lambdas_record_of_a_failed_invocation_gives_its_job_up(configure, local_store):
    environment = configure()
    queued(environment, "died")
    record = {
        "version": "1.0",
        "requestContext": {"requestId": "r", "functionArn": "arn:aws:lambda:::function:f", "condition": "EventAgeExceeded"},
        "requestPayload": {"action": "runJob", "jobId": "died"},
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "Runtime exited"},
    }
    assert lambda_handler(record, LocalContext()) == {"recorded": True}
    final = http("GET", "/api/render/status/died")[1]
    assert (final["status"], final["error"]["errors"]["class"]) == ("failed", "lost")
    # A record of anything else is only logged: it never fails (it would come back here).
    assert lambda_handler({**record, "requestPayload": {"nonsense": 1}}, LocalContext()) == {"recorded": True}
