"""Chunked rendering gives the same video as a whole render, frame for frame."""

import itertools
import json
import os
import subprocess
import sys

import av
import pytest

from render import Deadline, Progress, RenderLimits, RenderSpec, ScriptError, render
from render.chunks import Plan, choose_chunks, split
from render.messages import PlannedAnimation, Position
from tests.support.chunk_scenes import SCENES, WITHOUT_UPDATERS
from tests.support.reckless import PROJECT, reckless_copy
from tests.support.video import decode, psnr


def low(scene: str) -> dict:
    """The worker client's arguments for a -ql render of `scene` with two minutes to go."""
    return {"scene": scene, "quality": "-ql", "limits": RenderLimits(), "deadline": Deadline.after(120)}


@pytest.mark.parametrize("name", sorted(SCENES))
@pytest.mark.parametrize("chunks", [2, 3, 4])
def test_chunked_equals_whole_frame_for_frame(worker, tmp_path, name, chunks):
    code, scene = SCENES[name]
    with worker.render(code, **low(scene)) as made:
        whole = decode(made.path)
    assert made.frames == len(whole.frames)
    plan = worker.plan(code, scratch=tmp_path, **low(scene))
    assert plan.soundtrack is None
    frames = plan.frames
    assert sum(frames) == len(whole.frames)
    ranges = split(plan, chunks)
    assert len(ranges) == chunks
    # render/'s front plans and splits the same way, and renders the ranges side by side.
    spec = RenderSpec(code, "-ql", RenderLimits(), Deadline.after(120), scene=scene)
    with render(worker, spec, chunks=chunks) as video:
        assert video.chunks == chunks
        chunked = decode(video.path)
    assert len(chunked.frames) == len(whole.frames)
    worst = min(psnr(a, b) for a, b in zip(whole.frames, chunked.frames, strict=True))
    assert worst >= 50, f"worst frame PSNR {worst:.1f} dB"


def test_ranges_that_begin_and_end_inside_animations_equal_the_whole_render(worker, tmp_path):
    code, scene = SCENES["long-moves"]
    with worker.render(code, **low(scene)) as made:
        whole = decode(made.path)
        keys = key_frames(made.path)
    plan = worker.plan(code, scratch=tmp_path, **low(scene))
    assert (plan.frames, plan.segment, [a.stepped for a in plan.animations]) == ([20, 17, 18, 9], 15, [True, False, False, False])
    # Every animation is encoded in segments: a key frame at each start and a second in.
    assert keys == [0, 15, 20, 35, 37, 52, 55]
    # A range from every segment boundary inside an animation to the next.
    positions = [Position(0), Position(0, 15), Position(1, 15), Position(2, 15), Position(4)]
    with worker.render(code, ranges=list(itertools.pairwise(positions)), **low(scene)) as made:
        chunked = decode(made.path)
    assert len(chunked.frames) == len(whole.frames)
    worst = min(psnr(a, b) for a, b in zip(whole.frames, chunked.frames, strict=True))
    assert worst >= 50, f"worst frame PSNR {worst:.1f} dB"


def key_frames(path) -> list[int]:
    """The indices of a video's key frames."""
    with av.open(str(path)) as container:
        packets = [packet for packet in container.demux(container.streams.video[0]) if packet.size]
    return [index for index, packet in enumerate(sorted(packets, key=lambda p: p.pts or 0)) if packet.is_keyframe]


def test_ranges_inside_animations_are_exact_only_because_animations_are_encoded_in_segments(tmp_path):
    # The test above fails if each animation is encoded as one file, as Manim encodes it.
    assert reckless(tmp_path, "whole-files", "inside", ["long-moves"])["long-moves"] < 50


def test_chunks_jump_over_animations_only_where_no_updater_runs(worker, tmp_path):
    for name in WITHOUT_UPDATERS:
        code, scene = SCENES[name]
        plan = worker.plan(code, scratch=tmp_path, **low(scene))
        assert not any(animation.stepped for animation in plan.animations), name
    code, scene = SCENES["updaters-come-and-go"]
    stepped = [animation.stepped for animation in worker.plan(code, scratch=tmp_path, **low(scene)).animations]
    # No updater; a static wait; the orbit runs through a play and a wait; removed; an
    # UpdateFromAlphaFunc (a function of the script's own, which adds a drift inside it); the drift.
    assert stepped == [False, False, True, True, False, True, True, True]
    # A scene class of the script's own that redefines how Manim updates the scene each frame.
    stepped = [animation.stepped for animation in worker.plan(OWN_UPDATES, scratch=tmp_path, **low("Counted")).animations]
    assert stepped == [True, True]


OWN_UPDATES = """\
from manim import *


class Counted(Scene):
    frames_seen = 0

    def update_self(self, dt):
        self.frames_seen += 1
        super().update_self(dt)

    def construct(self):
        self.play(Create(Square()), run_time=0.4)
        self.play(FadeIn(Circle()), run_time=0.4)
"""


