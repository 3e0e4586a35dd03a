"""Signed callbacks of async jobs, to a real HTTP receiver on loopback (tests/support/
callback_receiver.py): what is sent and how it is signed, retries within the time left, and
the addresses a callback may not reach, refused at request time and at delivery. Jobs run in
the local pool; the Lambda path is tests/lambda_rie/test_callbacks.py."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from handler.auth import SecretSetting
from handler.callbacks import MAX_ATTEMPTS, RECORD_MARGIN_SECONDS, Delivery, call_back, check_url
from handler.environment import current_environment
from tests.support import scripts
from tests.support.callback_receiver import callback_receiver, verifies
from tests.support.handler_calls import http
from tests.support.processes import free_ports

SECRET = "whsec-for-tests-0f3a9c"
# Thirty one-second animations: a job still running when it is cancelled.
SLOW = "from manim import *\n\n\nclass Slow(Scene):\n    def construct(self):\n" + "".join(
    f"        self.play(FadeIn(Dot([{step % 5 - 2}, 0, 0])), run_time=1)\n" for step in range(30)
)
ROOT = Path(__file__).resolve().parents[2]


def render_async(callback_url: str, code: str = scripts.CIRCLE) -> tuple[int, dict]:
    return http("POST", "/api/render", {"codeContent": code, "quality": "-ql", "async": True, "callbackUrl": callback_url})


def settled(job_id: str, seconds: float = 120) -> dict:
    """The job's record once its callback has been delivered or given up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, record = http("GET", f"/api/render/status/{job_id}")
        assert status == 200, record
        callback = record["callback"]
        if callback["delivered"] or callback["error"]:
            return record
        time.sleep(0.05)
    raise AssertionError(f"the callback of {job_id} did not settle: {record}")


def test_a_finished_job_is_posted_to_its_callback_url_signed(configure):
    configure(WEBHOOK_SECRET=SECRET)
    with callback_receiver() as receiver:
        status, accepted = render_async(receiver.url)
        assert status == 202
        record = settled(accepted["jobId"])
        (received,) = receiver.wait_for(1)
    assert (received.method, received.path) == ("POST", "/hooks/render?from=worker")
    assert received.headers["content-type"] == "application/json"
    assert verifies(received, SECRET)
    assert not verifies(received, SECRET + "x")
    sent = received.json()
    # The record as the status route answered it when the job ended: before the delivery.
    assert sent["callback"] == {"url": receiver.url, "status": None, "attempts": 0, "delivered": False, "error": None}
    assert (sent["jobId"], sent["status"], sent["error"]) == (accepted["jobId"], "succeeded", None)
    assert sent["s3Key"].endswith("/DrawCircle.mp4") and sent["url"] == sent["result"]["url"]
    assert "request" not in sent
    fresh = {"url", "result", "callback", "updatedAt"}  # a new presigned URL on each answer; the delivery since
    assert {k: v for k, v in sent.items() if k not in fresh} == {k: v for k, v in record.items() if k not in fresh}
    assert record["callback"] == {"url": receiver.url, "status": 200, "attempts": 1, "delivered": True, "error": None}


def test_a_job_that_fails_calls_back_with_its_error(configure):
    configure(WEBHOOK_SECRET=SECRET)
    with callback_receiver() as receiver:
        _, accepted = render_async(receiver.url, scripts.RAISES_IN_CONSTRUCT)
        record = settled(accepted["jobId"])
        (received,) = receiver.wait_for(1)
    assert verifies(received, SECRET)
    sent = received.json()
    assert sent["status"] == record["status"] == "failed"
    assert sent["error"] == record["error"] and sent["error"]["statusCode"] == 422
    assert sent["error"]["errors"]["class"] == "script_error"
    assert record["callback"]["delivered"] is True


def test_a_cancelled_job_and_a_lost_one_call_back_too(configure):
    configure(WEBHOOK_SECRET=SECRET, JOB_STALL_SECONDS="5")
    with callback_receiver() as receiver:
        _, running = render_async(receiver.url, SLOW)
        while http("GET", f"/api/render/status/{running['jobId']}")[1]["status"] == "queued":
            time.sleep(0.05)
        assert http("POST", f"/api/render/cancel/{running['jobId']}")[0] == 202
        cancelled = settled(running["jobId"])
        _, lost = render_async(receiver.url)
        stalled = settled(lost["jobId"])  # finished: make its record look like a run that died
        stalled.update(status="rendering", updatedAt=time.time() - 6, callback={"url": receiver.url})
        record = {key: value for key, value in stalled.items() if key not in ("url", "s3Key")}
        current_environment().storage.write_json(f"jobs/{lost['jobId']}.json", {**record, "request": {}})
        given_up = settled(lost["jobId"])
        received = receiver.wait_for(3)
    assert cancelled["status"] == "cancelled" and given_up["status"] == "failed"
    sent = {(body["jobId"], body["status"]) for body in (attempt.json() for attempt in received)}
    assert {(running["jobId"], "cancelled"), (lost["jobId"], "failed")} <= sent
    assert all(verifies(attempt, SECRET) for attempt in received)


