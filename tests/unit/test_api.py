"""The HTTP contract and direct invokes, through the real handler, on the embedded store."""

import base64
import json
from pathlib import Path

import av
import numpy as np
import pytest

from handler.app import lambda_handler
from handler.local import LocalContext, function_url_event
from tests.support import scripts
from tests.support.chunk_scenes import BEEPS, SCENES
from tests.support.video import decode, decode_sound, probe, psnr

EVENTS = Path(__file__).parents[2] / "events"


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def call(event: dict) -> tuple[int, dict]:
    """Invoke the handler with an HTTP event; return the status and the decoded JSON body."""
    result = lambda_handler(event, LocalContext())
    assert result["headers"]["Content-Type"] == "application/json"
    return result["statusCode"], json.loads(result["body"])


def post_render(body: object) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return call(function_url_event("POST", "/api/render", {"Content-Type": "application/json"}, raw))


@pytest.mark.parametrize("name", ["function-url-health.json", "http-api-health.json"])
def test_health_reports_the_workers_protections_and_tools(name):
    status, body = call(load_event(name))
    assert (status, body["message"]) == (200, "Health is OK")
    protections = body["worker"]["protections"]
    assert protections["handler_non_dumpable"] and protections["subreaper"] and protections["clean_environment"]
    assert body["worker"]["tools"] == {"latex": True, "dvisvgm": True}


@pytest.mark.parametrize("name", ["function-url-render.json", "http-api-render.json"])
def test_render_answers_with_the_seeds_fields_and_a_fetchable_video(name, local_store):
    status, body = call(load_event(name))
    assert status == 200, body
    assert body["message"] == "Video created and uploaded successfully."
    assert body["s3Key"].startswith("videos/") and body["s3Key"].endswith("/SquareToCircle.mp4")
    assert (body["bucket"], body["sceneName"], body["quality"]) == ("local", "SquareToCircle", "-ql")
    timings = body["timings"]
    assert set(timings) == {
        *("planSeconds", "renderSeconds", "joinSeconds", "uploadSeconds", "totalSeconds"),
        *("billedSeconds", "estimatedCostUsd"),
    }
    # Billed by the millisecond at 3008 MB and the default price.
    assert timings["billedSeconds"] >= timings["totalSeconds"] > 0
    assert timings["estimatedCostUsd"] == pytest.approx(timings["billedSeconds"] * 3008 / 1024 * 0.0000166667, rel=1e-3)
    assert body["chunks"] == 1 and body["cached"] is False
    stored = local_store / body["s3Key"]
    assert body["url"] == stored.as_uri()
    assert decode(stored).duration == pytest.approx(3.5, abs=0.1)


def test_quality_defaults_to_medium(local_store):
    status, body = post_render({"codeContent": scripts.TWO_SCENES, "sceneName": "Short"})
    assert (status, body["quality"]) == (200, "-qm")
    video = decode(local_store / body["s3Key"])
    assert (video.width, video.height, video.fps) == (1280, 720, 30)


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("bad-malformed-json.json", None),
        ("bad-unknown-quality.json", "quality"),
        ("bad-missing-code.json", "codeContent"),
        ("bad-scene-name.json", "sceneName"),
    ],
)
def test_bad_requests_are_400_with_field_errors(name, field):
    status, body = call(load_event(name))
    assert status == 400
    assert body["message"] and isinstance(body["errors"], list)
    if field:
        assert [error["loc"] for error in body["errors"]] == [["body", field]]


@pytest.mark.parametrize(
    "body",
    [{"codeContent": 42}, {"codeContent": ""}, {"codeContent": scripts.CIRCLE, "sceneName": 7}, [1, 2], "text"],
)
def test_wrongly_typed_bodies_are_400(body):
    status, answer = post_render(body)
    assert status == 400, answer
    assert answer["message"] == "Invalid request."


def test_code_over_the_size_limit_is_400(configure):
    configure(MAX_CODE_BYTES="1000")
    status, body = post_render({"codeContent": scripts.CIRCLE + "#" * 1000})
    assert status == 400
    assert "limit is 1000 bytes" in body["errors"][0]["msg"]
    assert post_render({"codeContent": "x" * 1000, "quality": "-qx"})[0] == 400


