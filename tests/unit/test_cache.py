"""The result cache: hits, misses, forced renders, normalisation, versions, and identical
requests arriving together."""

import threading
import time

import pytest

import handler.cache
from handler.app import lambda_handler
from handler.cache import acquire_lease, cache_key, holding, lease_key, normalise, release_lease
from handler.local import LocalContext
from handler.storage import LocalStorage
from render import Output
from tests.support import scripts
from tests.support.moto_s3 import BUCKET


def render(code: str = scripts.CIRCLE, **fields: object) -> dict:
    return lambda_handler({"codeContent": code, "quality": "-ql", **fields}, LocalContext())


def test_a_second_identical_request_is_a_hit_with_the_same_key(local_store):
    first = render()
    started = time.monotonic()
    second = render()
    hit_seconds = time.monotonic() - started
    assert (first["cached"], second["cached"]) == (False, True)
    assert second["s3Key"] == first["s3Key"]
    assert second["timings"]["renderSeconds"] == 0 and first["timings"]["renderSeconds"] > 0
    assert hit_seconds < 0.5
    assert (local_store / second["s3Key"]).is_file()


def test_cache_false_forces_a_render(local_store):
    render()
    forced = render(cache=False)
    assert forced["cached"] is False and forced["timings"]["renderSeconds"] > 0


def test_quality_and_scene_are_part_of_the_key(local_store):
    assert render()["s3Key"] != render(quality="-qm")["s3Key"]
    short, long = render(scripts.TWO_SCENES, sceneName="Short"), render(scripts.TWO_SCENES, sceneName="Long")
    assert short["s3Key"].split("/")[1] != long["s3Key"].split("/")[1]


def test_line_endings_and_trailing_whitespace_do_not_matter_but_comments_do():
    code = scripts.CIRCLE
    assert normalise(code.replace("\n", "\r\n")) == normalise(code)
    assert normalise(code.replace("\n", "   \n") + "\n\n") == normalise(code)
    key = cache_key(code, "DrawCircle", "-ql", Output())
    assert cache_key(code.replace("\n", "\r\n") + "  \n", "DrawCircle", "-ql", Output()) == key
    assert cache_key(code + "# a comment\n", "DrawCircle", "-ql", Output()) != key
    assert cache_key(code.replace("    ", "\t"), "DrawCircle", "-ql", Output()) != key  # indentation is code


def test_every_output_option_is_part_of_the_key():
    base = cache_key(scripts.CIRCLE, "DrawCircle", "-ql", Output())
    options = [
        Output(format="webm"),
        Output(format="webm", transparent=True),
        Output(width=480, height=854),
        Output(fps=24),
        Output(background="#112233"),
    ]
    keys = {cache_key(scripts.CIRCLE, "DrawCircle", "-ql", output) for output in options}
    assert len(keys) == len(options) and base not in keys


def test_manim_and_worker_versions_are_part_of_the_key(monkeypatch):
    key = cache_key(scripts.CIRCLE, "DrawCircle", "-ql", Output())
    monkeypatch.setattr(handler.cache, "MANIM_VERSION", "0.0.1")
    assert cache_key(scripts.CIRCLE, "DrawCircle", "-ql", Output()) != key
    monkeypatch.undo()
    monkeypatch.setattr(handler.cache, "WORKER_VERSION", "999")
    assert cache_key(scripts.CIRCLE, "DrawCircle", "-ql", Output()) != key


def test_failures_are_not_cached(local_store):
    first, second = render(scripts.RAISES_IN_CONSTRUCT), render(scripts.RAISES_IN_CONSTRUCT)
    assert first["statusCode"] == second["statusCode"] == 422
    assert not [path for path in local_store.rglob("*") if path.is_file()]  # no video, no lease left


def test_identical_requests_arriving_together_render_once(local_store):
    code = scripts.TWO_SCENES.replace("self.wait(1.2)", "self.wait(2.5)")
    answers: list[dict] = []
    threads = [threading.Thread(target=lambda: answers.append(render(code, sceneName="Long"))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answer["cached"] for answer in answers) == [False, True, True]
    assert len({answer["s3Key"] for answer in answers}) == 1


@pytest.mark.usefixtures("local_store")
def test_a_hit_on_s3_costs_one_head_request(s3, configure):
    storage = configure(S3_BUCKET_NAME=BUCKET).storage
    render()
    calls: list[str] = []
    storage._client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    hit = render()
    assert hit["cached"] is True
    assert calls == ["HeadObject"]


def test_a_request_releases_only_the_lease_it_holds(tmp_path):
    storage = LocalStorage(tmp_path)
    video = "videos/abc/Scene.mp4"
    holder = acquire_lease(storage, video, wait_seconds=60, lease_seconds=60)
    assert holder is not None and holder.held
    # A request that gives up waiting renders without the lease; releasing it leaves the holder's.
    impatient = acquire_lease(storage, video, wait_seconds=0.3)
    assert impatient is not None and not impatient.held
    release_lease(storage, impatient)
    assert storage.read_json(lease_key(video)) == {"owner": holder.owner, "expiresAt": pytest.approx(time.time() + 60, abs=5)}
    # A lease that outlived its time is broken by the next request; its late release leaves the new one.
    release_lease(storage, holder)
    stale = acquire_lease(storage, video, wait_seconds=60, lease_seconds=0.2)
    time.sleep(0.3)
    successor = acquire_lease(storage, video, wait_seconds=60)
    assert stale is not None and successor is not None and successor.held
    release_lease(storage, stale)
    assert (storage.read_json(lease_key(video)) or {}).get("owner") == successor.owner
    release_lease(storage, successor)
    assert storage.read_json(lease_key(video)) is None


def test_a_lease_stands_while_its_holder_renders_and_lapses_soon_after_it_stops(tmp_path):
    storage = LocalStorage(tmp_path)
    video = "videos/abc/Scene.mp4"
    holder = acquire_lease(storage, video, wait_seconds=60, lease_seconds=1)
    with holding(storage, holder):
        # Waiting longer than the lease lasts: renewed meanwhile, it is never broken.
        waiter = acquire_lease(storage, video, wait_seconds=2.5, lease_seconds=1)
        assert waiter is not None and not waiter.held
    assert storage.read_json(lease_key(video)) is None  # given up with the block
    # A holder that stops renewing and never gives its lease up (it died, or storage failed
    # as it tried) holds the next request up for the lease's time, not for its render's.
    assert acquire_lease(storage, video, wait_seconds=60, lease_seconds=1) is not None
    started = time.monotonic()
    successor = acquire_lease(storage, video, wait_seconds=60)
    assert successor is not None and successor.held
    assert time.monotonic() - started < 2
