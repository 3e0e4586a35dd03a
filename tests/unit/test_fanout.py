"""The coordinator of fanned-out chunks, against pieces that fail the way invocations can.

Here the other invocations are played by a function that writes what a chunk invocation
writes (the piece and its marker) into the embedded store; the coordinator is the real one.
"""

import threading
import time

import pytest

from handler.errors import ChunkFailed
from handler.fanout import render_fanned_out, run_chunk
from handler.models import RenderRequest
from handler.storage import LocalStorage
from render import RendererFailed
from tests.support import scripts

REQUEST = RenderRequest(code_content=scripts.CIRCLE, quality="-ql")
RANGES = [(0, 2), (2, 4)]
FRAMES = [10, 5, 7, 3]  # the plan: frames of each animation
INTERNAL = {"statusCode": 500, "message": "worker died", "errors": {"type": "RendererFailed", "class": "internal"}}
SCRIPT = {"statusCode": 422, "message": "NameError", "errors": {"type": "NameError", "class": "script_error"}}


class Invocations:
    """Chunk invocations whose n-th answer for each piece is scripted (default: success); a
    piece in `slow` reports progress first and finishes a second later."""

    def __init__(self, storage: LocalStorage, failures: dict[int, list[dict]], slow: dict[int, dict] | None = None) -> None:
        self.storage = storage
        self.failures = failures
        self.slow = slow or {}
        self.calls: list[int] = []

    def __call__(self, event: dict) -> None:
        index = event["index"]
        self.calls.append(index)
        prefix = f"jobs/chunks-{event['group']}/"
        scripted = self.failures.get(index, [])
        if scripted:
            self.storage.write_json(prefix + f"{index}.json", {"ok": False, "error": scripted.pop(0)})
            return
        if index in self.slow:
            self.storage.write_json(prefix + f"{index}.json", {"progress": self.slow.pop(index)})
            threading.Timer(1.0, self, [event]).start()
            return
        piece = self.storage.root / f"piece-{index}"
        piece.write_bytes(f"piece {index}".encode())
        self.storage.put_video(piece, prefix + f"{index}.mp4")
        self.storage.write_json(prefix + f"{index}.json", {"ok": True})


def leftovers(storage: LocalStorage) -> list[str]:
    return [str(path.relative_to(storage.root)) for path in storage.root.rglob("*") if path.is_file() and "jobs" in path.parts]


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    (tmp_path / "store").mkdir()
    return LocalStorage(tmp_path / "store")


def fan_out(storage: LocalStorage, invocations: Invocations, seconds: float = 10, progress: list | None = None) -> list[bytes]:
    progress = [] if progress is None else progress
    deadline = time.monotonic() + seconds
    with render_fanned_out(REQUEST, RANGES, FRAMES, storage, invocations, deadline, progress.append) as pieces:
        contents = [piece.read_bytes() for piece in pieces]
    assert progress[-1] == {"animations": 4, "frames": 25, "chunks": 2, "chunksDone": 2}
    return contents


def test_pieces_come_back_in_order_and_are_removed(storage):
    invocations = Invocations(storage, {})
    assert fan_out(storage, invocations) == [b"piece 0", b"piece 1"]
    assert sorted(invocations.calls) == [0, 1]
    assert leftovers(storage) == []


def test_progress_counts_chunks_done_and_frames_drawn_over_all_chunks(storage):
    progress: list[dict] = []
    fan_out(storage, Invocations(storage, {}, slow={1: {"animations": 1, "frames": 4}}), progress=progress)
    # piece 0 is done (its 15 planned frames), piece 1 has drawn 4 of its 10 so far
    assert progress[0] == {"animations": 3, "frames": 19, "chunks": 2, "chunksDone": 1}
    assert leftovers(storage) == []


def test_a_piece_that_failed_for_a_reason_of_ours_is_asked_for_once_more(storage):
    invocations = Invocations(storage, {1: [INTERNAL]})
    assert fan_out(storage, invocations) == [b"piece 0", b"piece 1"]
    assert sorted(invocations.calls) == [0, 1, 1]
    assert leftovers(storage) == []


def test_a_second_failure_of_ours_fails_the_render(storage):
    invocations = Invocations(storage, {1: [INTERNAL, INTERNAL]})
    with pytest.raises(ChunkFailed) as caught:
        fan_out(storage, invocations)
    assert caught.value.status == 500 and sorted(invocations.calls) == [0, 1, 1]
    assert leftovers(storage) == []


def test_a_scripts_error_is_not_retried_and_is_the_answer(storage):
    invocations = Invocations(storage, {0: [SCRIPT]})
    with pytest.raises(ChunkFailed) as caught:
        fan_out(storage, invocations)
    assert (caught.value.status, caught.value.body["errors"]["type"]) == (422, "NameError")
    assert sorted(invocations.calls) == [0, 1]
    assert leftovers(storage) == []


def test_pieces_that_never_come_back_fail_at_the_deadline(storage):
    started = time.monotonic()
    with pytest.raises(RendererFailed, match="2 of 2 chunks did not come back in time"):
        fan_out(storage, lambda event: None, seconds=1)
    assert time.monotonic() - started < 3
    assert leftovers(storage) == []


class RecordingStorage(LocalStorage):
    """The embedded store, remembering every JSON document written to it."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.writes: list[tuple[str, dict]] = []

    def write_json(self, key: str, data: dict) -> None:
        self.writes.append((key, data))
        super().write_json(key, data)


def test_a_chunk_reports_its_progress_in_its_marker_then_how_it_went(worker, configure, tmp_path):
    from tests.benchmark import LONG  # fifteen one-second animations

    storage = RecordingStorage(tmp_path / "chunks")
    storage.write_json("jobs/chunks-g/request.json", RenderRequest(code_content=LONG, quality="-ql").model_dump(by_alias=True))
    answer = run_chunk({"group": "g", "index": 0, "start": 3, "end": 15}, configure(), storage, worker, None)
    assert answer == {"index": 0, "ok": True}
    markers = [data for key, data in storage.writes if key == "jobs/chunks-g/0.json"]
    assert markers[-1] == {"ok": True}
    assert markers[0]["progress"]["frames"] > 0, markers  # written while the range was drawn
    assert storage.read_json("jobs/chunks-g/0.json") == {"ok": True}
