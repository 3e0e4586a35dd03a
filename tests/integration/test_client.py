"""The client, `manim-lambda` and `manim_lambda`, against the real local server: a render with
its progress bar and the file downloaded, a script's error at its line, status and cancel, an
interrupted render, and SigV4 signing checked by a stand-in for a function URL."""

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from manim_lambda import HttpService, RequestRejected, ScriptError, ServiceError, client, render
from tests.support import scripts
from tests.support.client_cli import CLI, client_env, manim_lambda
from tests.support.function_url import function_url
from tests.support.local_server import local_server, request
from tests.support.processes import serving
from tests.support.video import decode

# Long enough to be cancelled while it renders (a minute of frames at -ql).
SPINNING = """\
from manim import *


class Spinning(Scene):
    def construct(self):
        self.play(Rotate(Square(), angle=100), run_time=60)
"""
# The stand-in function URL's one identity.
KEY, SECRET = "AKIDCLIENTTEST0001", "client-test-secret/0001"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    with local_server(tmp_path_factory.mktemp("server")) as base:
        yield base


def scene(folder: Path, code: str) -> Path:
    (folder / "scene.py").write_text(code)
    return folder


def test_the_cli_renders_with_a_progress_bar_and_saves_the_video(server, tmp_path):
    folder = scene(tmp_path, scripts.CIRCLE)
    done = manim_lambda("render", "scene.py", "--quality", "-ql", "--output", "out.mp4", "--url", server, cwd=folder)
    assert done.returncode == 0, done.stderr
    assert "succeeded  100%|██████████████████████████████|" in done.stderr
    assert done.stdout.startswith("out.mp4: DrawCircle (videos/")
    video = decode(tmp_path / "out.mp4")
    assert (video.width, video.height, len(video.frames)) == (854, 480, 15)


@pytest.mark.parametrize(
    ("code", "shown"),
    [
        (scripts.TYPO, "scene.py:7: NameError: name 'Circel' is not defined"),
        (scripts.SYNTAX_ERROR, "scene.py:5: SyntaxError: expected ':'"),
        (scripts.NO_SCENE, "scene.py: NoSceneFound: The script defines no scene"),
    ],
)
def test_a_script_error_exits_non_zero_at_its_line(server, tmp_path, code, shown):
    failed = manim_lambda("render", "scene.py", "-o", "out.mp4", "--quality=-ql", "--url", server, cwd=scene(tmp_path, code))
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[-1].startswith(shown), failed.stderr
    assert not (tmp_path / "out.mp4").exists()


def test_a_rejected_request_says_why(server, tmp_path):
    folder = scene(tmp_path, scripts.CIRCLE)
    rejected = manim_lambda("render", "scene.py", "-o", "out.mp4", "--url", server, "--scene", "9lives", cwd=folder)
    assert rejected.returncode == 1
    assert rejected.stderr.startswith("manim-lambda: 400: ")  # no progress bar: no job was made
    assert rejected.stderr.endswith("\n  body.sceneName: Value error, sceneName must be a Python class name\n")


def test_a_script_that_cannot_be_read_is_named(server, tmp_path):
    missing = manim_lambda("render", "nowhere.py", "-o", "out.mp4", "--url", server, cwd=tmp_path)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == "manim-lambda: [Errno 2] No such file or directory: 'nowhere.py'\n"


