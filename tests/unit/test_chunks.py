"""Chunked rendering gives the same video as a whole render, frame for frame."""

import pytest

from render import RenderLimits, ScriptError
from render.chunks import choose_chunks, split
from tests.support.chunk_scenes import SCENES
from tests.support.video import decode, psnr

LIMITS = RenderLimits(timeout_seconds=120)


@pytest.mark.parametrize("name", sorted(SCENES))
@pytest.mark.parametrize("chunks", [2, 3])
def test_chunked_equals_whole_frame_for_frame(worker, tmp_path, name, chunks):
    code, scene = SCENES[name]
    with worker.render(code, quality="-ql", limits=LIMITS, scene_name=scene) as video:
        whole = decode(video.path)
    plan = worker.plan(code, quality="-ql", limits=LIMITS, scratch=tmp_path, scene_name=scene)
    assert plan.soundtrack is None
    frames = plan.frames
    assert sum(frames) == len(whole.frames)
    ranges = split(frames, chunks)
    assert len(ranges) == chunks
    with worker.render(code, quality="-ql", limits=LIMITS, scene_name=scene, ranges=ranges) as video:
        assert video.chunks == chunks
        chunked = decode(video.path)
    assert len(chunked.frames) == len(whole.frames)
    worst = min(psnr(a, b) for a, b in zip(whole.frames, chunked.frames, strict=True))
    assert worst >= 50, f"worst frame PSNR {worst:.1f} dB"


@pytest.mark.parametrize(
    ("frames", "chunks", "expected"),
    [
        ([10, 10, 10, 10], 2, [(0, 2), (2, 4)]),
        ([10, 10, 10, 10], 4, [(0, 1), (1, 2), (2, 3), (3, 4)]),
        ([100, 1, 1, 1], 2, [(0, 1), (1, 4)]),
        ([1, 1, 1, 100], 2, [(0, 3), (3, 4)]),
        ([1, 2, 3, 4, 5, 6], 3, [(0, 3), (3, 5), (5, 6)]),
        ([5], 3, [(0, 1)]),
    ],
)
def test_split_balances_frames_over_contiguous_whole_animations(frames, chunks, expected):
    assert split(frames, chunks) == expected


def test_auto_chooses_from_the_plan_and_the_limit():
    fifteen_seconds = [15] * 15  # fifteen one-second animations at 15 fps
    assert choose_chunks(fifteen_seconds, "auto", max_chunks=8, frame_rate=15) == 3  # 5 s each at least
    assert choose_chunks(fifteen_seconds, "auto", max_chunks=2, frame_rate=15) == 2
    assert choose_chunks([15] * 4, "auto", max_chunks=8, frame_rate=15) == 1  # too short to benefit
    assert choose_chunks([15] * 4, 10, max_chunks=8, frame_rate=15) == 4  # one animation per chunk at most


def test_a_script_error_in_a_chunk_fails_the_render_with_that_error(worker, tmp_path):
    code = SCENES["updater-dt"][0].replace("self.wait(0.5)", "self.wait(0.5)\n        undefined_name")
    with pytest.raises(ScriptError) as planned:
        worker.plan(code, quality="-ql", limits=LIMITS, scratch=tmp_path, scene_name="Spinner")  # planning runs construct
    with pytest.raises(ScriptError) as rendered:
        with worker.render(code, quality="-ql", limits=LIMITS, scene_name="Spinner", ranges=[(0, 2), (2, 5)]):
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
        with worker.render(FORGED_PIECES, quality="-ql", limits=LIMITS, ranges=[(0, 1), (1, 2)]):
            pass
    assert caught.value.error_type == "InvalidDataError"
    forged = tmp_path / "forged.mp4"
    forged.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\xff" * 4000)
    with pytest.raises(ScriptError):
        with worker.join([forged, forged], scene_name="Forger", quality="-ql", limits=LIMITS):
            pass
    code, scene = SCENES["updater-dt"]
    with worker.render(code, quality="-ql", limits=LIMITS, ranges=[(0, 2), (2, 5)]) as video:
        assert len(decode(video.path).frames) > 0  # the worker goes on serving