def test_the_default_size_limit_is_100_kib(local_store):
    status, body = post_render({"codeContent": "#" * (100 * 1024 + 1)})
    assert status == 400 and "102400" in body["errors"][0]["msg"]


def test_unknown_routes_are_404():
    status, body = call(load_event("bad-unknown-route.json"))
    assert status == 404
    assert body["message"] == "No route for GET /api/unknown."


def test_script_errors_are_422_with_type_line_and_traceback(local_store):
    status, body = post_render({"codeContent": scripts.RAISES_IN_CONSTRUCT, "quality": "-ql"})
    assert status == 422
    assert body["errors"]["type"] == "NameError"
    assert body["errors"]["line"] == 8
    assert body["errors"]["traceback"].startswith('Traceback (most recent call last):\n  File "scene.py", line 8')
    assert "undefined_distance" in body["message"]


def test_a_formula_latex_rejects_is_the_scripts_422(local_store):
    status, body = post_render({"codeContent": scripts.BAD_FORMULA, "quality": "-ql"})
    assert status == 422, body
    assert (body["errors"]["class"], body["errors"]["line"]) == ("script_error", 6)
    assert "LaTeX could not compile" in body["message"]
    answer = lambda_handler({"codeContent": scripts.BAD_FORMULA, "quality": "-ql"}, LocalContext())
    assert answer["statusCode"] == 422  # answered, not raised: retrying cannot fix the formula


@pytest.mark.parametrize(
    ("code", "error_type"),
    [(scripts.SYNTAX_ERROR, "SyntaxError"), (scripts.NO_SCENE, "NoSceneFound"), (scripts.TWO_SCENES, "SeveralScenesFound")],
)
def test_scripts_that_cannot_start_are_422(code, error_type, local_store):
    status, body = post_render({"codeContent": code, "quality": "-ql"})
    assert (status, body["errors"]["type"]) == (422, error_type)
    if error_type == "SeveralScenesFound":
        assert body["errors"]["scenes"] == ["Short", "Long"]
    if error_type == "SyntaxError":
        assert body["errors"]["line"] == 5


def test_the_time_limit_has_its_own_status(configure, tmp_path):
    configure(RENDER_TIMEOUT_SECONDS="3")
    code = scripts.SLOW_WITH_CHILD.format(pid_file=tmp_path / "pid")
    status, body = post_render({"codeContent": code, "quality": "-ql"})
    assert status == 408
    assert body == {
        "message": "The render took longer than its time limit of 3 s.",
        "errors": {"type": "TimeLimitExceeded", "limitSeconds": 3.0, "class": "time_limit"},
    }


def test_base64_bodies_are_decoded(local_store):
    event = load_event("bad-unknown-quality.json")
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True
    status, body = call(event)
    assert (status, body["errors"][0]["loc"]) == (400, ["body", "quality"])


def test_direct_invoke_returns_the_response_body(local_store):
    body = lambda_handler(load_event("direct-render-two-scenes.json"), LocalContext())
    assert "statusCode" not in body
    assert body["sceneName"] == "Second"
    assert decode(local_store / body["s3Key"]).frames


def test_direct_invoke_client_errors_come_back_with_a_status(local_store):
    invalid = lambda_handler({"quality": "-ql"}, LocalContext())
    assert invalid["statusCode"] == 400 and invalid["errors"][0]["loc"] == ["codeContent"]
    failed = lambda_handler(load_event("bad-script-error.json"), LocalContext())
    assert (failed["statusCode"], failed["errors"]["type"], failed["errors"]["line"]) == (422, "NameError", 8)


def test_render_timeout_follows_the_invocation_deadline(configure):
    def seconds(deadline) -> int:
        return round(deadline.seconds_left())

    settings = configure(UPLOAD_MARGIN_SECONDS="15").settings
    assert seconds(settings.render_deadline(remaining_ms=100_000)) == 85
    assert seconds(settings.render_deadline(remaining_ms=None)) == 600
    settings = configure(RENDER_TIMEOUT_SECONDS="30").settings
    assert seconds(settings.render_deadline(remaining_ms=100_000)) == 30
    assert seconds(settings.render_deadline(remaining_ms=10_000)) == 1  # never zero or negative


