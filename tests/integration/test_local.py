"""The local ways to run the worker: `make serve`'s server and `make run`'s one-shot invoke."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import scripts
from tests.support.hostile import TURN_OTHERS_RED
from tests.support.local_server import PROJECT, finished, local_server, request, worker_env
from tests.support.task_root import readable_tempdir, world_traversable
from tests.support.video import decode

# The seed README's integration example, as its callers run it (type annotation removed so
# that plain Node runs it).
SEED_FETCH_EXAMPLE = """
async function generateVideo(manimCode) {
  try {
    const response = await fetch(`${process.env.WORKER_URL}/api/render`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        codeContent: manimCode,
        quality: "-qm", // medium quality
      }),
    });

    if (!response.ok) {
      const errorData = await response.json();
      throw new Error(errorData.message || "Failed to render video.");
    }

    const { s3Key } = await response.json();
    console.log(`Video uploaded successfully. S3 Key: ${s3Key}`);

    // You can now store this s3Key in your database.
    return s3Key;
  } catch (error) {
    console.error("Error calling worker service:", error);
  }
}
generateVideo(process.env.MANIM_CODE);
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    with local_server(tmp_path_factory.mktemp("server")) as base:
        yield base


def test_health(server):
    status, body = request(f"{server}/health")
    assert (status, body["message"]) == (200, "Health is OK")


def test_render_and_fetch_the_video_from_its_url(server):
    status, body = request(f"{server}/api/render", {"codeContent": scripts.CIRCLE, "quality": "-ql"})
    assert status == 200, body
    assert body["url"] == f"{server}/{body['s3Key']}"
    with urllib.request.urlopen(body["url"], timeout=10) as response:
        assert response.headers["Content-Type"] == "video/mp4"
        video = Path(os.environ.get("TMPDIR", "/tmp")) / f"fetched-{os.getpid()}.mp4"
        video.write_bytes(response.read())
    try:
        assert len(decode(video).frames) == 15
    finally:
        video.unlink()


def test_errors_keep_the_seeds_shape(server):
    status, body = request(f"{server}/api/render", {"codeContent": scripts.CIRCLE, "quality": "-q9"})
    assert status == 400 and set(body) == {"message", "errors"}
    assert request(f"{server}/nowhere")[0] == 404


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_the_seeds_fetch_example_works_unchanged(server, tmp_path):
    script = tmp_path / "caller.mjs"
    script.write_text(SEED_FETCH_EXAMPLE)
    result = subprocess.run(
        ["node", str(script)],
        env={**os.environ, "WORKER_URL": server, "MANIM_CODE": scripts.CIRCLE},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.stderr == ""
    assert result.stdout.startswith("Video uploaded successfully. S3 Key: videos/")
    assert result.stdout.strip().endswith("/DrawCircle.mp4")


def test_make_run_invocation_renders_the_bundled_example(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "handler.local", "invoke", "events/function-url-render.json"],
        cwd=PROJECT,
        env=worker_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout[result.stdout.index('{\n  "statusCode"') :])
    assert response["statusCode"] == 200
    video = tmp_path / "store" / response["body"]["s3Key"]
    assert f"The video is at {video.as_uri()}" in result.stderr
    assert decode(video).duration == pytest.approx(3.5, abs=0.1)


def test_the_server_honours_the_api_token(tmp_path):
    with local_server(tmp_path, API_TOKEN="local-token") as base:
        assert request(f"{base}/api/render", {"codeContent": "x", "quality": "-q?"})[0] == 401
        assert request(f"{base}/health")[0] == 200
        authorised = urllib.request.Request(
            f"{base}/api/render",
            data=json.dumps({"codeContent": "x", "quality": "-q?"}).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer local-token"},
        )
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(authorised, timeout=30)
        assert answer.value.code == 400


def test_an_async_job_through_the_server(server):
    status, accepted = request(f"{server}/api/render", {"codeContent": scripts.CIRCLE, "quality": "-qm", "async": True})
    assert status == 202 and accepted["statusUrl"] == f"{server}/api/render/status/{accepted['jobId']}"
    deadline = time.monotonic() + 60
    while (record := request(accepted["statusUrl"])[1])["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, record
        time.sleep(0.05)
    assert record["status"] == "succeeded"
    with urllib.request.urlopen(record["url"], timeout=10) as response:
        assert response.headers["Content-Type"] == "video/mp4" and response.read()
    assert request(f"{server}/api/render/status/unknown-job")[0] == 404


# The local server run as root runs the worker and its jobs as a uid of their own
# (LOCAL_RENDER_UID): a job can then write neither the embedded store nor the folder of another
# request waiting its turn. With LOCAL_RENDER_UID=0 (no separation) the same job can.
VANDAL = """
import os, time
from manim import *
{turn_others_red}
class Vandal(Scene):
    def construct(self):
        give_up, mine = time.monotonic() + 6, os.path.dirname(os.getcwd())
        while time.monotonic() < give_up:
            for folder, _, names in os.walk({store!r}):
                for name in names:
                    try:
                        with open(os.path.join(folder, name), "r+b") as handle:
                            handle.write(b"vandalised")
                    except OSError:
                        pass
            turn_others_red({jobs!r}, mine)
            time.sleep(0.01)
        self.wait(0.1)
"""


@pytest.mark.parametrize(("uid", "separate"), [("64999", True), ("0", False)])
def test_as_root_the_servers_jobs_run_as_a_uid_of_their_own(uid, separate):
    # Only where the code is reachable by other users (not a checkout under /root): elsewhere
    # the server runs jobs as root, uncontained, and says so.
    contained = separate and world_traversable(PROJECT) and world_traversable(Path(sys.prefix))
    with readable_tempdir("local-server-") as folder, local_server(folder, LOCAL_RENDER_UID=uid) as base:
        health = request(f"{base}/health")[1]
        assert health["worker"]["protections"]["uid_separation"] is contained
        status, first = request(f"{base}/api/render", {"codeContent": scripts.CIRCLE, "quality": "-ql"})
        assert status == 200, first
        stored = (folder / "store" / first["s3Key"]).read_bytes()
        jobs = str(folder / "jobs" / "jobs")
        vandal = VANDAL.format(store=str(folder / "store" / "videos"), jobs=jobs, turn_others_red=TURN_OTHERS_RED)
        _, hostile = request(f"{base}/api/render", {"codeContent": vandal, "quality": "-ql", "async": True})
        while request(f"{base}/api/render/status/{hostile['jobId']}")[1]["status"] == "queued":
            time.sleep(0.05)
        again = {"codeContent": scripts.CIRCLE, "quality": "-ql", "async": True, "cache": False}
        _, waiting = request(f"{base}/api/render", again)
        record = finished(base, waiting["jobId"])
        finished(base, hostile["jobId"])
        assert record["status"] == "succeeded", record
        circle = decode(folder / "store" / record["s3Key"]).frames[-1][240, 427]
        unharmed = (folder / "store" / first["s3Key"]).read_bytes() == stored and bool(circle[2] > 100)
        assert unharmed is contained, f"store unchanged and circle blue: {unharmed}"
