"""Ranges sent to other invocations (handler.fanout.LambdaRanges), against invocations that
fail the way invocations can.

Here the other invocations are played by a function that writes what a chunk invocation
writes (the piece and its marker) into the embedded store; the range's caller is the real one.
"""

import threading
import time
from pathlib import Path

import pytest

from handler import fanout
from handler.errors import LOST, ChunkFailed, ChunksOverdue
from handler.fanout import LambdaRanges, render_chunk
from handler.jobs import create_job, give_up, load_job
from handler.models import RenderChunkEvent, RenderRequest
from handler.storage import LocalStorage
from render import Deadline, Position, Progress, Range, RenderLimits, RenderSpec
from tests.support import scripts

INTERNAL = {"statusCode": 500, "message": "worker died", "errors": {"type": "RendererFailed", "class": "internal"}}
SCRIPT = {"statusCode": 422, "message": "NameError", "errors": {"type": "NameError", "class": "script_error"}}


class Invocations:
    """Chunk invocations whose n-th answer is scripted (default: success); with `slow`, the
    first one reports that progress and finishes a second later."""

    def __init__(self, storage: LocalStorage, failures: list[dict] | None = None, slow: dict | None = None) -> None:
        self.storage = storage
        self.failures = failures or []
        self.slow = slow
        self.calls: list[dict] = []

    def __call__(self, event: dict) -> None:
        self.calls.append(event)
        prefix = f"jobs/chunks-{event['group']}/"
        assert (self.storage.read_json(prefix + "request.json") or {}).get("codeContent") == scripts.CIRCLE
        if self.failures:
            self.storage.write_json(prefix + "marker.json", {"ok": False, "error": self.failures.pop(0)})
            return
        if self.slow is not None:
            self.storage.write_json(prefix + "marker.json", {"progress": self.slow})
            self.slow = None
            threading.Timer(1.0, self, [event]).start()
            return
        piece = self.storage.root / f"piece-{event['index']}"
        piece.write_bytes(f"piece {event['index']} of {event['start']}-{event['end']}".encode())
        self.storage.put_video(piece, prefix + "piece.mp4")
        self.storage.write_json(prefix + "marker.json", {"ok": True})


def leftovers(storage: LocalStorage) -> list[str]:
    return [str(path.relative_to(storage.root)) for path in storage.root.rglob("*") if path.is_file() and "jobs" in path.parts]


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    (tmp_path / "store").mkdir()
    return LocalStorage(tmp_path / "store")


def a_range(tmp_path: Path, seconds: float = 10, progress: list | None = None) -> Range:
    """Range 1 (from animation 2's frame 3 up to animation 4) of a render of the circle script,
    due in `seconds`."""
    span = (Position(2, 3), Position(4))
    spec = RenderSpec(scripts.CIRCLE, "-ql", RenderLimits(), Deadline.after(seconds), scene="DrawCircle", span=span)
    reports = [] if progress is None else progress
    return Range(spec, index=1, frames=12, piece=tmp_path / "piece.mp4", on_progress=reports.append, stopped=threading.Event())


def test_the_piece_comes_back_and_everything_stored_for_it_is_removed(storage, tmp_path):
    invocations = Invocations(storage)
    work = a_range(tmp_path)
    LambdaRanges(storage, invocations)(work)
    assert work.piece.read_bytes() == b"piece 1 of [2, 3]-[4, 0]"
    assert [(event["action"], event["index"]) for event in invocations.calls] == [("renderChunk", 1)]
    assert leftovers(storage) == []


def test_progress_the_invocation_reports_is_passed_on(storage, tmp_path):
    progress: list[Progress] = []
    LambdaRanges(storage, Invocations(storage, slow={"animations": 1, "frames": 4}))(a_range(tmp_path, progress=progress))
    assert progress[0] == Progress(animations=1, frames=4)
    assert leftovers(storage) == []


def test_a_range_that_failed_for_a_reason_of_ours_is_asked_for_once_more(storage, tmp_path):
    invocations = Invocations(storage, [INTERNAL])
    work = a_range(tmp_path)
    LambdaRanges(storage, invocations)(work)
    assert work.piece.is_file() and len(invocations.calls) == 2
    assert leftovers(storage) == []


def test_a_second_failure_of_ours_fails_the_render(storage, tmp_path):
    invocations = Invocations(storage, [INTERNAL, INTERNAL])
    with pytest.raises(ChunkFailed) as caught:
        LambdaRanges(storage, invocations)(a_range(tmp_path))
    assert caught.value.problem.status == 500 and len(invocations.calls) == 2
    assert leftovers(storage) == []


def test_a_scripts_error_is_not_retried_and_is_the_answer(storage, tmp_path):
    invocations = Invocations(storage, [SCRIPT])
    with pytest.raises(ChunkFailed) as caught:
        LambdaRanges(storage, invocations)(a_range(tmp_path))
    assert (caught.value.problem.status, caught.value.problem.body["errors"]["type"]) == (422, "NameError")
    assert len(invocations.calls) == 1
    assert leftovers(storage) == []