def test_chunks_render_the_same_video_in_parts(local_store):
    code = scripts.TWO_SCENES
    status, whole = post_render({"codeContent": code, "sceneName": "Long", "quality": "-ql", "cache": False})
    status, chunked = post_render({"codeContent": code, "sceneName": "Long", "quality": "-ql", "cache": False, "chunks": 2})
    # "Long" is one animation, a wait: it is split inside, at an encoded segment's boundary.
    assert (status, chunked["chunks"], whole["chunks"]) == (200, 2, 1)
    assert chunked["s3Key"] == whole["s3Key"]
    assert len(decode(local_store / chunked["s3Key"]).frames) == whole["frames"] == chunked["frames"] == 18

    code, _ = SCENES["updater-dt"]
    status, whole = post_render({"codeContent": code, "quality": "-ql"})
    whole_frames = len(decode(local_store / whole["s3Key"]).frames)
    status, chunked = post_render({"codeContent": code, "quality": "-ql", "chunks": 2, "cache": False})
    assert (status, chunked["chunks"]) == (200, 2) and chunked["timings"]["planSeconds"] > 0
    assert chunked["s3Key"] == whole["s3Key"]  # the same video, so the same cache key
    assert len(decode(local_store / chunked["s3Key"]).frames) == whole_frames
    assert post_render({"codeContent": code, "quality": "-ql", "chunks": "auto", "cache": False})[1]["chunks"] == 1


@pytest.mark.parametrize("chunks", [0, -1, "many", 1.5, 100, True])
def test_bad_chunk_counts_are_400(chunks):
    status, body = post_render({"codeContent": scripts.CIRCLE, "chunks": chunks})
    assert status == 400 and body["errors"][0]["loc"][:2] == ["body", "chunks"]


def test_a_chunked_scene_keeps_its_sound_as_a_whole_render_places_it(local_store):
    body = {"codeContent": BEEPS, "quality": "-ql", "cache": False}
    _, whole = post_render(body)
    whole_sound = decode_sound(local_store / whole["s3Key"])
    whole_frames = len(decode(local_store / whole["s3Key"]).frames)
    status, chunked = post_render({**body, "chunks": 3})  # the same key: it replaces the whole render
    assert (status, chunked["chunks"]) == (200, 3), chunked
    chunked_sound = decode_sound(local_store / chunked["s3Key"])
    assert whole_sound is not None and chunked_sound is not None, "the sound was lost"
    assert np.abs(whole_sound).max() > 0.1  # the beeps are audible
    np.testing.assert_array_equal(chunked_sound, whole_sound)  # same beeps, same times, same mix
    assert len(decode(local_store / chunked["s3Key"]).frames) == whole_frames


def test_a_scene_without_animation_is_stored_as_its_last_frame(local_store):
    from PIL import Image

    status, body = post_render({"codeContent": scripts.DIAGRAM, "quality": "-ql"})
    assert status == 200, body
    assert body["s3Key"].endswith("/Diagram.png") and body["format"] == "png"
    with Image.open(local_store / body["s3Key"]) as image:
        assert image.size == (854, 480)
        pixels = np.asarray(image.convert("RGB"))
    orange = (pixels[..., 0] > 200) & (pixels[..., 1] > 100) & (pixels[..., 2] < 100)
    assert orange.sum() > 100  # the line is drawn
    again = post_render({"codeContent": scripts.DIAGRAM, "quality": "-ql"})[1]
    assert again["cached"] and again["s3Key"] == body["s3Key"]
    chunked = post_render({"codeContent": scripts.DIAGRAM, "quality": "-ql", "chunks": 2, "cache": False})[1]
    assert (chunked["format"], chunked["chunks"]) == ("png", 1)