def test_answers_of_500_are_retried_and_the_attempts_recorded(configure):
    configure(WEBHOOK_SECRET=SECRET)
    with callback_receiver(500, 503) as receiver:
        _, accepted = render_async(receiver.url)
        record = settled(accepted["jobId"])
        received = receiver.wait_for(3)
    assert record["callback"] == {"url": receiver.url, "status": 200, "attempts": 3, "delivered": True, "error": None}
    assert len({attempt.body for attempt in received}) == 1  # the same body each time
    assert all(verifies(attempt, SECRET) for attempt in received)


def post(url: str, ends: float | None = None, secret: SecretSetting | None = None) -> Delivery:
    return call_back(url, {"jobId": "j1", "status": "succeeded"}, secret or SecretSetting(SECRET, None), None, ends)


def test_a_receiver_that_keeps_failing_is_given_up_after_the_last_attempt():
    with callback_receiver(*[500] * 10) as receiver:
        started = time.monotonic()
        delivery = post(receiver.url)
        took = time.monotonic() - started
    assert delivery == Delivery(
        url=receiver.url, status=500, attempts=MAX_ATTEMPTS, delivered=False, error="The receiver answered 500."
    )
    assert len(receiver.received) == MAX_ATTEMPTS
    assert 0.5 + 1 + 2 <= took < 10  # backed off between attempts


def test_other_answers_are_final():
    with callback_receiver(404, 302) as receiver:
        missing, redirected = post(receiver.url), post(receiver.url)
    assert (missing.status, missing.attempts, missing.delivered) == (404, 1, False)
    assert (redirected.status, redirected.attempts, redirected.delivered) == (302, 1, False)  # never followed


def test_retries_stop_with_the_invocations_time():
    (closed,) = free_ports(1)
    url = f"http://127.0.0.1:{closed}/"
    unbounded = post(url)
    assert (unbounded.attempts, unbounded.status, unbounded.delivered) == (MAX_ATTEMPTS, None, False)
    assert unbounded.error is not None and unbounded.error.startswith("ConnectionRefusedError")
    started = time.monotonic()
    bounded = post(url, ends=started + RECORD_MARGIN_SECONDS + 2)  # two seconds to spend
    assert 1 < bounded.attempts < MAX_ATTEMPTS
    assert time.monotonic() - started < 2.5


def test_the_secret_can_come_from_an_ssm_secure_string(configure, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws(), callback_receiver() as receiver:
        boto3.client("ssm").put_parameter(Name="/manim-worker/webhook-secret", Value=SECRET, Type="SecureString")
        configure(WEBHOOK_SECRET_PARAMETER="/manim-worker/webhook-secret")
        _, accepted = render_async(receiver.url)
        assert settled(accepted["jobId"])["callback"]["delivered"] is True
        assert verifies(receiver.wait_for(1)[0], SECRET)
        unreadable = post(receiver.url, secret=SecretSetting(None, "/manim-worker/no-such-parameter"))
    assert unreadable == Delivery(url=receiver.url, error="The webhook secret could not be read; nothing was sent.")
    assert len(receiver.received) == 1  # nothing unsigned went out


# What the request is refused for (400, located at the field), before any job exists.


def refused(body: dict) -> str:
    status, answer = http("POST", "/api/render", {"codeContent": scripts.CIRCLE, **body})
    assert status == 400, answer
    (problem,) = answer["errors"]
    assert problem["loc"] == ["body", "callbackUrl"]
    return problem["msg"]


def test_a_callback_needs_an_async_request_and_a_webhook_secret(configure):
    url = "http://127.0.0.1:9/hook"
    assert "no webhook secret" in refused({"async": True, "callbackUrl": url})
    configure(WEBHOOK_SECRET=SECRET)
    assert "needs async" in refused({"callbackUrl": url})
    assert "needs async" in refused({"async": False, "callbackUrl": url})


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://example.com/hook", "http or https"),
        ("http:///hook", "http or https"),
        ("https://user:password@example.com/hook", "user name or password"),
        ("http://example.com/a hook", "without spaces"),
        ("http://exämple.com/hook", "ASCII"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a metadata service's address"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254, a metadata service's address"),
        ("http://169.254.10.20:8080/", "169.254.10.20, a link-local address"),
        ("http://[fe80::1%25eth0]:8080/", "fe80::1, a link-local address"),
        ("http://[::ffff:169.254.169.254]/", "169.254.169.254, a metadata service's address"),
        ("http://0xa9fea9fe/", "169.254.169.254, a metadata service's address"),
        ("http://2852039166/", "169.254.169.254, a metadata service's address"),
    ],
)
def test_urls_refused_at_request_time(configure, url, says):
    configure(WEBHOOK_SECRET=SECRET)
    assert says in refused({"async": True, "callbackUrl": url})


