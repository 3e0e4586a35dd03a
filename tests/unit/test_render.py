"""Real renders through render/'s front (`render.render` on the warm worker), decoded and checked."""

import time
from pathlib import Path

import pytest

from render import Deadline, RenderLimits, RenderSpec, RenderTimeout, ScriptError
from render import render as render_scene
from tests.support import scripts
from tests.support.video import decode


def running(pid: int, wait_seconds: float = 5) -> bool:
    """Whether `pid` is still running after a short grace for the kernel to deliver a kill."""
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def render(worker):
    """Render with the session's warm worker at -ql; `timeout_seconds` sets the time limit."""

    def start(code: str, timeout_seconds: float = 120, scene_name: str | None = None):
        spec = RenderSpec(code, "-ql", RenderLimits(), Deadline.after(timeout_seconds), scene=scene_name)
        return render_scene(worker, spec)

    return start


@pytest.fixture
def jobs(worker) -> Path:
    return worker.work_dir / "jobs"


def test_a_simple_scene_becomes_a_low_quality_video(render):
    with render(scripts.CIRCLE) as video:
        decoded = decode(video.path)
    assert (decoded.width, decoded.height, decoded.fps) == (854, 480, 15)
    assert len(decoded.frames) == 15
    # The circle is drawn: little shows at first, a filled disc at the end.
    assert decoded.lit_fraction(0) < decoded.lit_fraction(-1)
    assert decoded.lit_fraction(-1) > 0.02  # a unit disc fills about 2.7% of the frame
    assert video.scene == "DrawCircle"


def test_latex_axes_numbers_and_text_render(render):
    with render(scripts.LATEX) as video:
        decoded = decode(video.path)
    assert decoded.duration == pytest.approx(0.2, abs=0.07)
    top, middle, bottom = slice(0, 80), slice(160, 320), slice(400, 480)
    assert decoded.lit_fraction(-1, top) > 0.01  # the formula
    assert decoded.lit_fraction(-1, middle) > 0.005  # the axes and their numbers
    assert decoded.lit_fraction(-1, bottom) > 0.005  # the text


def test_scene_name_picks_one_of_two(render):
    with render(scripts.TWO_SCENES, scene_name="Long") as video:
        long = decode(video.path)
    with render(scripts.TWO_SCENES, scene_name="Short") as video:
        short = decode(video.path)
    assert long.duration == pytest.approx(1.2, abs=0.07)
    assert short.duration == pytest.approx(0.4, abs=0.07)


def test_a_scene_derived_through_the_scripts_own_class(render):
    with render(scripts.INDIRECT_SCENE, scene_name="Zoom") as video:
        assert decode(video.path).frames


def test_an_exception_in_construct_names_type_line_and_a_clean_traceback(render):
    with pytest.raises(ScriptError) as caught:
        with render(scripts.RAISES_IN_CONSTRUCT):
            pass
    error = caught.value
    assert error.traceback is not None
    assert (error.error_type, error.line) == ("NameError", 8)
    assert error.traceback.splitlines() == [
        "Traceback (most recent call last):",
        '  File "scene.py", line 8, in construct',
        "    self.play(circle.animate.shift(RIGHT * undefined_distance))",
        "NameError: name 'undefined_distance' is not defined",
    ]


def test_an_error_inside_manim_keeps_the_users_line_and_the_frame_that_raised(render):
    with pytest.raises(ScriptError) as caught:
        with render(scripts.BAD_MANIM_CALL):
            pass
    error = caught.value
    assert error.error_type == "TypeError"
    assert error.line == 6 and error.traceback is not None
    frames = [line for line in error.traceback.splitlines() if line.startswith('  File "')]
    assert frames[0].startswith('  File "scene.py", line 6')
    assert len(frames) == 2 and frames[1].startswith('  File "manim/')
    for noise in ("\x1b[", "│", "╭", "render/", "/tmp/"):
        assert noise not in error.traceback


def test_the_job_folder_is_removed_after_success_and_failure(render, jobs):
    with render(scripts.CIRCLE) as video:
        assert video.path.is_relative_to(jobs)
    assert list(jobs.iterdir()) == []
    with pytest.raises(ScriptError):
        with render(scripts.RAISES_IN_CONSTRUCT):
            pass
    assert list(jobs.iterdir()) == []


def test_the_time_limit_ends_the_render_and_what_it_started(render, jobs, tmp_path):
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()
    with pytest.raises(RenderTimeout) as caught:
        with render(scripts.SLOW_WITH_CHILD.format(pid_file=pid_file), timeout_seconds=4):
            pass
    assert time.monotonic() - started < 10
    assert caught.value.details() == {"type": "TimeLimitExceeded", "limitSeconds": 4}
    assert not running(int(pid_file.read_text()))
    assert list(jobs.iterdir()) == []


def test_the_script_gets_no_credentials_from_our_environment(render):
    code = scripts.CIRCLE.replace(
        "    def construct(self):\n",
        "    def construct(self):\n        import os\n        assert 'AWS_SECRET_ACCESS_KEY' not in os.environ, 'leak'\n",
    )
    with render(code) as video:
        assert video.path.exists()


# A script can write its own messages on its part's channel to the worker (the one socket it
# holds); whatever it sends is validated, and a message it may not send is its own error.
FORGED_REPORT = """
import os, socket
from manim import *

class Forger(Scene):
    def construct(self):
        for fd in map(int, os.listdir("/proc/self/fd")):
            try:
                channel = socket.socket(fileno=fd)
            except OSError:
                continue
            channel.sendall({message!r} + b"\\n")
            channel.detach()
        os._exit(0)
"""


@pytest.mark.parametrize(
    ("message", "error_type"),
    [
        (b'{"kind": "video", "path": 42}', "MalformedMessage"),  # a wrong type
        (b'{"kind": "timeout"}', "MalformedMessage"),  # a kind only the worker may say
        (b'{"kind": "script_error", "type": "X", "message": "' + b"m" * 980_000 + b'"}', "MalformedMessage"),
        (b"x" * 2_000_000, "MalformedMessage"),  # past the channel's size limit
        (b'{"kind": "video", "path": "/etc/passwd"}', "NoVideo"),  # a file outside its folder
    ],
)
def test_a_forged_report_is_the_scripts_error(render, message, error_type):
    with pytest.raises(ScriptError) as caught:
        with render(FORGED_REPORT.format(message=message)):
            pass
    assert caught.value.error_type == error_type
    assert len(caught.value.message) <= 4100
    with render(scripts.CIRCLE) as video:  # and the worker goes on serving
        assert decode(video.path).frames