@pytest.mark.parametrize(
    ("options", "codec", "pixel_format", "alpha"),
    [
        ({"format": "mp4"}, "h264", "yuv420p", False),
        ({"format": "webm"}, "vp9", "yuv420p", False),
        ({"format": "webm", "transparent": True}, "vp9", "yuv420p", True),  # VP9 carries alpha beside
        ({"format": "mov"}, "h264", "yuv420p", False),
        ({"format": "mov", "transparent": True}, "qtrle", "argb", True),
        ({"format": "gif"}, "gif", "bgra", False),
    ],
)
def test_each_video_format_is_what_a_player_expects(local_store, options, codec, pixel_format, alpha):
    status, body = post_render({"codeContent": scripts.ONE_SECOND, "quality": "-ql", **options})
    assert status == 200, body
    assert body["s3Key"].endswith(f"/Ring.{options['format']}")
    assert (body["format"], body["width"], body["height"], body["fps"], body["frames"]) == (options["format"], 854, 480, 15, 15)
    video = probe(local_store / body["s3Key"])
    assert (video.codec, video.pixel_format, video.width, video.height, video.frames) == (codec, pixel_format, 854, 480, 15)
    if codec == "vp9":
        assert (video.metadata.get("alpha_mode") == "1") is alpha
    elif alpha:
        assert video.corner[3] == 0  # the background is see-through
    if codec != "gif":  # GIF keeps frame delays in hundredths of a second
        assert video.rate == 15


def test_a_vertical_video_at_its_own_frame_rate_and_background(local_store):
    options = {"resolution": [480, 854], "fps": 10, "backgroundColor": "#FF0000"}
    status, body = post_render({"codeContent": scripts.ONE_SECOND, "quality": "-ql", **options})
    assert status == 200, body
    assert (body["format"], body["width"], body["height"], body["fps"], body["frames"]) == ("mp4", 480, 854, 10, 10)
    video = probe(local_store / body["s3Key"])
    assert (video.width, video.height, video.frames, video.rate) == (480, 854, 10, 10)
    assert video.corner[0] > 200 and video.corner[1] < 60 and video.corner[2] < 60


def test_a_transparent_still_of_the_last_frame(local_store):
    status, body = post_render({"codeContent": scripts.ONE_SECOND, "quality": "-ql", "format": "png", "transparent": True})
    assert status == 200, body
    assert (body["s3Key"].rsplit(".", 1)[1], body["frames"]) == ("png", 1)
    from PIL import Image

    with Image.open(local_store / body["s3Key"]) as image:
        assert (image.size, image.mode) == ((854, 480), "RGBA")
        pixels = np.asarray(image)
    assert pixels[0, 0, 3] == 0 and pixels[..., 3].max() == 255  # a clear background, an opaque circle


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"format": "mp4", "transparent": True}, "transparent needs format webm, mov or png"),
        ({"format": "gif", "transparent": True}, "transparent needs format webm, mov or png"),
        ({"transparent": True}, "transparent needs format webm, mov or png"),
        ({"format": "avi"}, "'mp4', 'webm', 'gif', 'mov' or 'png'"),
        ({"resolution": [3840, 2162]}, "over 8294400 pixels a frame (MAX_PIXELS)"),
        ({"resolution": [481, 854]}, "needs an even width and height"),
        ({"fps": 0}, "greater than or equal to 1"),
        ({"fps": 61}, "at most 60 (MAX_FPS)"),
        ({"backgroundColor": "red"}, "should match pattern"),
    ],
)
def test_impossible_outputs_are_refused_naming_what_is_allowed(options, says):
    status, body = post_render({"codeContent": scripts.ONE_SECOND, **options})
    assert status == 400, body
    assert any(says in error["msg"] for error in body["errors"]), body["errors"]


@pytest.mark.parametrize("name", sorted(path.name for path in EVENTS.glob("direct-render*.json")))
def test_every_bundled_direct_invoke_renders_in_the_format_it_asks_for(local_store, name):
    request = load_event(name)
    body = lambda_handler(request, LocalContext())
    assert "s3Key" in body, body
    expected = request.get("format") or ("png" if "Diagram" in request["codeContent"] else "mp4")
    assert body["format"] == expected and body["s3Key"].endswith(f".{expected}")
    stored = probe(local_store / body["s3Key"])
    assert (stored.width, stored.height) == (body["width"], body["height"])