def test_the_runtime_api_is_refused_at_request_time_and_never_contacted(configure, local_store):
    with callback_receiver() as receiver:  # standing in for the Runtime API
        configure(WEBHOOK_SECRET=SECRET, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{receiver.port}")
        for host in ("127.0.0.1", "127.0.0.2", "0.0.0.0", "[::1]", "[::ffff:127.0.0.1]"):
            says = refused({"async": True, "callbackUrl": f"http://{host}:{receiver.port}/2018-06-01/runtime/invocation/next"})
            assert says.endswith(f":{receiver.port}, the Lambda Runtime API"), says
        time.sleep(0.2)
        assert receiver.received == []
    assert not (local_store / "jobs").exists()  # no job was made
    check_url(f"http://127.0.0.1:{receiver.port + 1}/", f"127.0.0.1:{receiver.port}")  # another port is another server


def test_a_name_for_the_runtime_api_is_refused_at_delivery_and_never_contacted(configure):
    with callback_receiver() as receiver:
        configure(WEBHOOK_SECRET=SECRET, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{receiver.port}")
        status, accepted = render_async(f"http://localhost:{receiver.port}/2018-06-01/runtime/invocation/next")
        assert status == 202  # a name: nothing to tell until it is resolved
        record = settled(accepted["jobId"])
        assert receiver.received == []
    assert record["status"] == "succeeded"  # the job's outcome stands
    callback = record["callback"]
    assert (callback["delivered"], callback["status"]) == (False, None)
    assert callback["error"] == f"Refused: 127.0.0.1:{receiver.port}, the Lambda Runtime API"


# Names resolved at delivery: /etc/hosts of a private mount namespace makes them.

DELIVER_EACH = """\
import json, sys
from handler.auth import SecretSetting
from handler.callbacks import call_back
secret = SecretSetting(sys.argv[1], None)
print(json.dumps([call_back(url, {"jobId": "j1"}, secret, None, None).model_dump() for url in sys.argv[2:]]))
"""


def deliver_with_hosts(hosts: str, tmp_path: Path, urls: list[str]) -> list[dict]:
    """Each URL's delivery, by a process whose resolver reads `hosts` as /etc/hosts."""
    (tmp_path / "hosts").write_text(hosts)
    command = 'mount --bind "$0" /etc/hosts && exec "$1" -c "$2" "${@:3}"'
    result = subprocess.run(
        ["unshare", "--mount", "bash", "-c", command, tmp_path / "hosts", sys.executable, DELIVER_EACH, SECRET, *urls],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def can_make_mount_namespaces() -> bool:
    """Whether this process may make a mount namespace: root with unshare, and not in a
    container that withholds it (the image's and the bare Debian's test runs)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--mount", "true"], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not can_make_mount_namespaces(), reason="a mount namespace needs root, unshare and the right to use it")
def test_names_are_checked_after_resolving_every_address_and_connected_as_checked(tmp_path):
    hosts = textwrap.dedent("""\
        127.0.0.1 receiver.test mixed.test
        169.254.169.254 metadata.test mixed.test
        fe80::1 linklocal.test
    """)
    with callback_receiver() as receiver:
        port = receiver.port
        urls = [f"http://{name}:{port}/hook" for name in ("metadata.test", "mixed.test", "linklocal.test", "receiver.test")]
        metadata, mixed, linklocal, allowed = deliver_with_hosts(hosts, tmp_path, urls)
        (received,) = receiver.wait_for(1)
        time.sleep(0.2)
        assert len(receiver.received) == 1
    assert metadata["error"] == mixed["error"] == "Refused: 169.254.169.254, a metadata service's address"
    assert linklocal["error"] == "Refused: fe80::1, a link-local address"
    assert not any(delivery["delivered"] for delivery in (metadata, mixed, linklocal))
    assert (allowed["delivered"], allowed["attempts"]) == (True, 1)
    assert received.headers["host"] == f"receiver.test:{port}"  # the name, sent to the address checked
    assert verifies(received, SECRET)
