"""The result cache: the same script, scene and quality give the same key, so a video made
once is answered again at once; and a lease, so that identical requests arriving together
render once.

The key hashes everything that determines the video: the code (normalised so that line
endings and trailing whitespace do not matter, while comments do), the scene, the quality,
the format, and the Manim and worker versions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from handler.observability import logger
from handler.storage import Storage, StorageError
from render import MANIM_VERSION, WORKER_VERSION, Output

# How often a request waiting for an identical one looks for its video.
_POLL_SECONDS = 0.25
# How long a lease stands unless its holder renews it, which it does while it renders and
# uploads (`holding`): a lease left behind, by a render that died or by one that failed when
# storage did (S3 down during the upload, so the lease could not be removed either), holds
# identical requests up this long at most.
LEASE_SECONDS = 10.0


def normalise(code: str) -> str:
    """The code as it matters for the video: `\\r\\n` and `\\r` become `\\n`, trailing
    whitespace and trailing blank lines go."""
    lines = code.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).rstrip("\n") + "\n"


def cache_key(code: str, scene_name: str, quality: str, output: Output, frame_at: float | None = None) -> str:
    """The hash under which the video is stored: `videos/<hash>/<Scene>.mp4`. `output` (the
    format, transparency, size, frame rate and background asked for) is part of it, and the
    time of a single frame asked for."""
    material = {
        "code": normalise(code),
        "scene": scene_name,
        "quality": quality,
        "output": output.model_dump(),
        "frameAt": frame_at,
        "manim": MANIM_VERSION,
        "worker": WORKER_VERSION,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


def lease_key(video_key: str) -> str:
    return f"{video_key}.lease"


@dataclass(frozen=True)
class Lease:
    """The right to render `video_key` while identical requests wait: held, or given up on
    after waiting too long for another request's lease (then this one renders anyway). A held
    lease lapses `seconds` after it was taken or last renewed."""

    video_key: str
    owner: str
    held: bool
    seconds: float = LEASE_SECONDS


def _lease_record(owner: str, seconds: float) -> dict[str, object]:
    return {"owner": owner, "expiresAt": time.time() + seconds}


def acquire_lease(storage: Storage, video_key: str, wait_seconds: float, lease_seconds: float = LEASE_SECONDS) -> Lease | None:
    """Wait until this request may render `video_key`: a Lease once it may, None as soon as
    the video exists (an identical request made it meanwhile).

    A lease past its expiry (not renewed for `lease_seconds`) belongs to a render that failed
    or died; it is broken. Waiting never lasts longer than `wait_seconds`: then this request
    renders without the lease.
    """
    owner = uuid.uuid4().hex
    give_up = time.monotonic() + wait_seconds
    while True:
        if storage.create_json(lease_key(video_key), _lease_record(owner, lease_seconds)):
            lease = Lease(video_key, owner, held=True, seconds=lease_seconds)
            if not storage.exists(video_key):
                return lease
            release_lease(storage, lease)  # the holder before us made it
            return None
        if storage.exists(video_key):
            return None
        found = storage.read_json(lease_key(video_key))
        if found is not None and found.get("expiresAt", 0) < time.time():
            storage.delete(lease_key(video_key))
            continue
        if time.monotonic() > give_up:
            return Lease(video_key, owner, held=False)
        time.sleep(_POLL_SECONDS)


def _holds(storage: Storage, lease: Lease) -> bool:
    """Whether the stored lease is this one (a lease never held is nobody's)."""
    if not lease.held:
        return False
    found = storage.read_json(lease_key(lease.video_key))
    return found is not None and found.get("owner") == lease.owner


def renew_lease(storage: Storage, lease: Lease) -> None:
    """Move the lease's expiry `lease.seconds` on from now, if this request holds it."""
    if _holds(storage, lease):
        storage.write_json(lease_key(lease.video_key), _lease_record(lease.owner, lease.seconds))


def release_lease(storage: Storage, lease: Lease) -> None:
    """Give the lease up, if this request holds it: another's is never removed."""
    if _holds(storage, lease):
        storage.delete(lease_key(lease.video_key))


@contextlib.contextmanager
def holding(storage: Storage, lease: Lease | None) -> Iterator[None]:
    """Keep `lease` (if any, and held) renewed until the block ends, then give it up.

    Both are best effort and never fail the request: storage that fails them fails the
    render's own upload or lookups, if anything, and a lease left behind lapses by itself."""
    if lease is None or not lease.held:
        yield
        return
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(lease.seconds / 3):
            try:
                renew_lease(storage, lease)
            except StorageError as error:
                logger.warning("Lease not renewed", extra={"video_key": lease.video_key, "error": str(error)})

    renewer = threading.Thread(target=renew, name="lease-renewal", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        try:
            release_lease(storage, lease)
        except StorageError as error:
            logger.warning("Lease not released; it lapses", extra={"video_key": lease.video_key, "error": str(error)})