def test_a_range_that_never_comes_back_fails_at_the_deadline(storage, tmp_path):
    started = time.monotonic()
    with pytest.raises(ChunksOverdue, match="Chunk 1 did not come back in time"):
        LambdaRanges(storage, lambda event: None)(a_range(tmp_path, seconds=1))
    assert time.monotonic() - started < 3
    assert leftovers(storage) == []


def test_a_range_the_render_no_longer_needs_stops_waiting(storage, tmp_path):
    work = a_range(tmp_path)
    threading.Timer(0.5, work.stopped.set).start()
    started = time.monotonic()
    LambdaRanges(storage, lambda event: None)(work)
    assert time.monotonic() - started < 3 and not work.piece.exists()
    assert leftovers(storage) == []


class RecordingStorage(LocalStorage):
    """The embedded store, remembering every JSON document written to it."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.writes: list[tuple[str, dict]] = []

    def write_json(self, key: str, data: dict) -> None:
        self.writes.append((key, data))
        super().write_json(key, data)


def test_a_chunk_reports_its_progress_in_its_marker_then_how_it_went(configure, tmp_path):
    from tests.benchmark import LONG  # fifteen one-second animations

    environment = configure()
    storage = environment.storage = RecordingStorage(tmp_path / "chunks")
    group = "0" * 32
    prefix = f"jobs/chunks-{group}/"
    storage.write_json(prefix + "request.json", {"codeContent": LONG, "quality": "-ql"})
    answer = render_chunk(environment, RenderChunkEvent(group=group, index=0, start=(3, 5), end=(15, 0)), None)
    assert answer == {"index": 0, "ok": True}
    markers = [data for key, data in storage.writes if key == prefix + "marker.json"]
    assert markers[-1] == {"ok": True, "seconds": markers[-1]["seconds"]} and markers[-1]["seconds"] > 0
    assert markers[0]["progress"]["frames"] > 0, markers  # written while the range was drawn
    assert storage.read_json(prefix + "marker.json") == markers[-1]
    assert storage.exists(prefix + "piece.mp4")


def test_the_chunks_of_a_job_given_up_as_lost_stop_and_leave_nothing(configure, tmp_path):
    # The job's coordinating invocation died while a chunk of it renders elsewhere.
    from tests.benchmark import LONG

    environment = configure()
    storage = environment.storage
    body = {"codeContent": LONG, "quality": "-qm", "async": True}
    request = RenderRequest.model_validate(body, context={"limits": environment.settings.request_limits})
    record, _ = create_job(storage, request, "coordinator-died")
    record.status = "rendering"
    record.save(storage)
    group = fanout._group("coordinator-died", 1)  # as its coordinator named the range
    storage.write_json(f"jobs/chunks-{group}/request.json", {"codeContent": LONG, "quality": "-qm"})
    answers: list[dict] = []
    event = RenderChunkEvent(group=group, index=1, start=(0, 0), end=(15, 0))
    chunk = threading.Thread(target=lambda: answers.append(render_chunk(environment, event, None)))
    chunk.start()
    while not (storage.read_json(f"jobs/chunks-{group}/marker.json") or {}).get("progress"):
        assert chunk.is_alive(), answers
        time.sleep(0.05)
    give_up(environment, "coordinator-died")  # as Lambda's failure record, or a stalled record, makes it
    chunk.join(timeout=5)
    assert not chunk.is_alive() and answers == [{"index": 1, "ok": False}]
    assert leftovers(storage) == ["jobs/coordinator-died.json"]
    final = load_job(storage, "coordinator-died")
    assert final is not None and (final.status, final.error) == ("failed", LOST)


def test_a_range_is_read_less_often_while_it_draws_and_soon_when_it_should_be_done(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(fanout.time, "monotonic", lambda: now[0])
    pace = fanout._PollPace(frames=300)
    blind = []
    for _ in range(6):  # no progress yet: from 0.05 s, half again each time, up to 0.25 s
        pace.read(None)
        blind.append(round(pace.pause, 3))
    assert blind == [0.05, 0.075, 0.113, 0.169, 0.25, 0.25]
    pace.read(30)  # drawing, at a pace not known yet: it may be done before its next report
    assert pace.pause == 0.1
    now[0] = 1.0
    pace.read(60)  # 30 frames a second: 240 frames, 8 s, still to draw
    assert pace.pause == 1.0
    now[0] = 7.0
    pace.read(60)  # the same report again: 2 s to go at that pace
    assert pace.pause == pytest.approx(1.0)
    now[0] = 8.5
    pace.read(60)  # its last half second: read within a tenth of one of its end
    assert pace.pause == 0.1
    now[0] = 9.5
    pace.read(60)  # past when it should have been done: read often
    assert pace.pause == 0.05


def test_a_chunk_is_asked_for_the_output_its_render_was():
    from handler.models import RenderRequest
    from handler.settings import Settings

    limits = Settings.from_env().request_limits
    asked = {"format": "mov", "transparent": True, "resolution": [480, 854], "fps": 24, "backgroundColor": "#102030"}
    request = RenderRequest.model_validate({"codeContent": "x", **asked}, context={"limits": limits})
    assert RenderRequest.asking_for(request.output()) == asked
    assert RenderRequest.asking_for(RenderRequest.model_validate({"codeContent": "x"}, context={"limits": limits}).output()) == {}
