"""Async jobs on the Lambda invoke path: the function answers 202, invokes itself with
`InvocationType=Event` through boto3 (received here by a stand-in for the Lambda service,
which delivers the event back to the emulated function), and the job is polled to its end, or
calls back when it ends."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import scripts
from tests.support.callback_receiver import callback_receiver, verifies
from tests.support.lambda_function import dockerfile_handler, event, function_env, poll_job
from tests.support.lambda_runtime import LambdaRuntime, lambda_runtime
from tests.support.lambda_service import LambdaService
from tests.support.seaweedfs import S3Server

WEBHOOK_SECRET = "whsec-rie-5d1e07"


@pytest.fixture(scope="module")
def function(s3_server: S3Server, service: LambdaService, lambda_task_root: Path) -> Iterator[LambdaRuntime]:
    env = function_env(s3_server, s3_server.new_bucket("jobs"), LAMBDA_ENDPOINT_URL=service.url, WEBHOOK_SECRET=WEBHOOK_SECRET)
    with lambda_runtime(dockerfile_handler(), lambda_task_root, env) as runtime:
        service.targets.append(runtime)
        yield runtime


def test_a_direct_async_invoke_runs_in_a_self_invocation(function, service):
    accepted = function.invoke({"codeContent": scripts.CIRCLE, "quality": "-ql", "async": True})
    assert accepted["statusCode"] == 202 and accepted["status"] == "queued"
    assert accepted["statusRequest"] == {"action": "status", "jobId": accepted["jobId"]}
    record = poll_job(function, accepted["jobId"])
    assert record["status"] == "succeeded", record
    assert record["s3Key"].endswith("/DrawCircle.mp4")
    call = next(call for call in service.received if call["payload"].get("jobId") == accepted["jobId"])
    run_job = {"action": "runJob", "jobId": accepted["jobId"]}
    assert call == {"function": "function", "invocationType": "Event", "payload": run_job}


def test_an_http_async_request_and_a_failing_job(function):
    render = event("function-url-render.json")
    render["body"] = json.dumps({"codeContent": scripts.RAISES_IN_CONSTRUCT, "quality": "-ql", "async": True})
    result = function.invoke(render)
    accepted = json.loads(result["body"])
    assert result["statusCode"] == 202
    assert accepted["statusUrl"].startswith("https://")
    assert accepted["statusUrl"].endswith(f"/api/render/status/{accepted['jobId']}")
    record = poll_job(function, accepted["jobId"])
    assert record["status"] == "failed"
    assert record["error"]["statusCode"] == 422 and record["error"]["errors"]["type"] == "NameError"
    status = event("function-url-health.json")
    status["rawPath"] = status["requestContext"]["http"]["path"] = f"/api/render/status/{accepted['jobId']}"
    polled = function.invoke(status)
    assert polled["statusCode"] == 200 and json.loads(polled["body"])["status"] == "failed"


def test_a_repeated_delivery_does_not_render_twice(function, service):
    accepted = function.invoke({"codeContent": scripts.CIRCLE, "quality": "-qm", "async": True, "jobId": "once-only"})
    first = poll_job(function, "once-only")
    again = function.invoke({"action": "runJob", "jobId": "once-only"})  # Lambda may deliver an event twice
    assert again == {"jobId": "once-only", "status": "succeeded"}
    later = poll_job(function, "once-only")
    assert (later["updatedAt"], later["s3Key"]) == (first["updatedAt"], first["s3Key"])  # not rewritten
    assert accepted["jobId"] == "once-only"


def test_an_async_job_with_a_callback_url_ends_with_a_signed_post(function):
    with callback_receiver() as receiver:
        render = event("function-url-render.json")
        render["body"] = json.dumps({"codeContent": scripts.CIRCLE, "quality": "-ql", "async": True, "callbackUrl": receiver.url})
        result = function.invoke(render)
        assert result["statusCode"] == 202, result
        job_id = json.loads(result["body"])["jobId"]
        (received,) = receiver.wait_for(1, seconds=120)
        saved = time.monotonic() + 30  # the POST has arrived; its outcome is saved next
        while not (record := poll_job(function, job_id))["callback"]["attempts"] and time.monotonic() < saved:
            time.sleep(0.05)
    assert verifies(received, WEBHOOK_SECRET)
    sent = received.json()
    assert (sent["jobId"], sent["status"]) == (job_id, "succeeded")
    assert sent["s3Key"] == record["s3Key"] and sent["s3Key"].endswith("/DrawCircle.mp4")
    assert record["callback"] == {"url": receiver.url, "status": 200, "attempts": 1, "delivered": True, "error": None}
