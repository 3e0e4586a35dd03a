"""Twenty async jobs on the Lambda path: direct invokes of one emulated environment, sent
together, whose self-invocations the stand-in Lambda service delivers to whichever of two
environments is idle. Each job is accepted once, delivered once, succeeds, and its own video
(its own colour) is in the bucket."""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tests.support.lambda_function import poll_job
from tests.support.scripts import TILE_FRAMES, tile, tile_colour
from tests.support.video import decode

JOBS = 20
ENVIRONMENTS = 2  # for `functions` (conftest.py): the one the jobs are sent to, and another
FIRST_UID = 2101


def test_twenty_jobs_each_run_once_and_store_their_own_video(functions, service, s3_server, bucket, tmp_path):
    front = functions[0]
    with ThreadPoolExecutor(JOBS) as pool:  # sent together; one environment answers one at a time
        accepted = list(
            pool.map(lambda index: front.invoke({"codeContent": tile(index), "quality": "-ql", "async": True}), range(JOBS))
        )
    assert [answer.get("statusCode") for answer in accepted] == [202] * JOBS, accepted
    job_ids = [answer["jobId"] for answer in accepted]
    assert len(set(job_ids)) == JOBS

    records = [poll_job(front, job_id) for job_id in job_ids]
    assert [record["status"] for record in records] == ["succeeded"] * JOBS, records
    assert all(record["result"]["cached"] is False for record in records)  # each rendered, none collapsed

    # One self-invocation a job, delivered once, as Lambda's asynchronous invokes (no retries).
    runs = [call["payload"] for call in service.received if call["payload"].get("action") == "runJob"]
    assert Counter(run["jobId"] for run in runs) == Counter(job_ids)
    assert all(call["invocationType"] == "Event" for call in service.received)
    delivered = [delivery for delivery in service.delivered if delivery.event.get("action") == "runJob"]
    assert Counter(delivery.event["jobId"] for delivery in delivered) == Counter(job_ids)
    assert 1 in {delivery.target for delivery in delivered}  # the second environment ran jobs

    s3 = s3_server.client()
    stored = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix="videos/").get("Contents", [])]
    assert sorted(stored) == sorted(record["s3Key"] for record in records)  # and no lease left
    jobs = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix="jobs/").get("Contents", [])]
    assert sorted(jobs) == sorted(f"jobs/{job_id}.json" for job_id in job_ids)
    for index, record in enumerate(records):
        video = tmp_path / f"{index}.mp4"
        video.write_bytes(s3.get_object(Bucket=bucket, Key=record["s3Key"])["Body"].read())
        frames = decode(video).frames
        assert len(frames) == TILE_FRAMES, (record["jobId"], len(frames))
        centre = frames[-1][240, 427].astype(int)
        assert np.abs(centre - tile_colour(index)).max() < 25, (index, centre, tile_colour(index))