def test_a_dry_run_says_how_long_the_scene_is_and_stores_no_video(local_store):
    status, body = post_render({"codeContent": scripts.ONE_SECOND, "quality": "-ql", "dryRun": True})
    assert status == 200, body
    answer = (body["sceneName"], body["duration"], body["frames"], body["animations"], body["cached"])
    assert answer == ("Ring", 1.0, 15, 1, False)
    assert not [path for path in local_store.rglob("*") if path.suffix in (".mp4", ".png")]
    again = post_render({"codeContent": scripts.ONE_SECOND, "quality": "-ql", "dryRun": True})[1]
    assert again["cached"] and again["frames"] == 15


def test_a_dry_run_fails_as_the_render_would(local_store):
    broken = scripts.ONE_SECOND.replace("Create(Circle(color=BLUE))", "Transform(Circle(), 42)")
    checked = post_render({"codeContent": broken, "quality": "-ql", "dryRun": True, "cache": False})
    rendered = post_render({"codeContent": broken, "quality": "-ql", "cache": False})
    assert checked[0] == rendered[0] == 422
    assert checked[1]["errors"]["type"] == rendered[1]["errors"]["type"]
    assert checked[1]["errors"]["line"] == rendered[1]["errors"]["line"] == 6


@pytest.mark.parametrize("name", ["updaters-come-and-go", "random-colours", "moving-camera"])
def test_a_frame_at_any_time_is_the_frame_a_whole_render_shows(local_store, name):
    code, _ = SCENES[name]
    # A whole render in a lossless format (QuickTime RLE with alpha), so frames compare exactly.
    status, whole = post_render({"codeContent": code, "quality": "-ql", "format": "mov", "transparent": True})
    assert status == 200, whole
    with av.open(str(local_store / whole["s3Key"])) as container:
        frames = [frame.to_ndarray(format="rgba") for frame in container.decode(video=0)]
    from PIL import Image

    for at in (0.0, 0.55, 1.23, (len(frames) - 1) / 15):
        status, still = post_render({"codeContent": code, "quality": "-ql", "format": "png", "transparent": True, "frameAt": at})
        assert status == 200 and still["frames"] == 1, still
        with Image.open(local_store / still["s3Key"]) as image:
            pixels = np.asarray(image.convert("RGBA"))
        index = int(at * 15 + 1e-9)
        assert np.abs(pixels.astype(int) - frames[index].astype(int)).max() <= 1, (name, at)
    status, past = post_render({"codeContent": code, "quality": "-ql", "format": "png", "frameAt": len(frames) / 15})
    assert status == 400 and past["errors"]["type"] == "FramePastEnd"
    assert past["errors"]["duration"] == pytest.approx(len(frames) / 15, abs=1e-3)


def test_frame_at_needs_a_still():
    status, body = post_render({"codeContent": scripts.ONE_SECOND, "frameAt": 0.5})
    assert status == 400 and "frameAt needs format png" in body["errors"][0]["msg"]


@pytest.mark.parametrize(
    ("options", "chunks"),
    [
        ({"format": "mov", "transparent": True}, 2),
        ({"format": "webm"}, 2),
        ({"format": "webm", "transparent": True}, 1),
        ({"format": "gif"}, 1),
    ],
)
def test_formats_whose_pieces_join_render_in_chunks_frame_for_frame(local_store, options, chunks):
    code, _ = SCENES["updater-dt"]
    status, whole = post_render({"codeContent": code, "quality": "-ql", **options})
    assert status == 200, whole
    status, chunked = post_render({"codeContent": code, "quality": "-ql", "chunks": 2, "cache": False, **options})
    assert status == 200, chunked
    assert chunked["chunks"] == chunks and chunked["s3Key"].endswith("." + options["format"])
    assert chunked["frames"] == whole["frames"]
    frames = []
    for body in (whole, chunked):
        with av.open(str(local_store / body["s3Key"])) as container:
            frames.append([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    assert len(frames[0]) == len(frames[1]) == whole["frames"]
    assert min(psnr(a, b) for a, b in zip(*frames, strict=True)) >= 50
