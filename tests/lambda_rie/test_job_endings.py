"""Every async job ends, and says how, on the Lambda invoke path: a job whose invocation never
ran or failed without an answer is given up as `lost`, and a cancelled job stops wherever it
runs, chunks included, leaving nothing behind. Three emulated execution environments share a
bucket; the stand-in for the Lambda service delivers the function's own invocations to them,
or loses one, or reports one failed to the failure destination (this function), as Lambda does."""

import time
from collections.abc import Iterator

import pytest

from tests.support import scripts
from tests.support.lambda_function import poll_job
from tests.support.lambda_service import LambdaService
from tests.support.seaweedfs import S3Server

ENVIRONMENTS = 3
FIRST_UID = 2201
STALL_SECONDS = 5
SETTINGS = {"JOB_STALL_SECONDS": str(STALL_SECONDS)}

# Sixty one-second animations: about six seconds of drawing at -ql, in two chunks of three.
LONG = """\
from manim import *


class Long(Scene):
    def construct(self):
        dot = Dot()
        for step in range(60):
            self.play(dot.animate.move_to([step % 7 - 3, step % 5 - 2, 0]), run_time=1)
"""


@pytest.fixture(autouse=True)
def delivered(service: LambdaService) -> Iterator[None]:
    """Each test decides which events the stand-in service loses; after it, all are delivered."""
    yield
    service.fate = lambda _event: None


def objects(s3_server: S3Server, bucket: str, prefix: str) -> list[str]:
    listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", [])]


def test_a_job_whose_invocation_never_ran_is_reported_lost(functions, service):
    service.fate = lambda event: "dropped" if event.get("jobId") == "never-ran" else None
    submitted = time.monotonic()
    accepted = functions[0].invoke({"codeContent": scripts.CIRCLE, "quality": "-ql", "async": True, "jobId": "never-ran"})
    assert accepted["status"] == "queued"
    record = poll_job(functions[0], "never-ran", seconds=30)
    assert (record["status"], record["error"]["errors"]["class"]) == ("failed", "lost")
    assert "ended without an answer" in record["error"]["message"]
    assert STALL_SECONDS <= time.monotonic() - submitted < STALL_SECONDS + 5


def test_lambdas_failure_record_gives_the_job_up_at_once(functions, service):
    service.fate = lambda event: "EventAgeExceeded" if event.get("jobId") == "aged-out" else None
    submitted = time.monotonic()
    functions[0].invoke({"codeContent": scripts.CIRCLE, "quality": "-ql", "async": True, "jobId": "aged-out"})
    record = poll_job(functions[0], "aged-out", seconds=30)
    assert (record["status"], record["error"]["errors"]["class"]) == ("failed", "lost")
    assert time.monotonic() - submitted < STALL_SECONDS  # told, not found stalled


def test_a_chunked_job_is_cancelled_wherever_it_runs_and_leaves_nothing(functions, service, s3_server, bucket):
    coordinator = functions[0]
    accepted = coordinator.invoke({"codeContent": LONG, "quality": "-ql", "async": True, "chunks": 2, "cache": False})
    job = accepted["jobId"]
    deadline = time.monotonic() + 60
    while not (progress := coordinator.invoke({"action": "status", "jobId": job}).get("progress") or {}).get("frames"):
        assert time.monotonic() < deadline, "the chunks never started drawing"
        time.sleep(0.1)
    assert progress["totalFrames"] == 60 * 15 and 0 <= progress["percent"] <= 99 and progress["chunks"] == 2
    cancel = coordinator.invoke({"action": "cancel", "jobId": job})
    assert (cancel["statusCode"], cancel["cancelRequested"]) == (202, True)
    asked = time.monotonic()
    record = poll_job(coordinator, job, seconds=30)
    assert record["status"] == "cancelled" and time.monotonic() - asked < 5
    chunk_events = [call["payload"] for call in service.received if call["payload"].get("action") == "renderChunk"]
    assert len(chunk_events) == 2
    # Each chunk's invocation stops too: both end well before their three seconds of drawing would.
    while len([d for d in service.delivered if d.event.get("action") == "renderChunk" and d.event in chunk_events]) < 2:
        assert time.monotonic() - asked < 10, "a chunk's invocation did not stop"
        time.sleep(0.1)
    assert objects(s3_server, bucket, "jobs/chunks-") == []
    assert objects(s3_server, bucket, "videos/") == []
    assert coordinator.invoke({"action": "cancel", "jobId": job})["statusCode"] == 409
    # Every environment goes on serving.
    for function in functions:
        assert function.invoke({"codeContent": scripts.CIRCLE, "quality": "-ql"})["s3Key"].endswith(".mp4")