# Whether the transform finished moves what the script does next: the quick plan, which does
# not play animations, takes the other branch and fails, so the scene is planned in full.
NEEDS_FINISHED_ANIMATIONS = """\
from manim import *


class Checked(Scene):
    def construct(self):
        square = Square()
        self.play(square.animate.shift(RIGHT * 2), run_time=0.4)
        if square.get_x() < 1:
            raise RuntimeError("the square did not move")
        self.play(square.animate.set_color(RED), run_time=0.4)
        self.play(FadeOut(square), run_time=0.4)
"""


def test_a_scene_that_needs_its_animations_played_is_planned_in_full(worker, tmp_path):
    plan = worker.plan(NEEDS_FINISHED_ANIMATIONS, scratch=tmp_path, **low("Checked"))
    assert plan.frames == [6, 6, 6]
    spec = RenderSpec(NEEDS_FINISHED_ANIMATIONS, "-ql", RenderLimits(), Deadline.after(120), scene="Checked")
    with render(worker, spec) as video:
        whole = decode(video.path)
    with render(worker, spec, chunks=3) as video:
        assert video.chunks == 3
        assert min(psnr(a, b) for a, b in zip(whole.frames, decode(video.path).frames, strict=True)) >= 50


def reckless(folder, defect: str, chunks: str, names: list[str]) -> dict[str, float]:
    """Each scene rendered whole and in chunks by a copy of render/ with `defect`
    (tests.support.reckless): the worst frame's PSNR."""
    copy = reckless_copy(folder, defect)
    env = {**os.environ, "PYTHONPATH": f"{copy}{os.pathsep}{PROJECT}"}
    command = [sys.executable, "-m", "tests.support.reckless", chunks, *names]
    answer = subprocess.run(command, env=env, cwd=copy, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(answer.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def reckless_worst(tmp_path_factory) -> dict[str, float]:
    """Each scene with an updater in 2 chunks by a render/ whose chunks jump over every animation."""
    return reckless(tmp_path_factory.mktemp("reckless"), "jump", "2", [name for name in SCENES if name not in WITHOUT_UPDATERS])


@pytest.mark.parametrize("name", [name for name in sorted(SCENES) if name not in WITHOUT_UPDATERS])
def test_jumping_where_an_updater_runs_breaks_exactness(reckless_worst, name):
    # The exactness test above fails for this scene if a chunk jumps where it must step.
    assert reckless_worst[name] < 50


def planned(*animations: tuple) -> Plan:
    """A plan whose frames take about twice as long to draw (1.42 ms) as to update (0.71 ms),
    from (frames, stepped, seconds, update seconds[, open-ended]) for each animation."""
    made = [
        PlannedAnimation(frames=f, stepped=s, seconds=c, update_seconds=u, open_ended=bool(rest))
        for f, s, c, u, *rest in animations
    ]
    return Plan(made, 142_000)


def at(*positions: tuple[int, int]) -> list[tuple[Position, Position]]:
    """Ranges from the positions where they begin, the last ending at the end of the plan."""
    *starts, end = [Position(*position) for position in positions]
    return list(zip(starts, [*starts[1:], end], strict=True))


@pytest.mark.parametrize(
    ("plan", "chunks", "expected"),
    [
        # Equal animations that are cheap to reach: nearly equal shares of frames.
        (planned(*[(10, False, 0.0, 0.0)] * 4), 2, at((0, 0), (2, 0), (4, 0))),
        (planned(*[(10, False, 0.0, 0.0)] * 4), 4, at((0, 0), (1, 0), (2, 0), (3, 0), (4, 0))),
        # A long animation is split inside it (reaching a frame of it costs a jump).
        (planned((100, False, 0, 0), (1, False, 0, 0), (1, False, 0, 0), (1, False, 0, 0)), 2, at((0, 0), (0, 52), (4, 0))),
        (planned((60, False, 0.0, 0.0)), 3, at((0, 0), (0, 20), (0, 40), (1, 0))),
        # More chunks than frames: one frame each.
        (planned((3, False, 0.0, 0.0)), 5, at((0, 0), (0, 1), (0, 2), (1, 0))),
        # Stepping costs a later range a third of drawing: the first range takes more frames.
        (planned(*[(10, True, 0.0, 1e-5)] * 10), 2, at((0, 0), (6, 0), (10, 0))),
        # Reaching costs each animation's code and begin (which a range that starts inside an
        # animation pays too): the first range takes more, and the cut falls between two.
        (planned(*[(10, False, 0.01, 1e-5)] * 10), 2, at((0, 0), (6, 0), (10, 0))),
        # An animation that may end early (a `wait_until`) is never cut inside.
        (planned((10, False, 0, 0), (100, False, 0, 0, True)), 2, at((0, 0), (1, 0), (2, 0))),
    ],
)
def test_split_balances_the_estimated_cost_of_reaching_and_drawing(plan, chunks, expected):
    assert split(plan, chunks) == expected


def test_auto_chooses_from_the_plan_and_the_limit():
    fifteen_seconds = [15] * 15  # fifteen one-second animations at 15 fps
    assert choose_chunks(fifteen_seconds, "auto", max_chunks=8, frame_rate=15) == 3  # 5 s each at least
    assert choose_chunks(fifteen_seconds, "auto", max_chunks=2, frame_rate=15) == 2
    assert choose_chunks([15] * 4, "auto", max_chunks=8, frame_rate=15) == 1  # too short to benefit
    assert choose_chunks([15] * 4, 10, max_chunks=8, frame_rate=15) == 8  # ranges may begin inside animations
    assert choose_chunks([2, 1], 10, max_chunks=8, frame_rate=15) == 3  # but hold a frame at least


def test_a_script_error_in_a_chunk_fails_the_render_with_that_error(worker, tmp_path):
    code = SCENES["updater-dt"][0].replace("self.wait(0.5)", "self.wait(0.5)\n        undefined_name")
    with pytest.raises(ScriptError) as planned:
        worker.plan(code, scratch=tmp_path, **low("Spinner"))  # planning runs construct
    with pytest.raises(ScriptError) as rendered:
        with worker.render(code, ranges=[(Position(0), Position(2)), (Position(2), Position(5))], **low("Spinner")):
            pass
    for caught in (planned, rendered):
        assert (caught.value.error_type, caught.value.line) == ("NameError", 13)


FORGED_PIECES = """\
from pathlib import Path
from manim import *
from manim.scene.scene_file_writer import SceneFileWriter

combine = SceneFileWriter.combine_to_movie


def forge(writer):
    combine(writer)
    Path(writer.movie_file_path).write_bytes(b"not a video, but crafted to look like one" * 100)


SceneFileWriter.combine_to_movie = forge


class Forger(Scene):
    def construct(self):
        self.play(Create(Circle()), run_time=0.5)
        self.play(Create(Square()), run_time=0.5)
"""


def test_pieces_a_script_forged_are_parsed_only_in_a_contained_job(worker, tmp_path):
    # The join reads what scripts wrote, so it runs in a job without credentials, and a
    # forged piece is the script's error (422), not a fault of the handler.
    with pytest.raises(ScriptError) as caught:
        with worker.render(FORGED_PIECES, ranges=[(Position(0), Position(1)), (Position(1), Position(2))], **low("Forger")):
            pass
    assert caught.value.error_type == "InvalidDataError"
    forged = tmp_path / "forged.mp4"
    forged.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\xff" * 4000)
    with pytest.raises(ScriptError):
        with worker.join([forged, forged], **low("Forger")):
            pass
    code, scene = SCENES["updater-dt"]
    with worker.render(code, ranges=[(Position(0), Position(2)), (Position(2), Position(5))], **low(scene)) as made:
        assert len(decode(made.path).frames) == made.frames > 0  # the worker goes on serving


def test_ranges_rendered_elsewhere_are_joined_into_the_same_video(worker):
    # `run_range` stands in for another invocation: it renders its range through render/'s front.
    code, scene = SCENES["updater-dt"]
    spec = RenderSpec(code, "-ql", RenderLimits(), Deadline.after(120), scene=scene)
    with render(worker, spec) as video:
        whole = decode(video.path)
    progress: list[Progress] = []

    def run_range(work):
        with render(worker, work.spec) as piece:
            work.piece.write_bytes(piece.path.read_bytes())

    with render(worker, spec, chunks=2, run_range=run_range, on_progress=progress.append) as video:
        assert video.chunks == 2 and video.plan_seconds > 0
        chunked = decode(video.path)
    assert len(chunked.frames) == len(whole.frames)
    assert min(psnr(a, b) for a, b in zip(whole.frames, chunked.frames, strict=True)) >= 50
    frames = len(whole.frames)
    assert progress[-1].counts() == {"animations": 5, "frames": frames, "totalFrames": frames, "chunks": 2, "chunksDone": 2}


def test_the_first_range_that_fails_stops_the_others_and_is_raised(worker):
    code, scene = SCENES["updater-dt"]
    spec = RenderSpec(code, "-ql", RenderLimits(), Deadline.after(120), scene=scene)
    stopped_seen = []

    def run_range(work):
        if work.index == 1:
            raise LookupError("range 1 is lost")
        stopped_seen.append(work.stopped.wait(10))

    with pytest.raises(LookupError, match="range 1 is lost"):
        with render(worker, spec, chunks=2, run_range=run_range):
            pass
    assert stopped_seen == [True]
