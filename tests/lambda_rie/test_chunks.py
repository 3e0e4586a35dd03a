"""Chunks fanned out over parallel invocations: three emulated execution environments share
one bucket; the coordinator's self-invokes reach the idle ones through a stand-in for the
Lambda service, and the joined video equals a whole render frame for frame."""

from pathlib import Path

import numpy as np
import pytest

from tests.support import scripts
from tests.support.chunk_scenes import BEEPS, SCENES
from tests.support.lambda_function import dockerfile_handler, function_env
from tests.support.lambda_runtime import lambda_runtime
from tests.support.lambda_service import lambda_service
from tests.support.seaweedfs import S3Server
from tests.support.video import decode, decode_sound, psnr

ENVIRONMENTS = 3  # for `functions` (conftest.py), as users from FIRST_UID on
FIRST_UID = 2001


def fetch(s3_server: S3Server, bucket: str, key: str, path: Path):
    path.write_bytes(s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read())
    return decode(path)


def test_fanned_out_chunks_join_into_the_whole_render(functions, service, s3_server, bucket, tmp_path):
    code, _ = SCENES["updater-dt"]
    coordinator = functions[0]
    whole = coordinator.invoke({"codeContent": code, "quality": "-ql", "cache": False})
    expected = fetch(s3_server, bucket, whole["s3Key"], tmp_path / "whole.mp4")
    chunked = coordinator.invoke({"codeContent": code, "quality": "-ql", "cache": False, "chunks": 2})
    assert chunked.get("chunks") == 2, chunked
    timings = chunked["timings"]
    assert timings["planSeconds"] > 0 and timings["joinSeconds"] > 0
    # Billed: the coordinator's time and each chunk invocation's (its handler's: an environment's
    # start, here the first invoke's, is Lambda's to add), at 2048 MB (the emulator's) and the price.
    assert timings["billedSeconds"] - timings["totalSeconds"] > 0.1
    assert timings["estimatedCostUsd"] == pytest.approx(timings["billedSeconds"] * 2 * 0.0000166667, rel=1e-3)
    pieces = [call for call in service.received if call["payload"].get("action") == "renderChunk"]
    # One asynchronous invocation per range, sent at once (so in either order).
    ranges = sorted((call["invocationType"], call["payload"]["index"], call["payload"]["start"]) for call in pieces)
    assert ranges == [("Event", 0, [0, 0]), ("Event", 1, ranges[1][2])] and ranges[1][2] > [0, 0]
    got = fetch(s3_server, bucket, chunked["s3Key"], tmp_path / "chunked.mp4")
    assert len(got.frames) == len(expected.frames)
    assert min(psnr(a, b) for a, b in zip(expected.frames, got.frames, strict=True)) >= 50
    left = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="jobs/chunks-").get("KeyCount", 0)
    assert left == 0  # every piece removed


def test_fanned_out_chunks_get_the_sound_of_a_whole_render(functions, s3_server, bucket, tmp_path):
    coordinator = functions[0]
    whole = coordinator.invoke({"codeContent": BEEPS, "quality": "-ql", "cache": False})
    fetch(s3_server, bucket, whole["s3Key"], tmp_path / "whole.mp4")
    chunked = coordinator.invoke({"codeContent": BEEPS, "quality": "-ql", "cache": False, "chunks": 3})
    assert chunked.get("chunks") == 3, chunked
    fetch(s3_server, bucket, chunked["s3Key"], tmp_path / "chunked.mp4")
    expected = decode_sound(tmp_path / "whole.mp4")
    assert expected is not None
    np.testing.assert_array_equal(decode_sound(tmp_path / "chunked.mp4"), expected)


def test_a_script_error_fails_a_chunked_render_as_it_fails_a_whole_one(functions):
    code = SCENES["updater-dt"][0].replace("self.play(square.animate.set_color(RED), run_time=0.5)", "self.play(Nope())")
    answer = functions[0].invoke({"codeContent": code, "quality": "-ql", "chunks": 2})
    assert answer["statusCode"] == 422
    assert (answer["errors"]["type"], answer["errors"]["class"]) == ("NameError", "script_error")
    assert np.isfinite(answer["errors"]["line"])


def test_an_unsplittable_scene_renders_whole(functions):
    answer = functions[0].invoke({"codeContent": scripts.CIRCLE, "quality": "-ql", "chunks": 2, "cache": False})
    assert answer["chunks"] == 1


def test_pieces_that_never_come_back_fail_before_the_functions_timeout(s3_server, bucket, lambda_task_root):
    with lambda_service() as nowhere:  # accepts the invokes, never runs them
        env = function_env(s3_server, bucket, LAMBDA_ENDPOINT_URL=nowhere.url, RENDER_TIMEOUT_SECONDS="4")
        with lambda_runtime(dockerfile_handler(), lambda_task_root, env) as function:
            code, _ = SCENES["updater-dt"]
            answer = function.invoke({"codeContent": code, "quality": "-ql", "chunks": 2, "cache": False})
    assert answer["errorType"] == "ChunksOverdue"
    assert answer["errorMessage"] in ("Chunk 0 did not come back in time.", "Chunk 1 did not come back in time.")
    assert s3_server.client().list_objects_v2(Bucket=bucket, Prefix="jobs/chunks-").get("KeyCount", 0) == 0


def test_a_mov_fanned_out_joins_in_its_own_container(functions, s3_server, bucket, tmp_path):
    code, _ = SCENES["updater-dt"]
    whole = functions[0].invoke({"codeContent": code, "quality": "-ql", "format": "mov"})
    chunked = functions[0].invoke({"codeContent": code, "quality": "-ql", "format": "mov", "chunks": 2, "cache": False})
    assert chunked.get("chunks") == 2 and chunked["s3Key"].endswith(".mov"), chunked
    stored = s3_server.client().get_object(Bucket=bucket, Key=chunked["s3Key"])
    assert stored["ContentType"] == "video/quicktime"
    (tmp_path / "chunked.mov").write_bytes(stored["Body"].read())
    expected = fetch(s3_server, bucket, whole["s3Key"], tmp_path / "whole.mov")
    got = decode(tmp_path / "chunked.mov")
    assert len(got.frames) == len(expected.frames) == chunked["frames"]
    assert min(psnr(a, b) for a, b in zip(expected.frames, got.frames, strict=True)) >= 50
    assert s3_server.client().list_objects_v2(Bucket=bucket, Prefix="jobs/chunks-").get("KeyCount", 0) == 0
