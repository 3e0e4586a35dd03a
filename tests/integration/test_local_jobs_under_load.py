"""Fifty async jobs sent to the local server at once (`make serve`, on the embedded store):
each is accepted with an id of its own, runs once to `succeeded`, and its video is its own
scene (its own colour), whole."""

import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support.local_server import local_server, request
from tests.support.scripts import TILE_FRAMES, tile, tile_colour
from tests.support.video import decode

JOBS = 50
STAGES = ["queued", "rendering", "uploading", "succeeded"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The server's base URL and its embedded store."""
    folder = tmp_path_factory.mktemp("loaded-server")
    with local_server(folder) as base:
        yield base, folder / "store"


def submit_together(base: str) -> list[tuple[int, dict]]:
    """Every job's POST sent at the same moment, one thread each; the answers, by job."""
    answers: list[tuple[int, dict]] = [(0, {})] * JOBS
    start = threading.Barrier(JOBS)

    def submit(index: int) -> None:
        start.wait()
        answers[index] = request(f"{base}/api/render", {"codeContent": tile(index), "quality": "-ql", "async": True})

    threads = [threading.Thread(target=submit, args=(index,)) for index in range(JOBS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def watch(base: str, job_ids: list[str], seconds: float = 90) -> dict[str, list[dict]]:
    """Poll every job until all have ended; every record seen of each, in order."""
    seen: dict[str, list[dict]] = {job_id: [] for job_id in job_ids}
    running = set(job_ids)
    deadline = time.monotonic() + seconds
    while running:
        assert time.monotonic() < deadline, f"{len(running)} jobs still running"
        for job_id in sorted(running):
            status, record = request(f"{base}/api/render/status/{job_id}")
            assert status == 200, record
            seen[job_id].append(record)
            if record["status"] in ("succeeded", "failed"):
                running.discard(job_id)
        time.sleep(0.05)
    return seen


def test_fifty_jobs_at_once_each_succeed_once_with_their_own_video(served, tmp_path):
    base, store = served
    answers = submit_together(base)
    assert [status for status, _ in answers] == [202] * JOBS, answers
    job_ids = [accepted["jobId"] for _, accepted in answers]
    assert len(set(job_ids)) == JOBS

    seen = watch(base, job_ids)
    for job_id, records in seen.items():
        stages = [STAGES.index(record["status"]) for record in records]
        assert stages == sorted(stages) and stages[-1] == STAGES.index("succeeded"), (job_id, records)
    final = {job_id: records[-1] for job_id, records in seen.items()}
    collapsed = {job_id: seen[job_id] for job_id, record in final.items() if record["result"]["cached"] is not False}
    assert not collapsed, collapsed  # each rendered, none collapsed (every record seen of any that was)
    assert len({record["s3Key"] for record in final.values()}) == JOBS

    # Nothing ran again once it had ended, and the store holds one record and one video a job.
    again = {job_id: request(f"{base}/api/render/status/{job_id}")[1] for job_id in job_ids}
    assert {job_id: record["updatedAt"] for job_id, record in again.items()} == {
        job_id: record["updatedAt"] for job_id, record in final.items()
    }
    assert sorted(path.name for path in (store / "jobs").iterdir()) == sorted(f"{job_id}.json" for job_id in job_ids)
    stored = sorted(str(path.relative_to(store)) for path in (store / "videos").rglob("*") if path.is_file())
    assert stored == sorted(record["s3Key"] for record in final.values())

    for index, job_id in enumerate(job_ids):
        video = tmp_path / f"{index}.mp4"
        with urllib.request.urlopen(final[job_id]["url"], timeout=10) as response:
            video.write_bytes(response.read())
        frames = decode(video).frames
        assert len(frames) == TILE_FRAMES, (job_id, len(frames))
        centre = frames[-1][240, 427].astype(int)
        assert np.abs(centre - tile_colour(index)).max() < 25, (index, centre, tile_colour(index))