def test_status_and_cancel_of_a_running_job(server, tmp_path):
    status, accepted = request(f"{server}/api/render", {"codeContent": SPINNING, "quality": "-ql", "async": True})
    assert status == 202
    job = accepted["jobId"]
    looked = manim_lambda("status", job, "--url", server, cwd=tmp_path)
    assert looked.returncode == 0 and json.loads(looked.stdout)["status"] in ("queued", "rendering")
    stopped = manim_lambda("cancel", job, "--url", server, cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["jobId"] == job
    deadline = time.monotonic() + 30
    while json.loads(manim_lambda("status", job, "--url", server, cwd=tmp_path).stdout)["status"] != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    again = manim_lambda("cancel", job, "--url", server, cwd=tmp_path)
    assert again.returncode == 1 and f"409: Job '{job}' has already ended: cancelled." in again.stderr
    unknown = manim_lambda("status", "no-such-job", "--url", server, cwd=tmp_path)
    assert unknown.returncode == 1 and "404: No job 'no-such-job'." in unknown.stderr


def test_an_interrupted_render_cancels_its_job(server, tmp_path):
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        running = subprocess.Popen(
            [str(CLI), "render", "scene.py", "-o", "out.mp4", "--quality=-ql", "--url", server],
            cwd=scene(tmp_path, SPINNING), env=client_env(), stderr=stderr, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while "rendering" not in log.read_text():
            assert time.monotonic() < deadline and running.poll() is None, log.read_text()
            time.sleep(0.1)
        running.send_signal(signal.SIGINT)
        assert running.wait(timeout=30) == 130
    shown = log.read_text()
    job = shown.rsplit(", job ", 1)[1].split()[0]
    assert shown.rstrip().endswith("manim-lambda: interrupted")
    deadline = time.monotonic() + 30
    while request(f"{server}/api/render/status/{job}")[1]["status"] != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_the_library_renders_and_reports_progress(server, tmp_path):
    seen: list[str] = []
    result = render(
        scripts.ONE_SECOND,
        HttpService(server),
        quality="-ql",
        output=tmp_path / "ring.mp4",
        on_progress=lambda record: seen.append(record["status"]),
        poll_seconds=0.05,
    )
    assert seen[-1] == "succeeded" and result.path == tmp_path / "ring.mp4"
    assert result.key.endswith("/Ring.mp4") and result.url == f"{server}/{result.key}"
    assert not result.cached and result.seconds >= result.timings["totalSeconds"] > 0
    assert len(decode(tmp_path / "ring.mp4").frames) == 15
    again = render(scripts.ONE_SECOND, HttpService(server), quality="-ql")
    assert again.cached and again.key == result.key and again.path is None
    with pytest.raises(ScriptError) as failed:
        render(scripts.TYPO, HttpService(server), quality="-ql")
    assert (failed.value.line, failed.value.kind, failed.value.status) == (7, "NameError", 422)
    assert 'File "scene.py", line 7' in (failed.value.traceback or "")


def test_a_token_is_sent_when_the_server_wants_one(tmp_path):
    with local_server(tmp_path / "server", API_TOKEN="client-token") as base:
        refused = manim_lambda("status", "some-job", "--url", base, cwd=tmp_path)
        assert refused.returncode == 1 and "401: Missing or invalid bearer token." in refused.stderr
        with pytest.raises(RequestRejected) as wrong:
            render(scripts.CIRCLE, HttpService(base, token="wrong"))
        assert wrong.value.status == 401
        done = manim_lambda("render", "scene.py", "-o", "out.mp4", "--quality=-ql", "--url", base,
                            env=client_env(API_TOKEN="client-token"), cwd=scene(tmp_path, scripts.CIRCLE))  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert len(decode(tmp_path / "out.mp4").frames) == 15


def test_a_function_url_gets_sigv4_requests_for_lambda_in_its_region(server, tmp_path):
    with function_url(server, KEY, SECRET) as gate:
        # The function URL's own host name, reached through the stand-in as a proxy; the video
        # comes straight from the server (a presigned URL needs no signature).
        proxied = client_env(AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, http_proxy=gate.url, no_proxy="127.0.0.1")
        url = "http://abcdef0123456789.lambda-url.eu-west-2.on.aws/"
        folder = scene(tmp_path, scripts.CIRCLE)
        done = manim_lambda("render", "scene.py", "-o", "out.mp4", "--quality=-ql", "--url", url, env=proxied, cwd=folder)
        assert done.returncode == 0, done.stderr
        assert len(decode(tmp_path / "out.mp4").frames) == 15
        assert len(gate.checked) >= 2 and set(gate.checked) == {"eu-west-2/lambda"}, gate.checked
        gate.checked.clear()
        forged = proxied | {"AWS_SECRET_ACCESS_KEY": "not-the-secret"}
        refused = manim_lambda("render", "scene.py", "-o", "no.mp4", "--url", url, env=forged, cwd=tmp_path)
        assert refused.returncode == 1 and "manim-lambda: 403: Forbidden" in refused.stderr
        assert gate.checked == ["the signature does not match"]
        unsigned = manim_lambda("status", "x", "--url", gate.url, env=proxied, cwd=tmp_path)  # not a function URL's host
        assert unsigned.returncode == 1 and gate.checked[-1] == "no SigV4 Authorization header"
        signed = manim_lambda("status", "x", "--url", gate.url, "--sigv4", "--region", "us-east-1", env=proxied, cwd=tmp_path)
        assert signed.returncode == 1 and "404: No job 'x'." in signed.stderr
        assert gate.checked[-1] == "us-east-1/lambda"


class _CutShort(BaseHTTPRequestHandler):
    """A stored file whose download breaks off: a long length promised, ten bytes sent."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"0123456789")

    def log_message(self, *_: Any) -> None:
        pass


class _Succeeded:
    """A service whose every job has succeeded, its file at `url`: what a download meets is
    then the only thing left to happen."""

    def __init__(self, url: str) -> None:
        self.url = url

    def submit(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 202, {"jobId": "job-1"}

    def status(self, job_id: str) -> tuple[int, dict[str, Any]]:
        result: dict[str, Any] = {"s3Key": "videos/x/Ring.mp4", "url": self.url, "sceneName": "Ring", "format": "mp4"}
        result |= {"cached": False, "timings": {}}
        return 200, {"jobId": job_id, "status": "succeeded", "result": result}

    def cancel(self, job_id: str) -> tuple[int, dict[str, Any]]:
        return 409, {"message": "ended"}


def test_a_download_cut_short_leaves_the_output_as_it_was(tmp_path):
    with serving(_CutShort) as stored:
        output = tmp_path / "ring.mp4"
        output.write_bytes(b"an earlier render")
        with pytest.raises(ServiceError, match="could not download"):
            render(scripts.ONE_SECOND, _Succeeded(f"http://127.0.0.1:{stored.server_port}/Ring.mp4"), output=output)
    assert output.read_bytes() == b"an earlier render"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ring.mp4"]


class _Slow(_Succeeded):
    """A job that renders for `reads` status reads, then has succeeded."""

    def __init__(self, url: str, reads: int) -> None:
        super().__init__(url)
        self.reads = reads

    def status(self, job_id: str) -> tuple[int, dict[str, Any]]:
        self.reads -= 1
        return (200, {"jobId": job_id, "status": "rendering"}) if self.reads > 0 else super().status(job_id)


def test_a_job_is_read_soon_after_its_submit_then_less_often(monkeypatch):
    pauses: list[float] = []
    monkeypatch.setattr(client.time, "sleep", pauses.append)
    render(scripts.ONE_SECOND, _Slow("http://127.0.0.1:9/Ring.mp4", reads=7), poll_seconds=0.5)
    assert [round(pause, 3) for pause in pauses] == [0.1, 0.15, 0.225, 0.338, 0.5, 0.5, 0.5]
