"""The result cache: the same script, scene and quality give the same key, so a video made
once is answered again at once; and a lease, so that identical requests arriving together
render once.

The key hashes everything that determines the video: the code (normalised so that line
endings and trailing whitespace do not matter, while comments do), the scene, the quality,
the format, and the Manim and worker versions.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass

from handler.storage import Storage
from render import MANIM_VERSION, WORKER_VERSION, Output

# How often a request waiting for an identical one looks for its video.
_POLL_SECONDS = 0.25


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
    after waiting too long for another request's lease (then this one renders anyway)."""

    video_key: str
    owner: str
    held: bool


def acquire_lease(storage: Storage, video_key: str, ttl_seconds: float) -> Lease | None:
    """Wait until this request may render `video_key`: a Lease once it may, None as soon as
    the video exists (an identical request made it meanwhile).

    A lease older than `ttl_seconds` belongs to a render that died; it is broken. Waiting
    never lasts longer than `ttl_seconds`: then this request renders without the lease.
    """
    owner = uuid.uuid4().hex
    give_up = time.monotonic() + ttl_seconds
    while True:
        if storage.create_json(lease_key(video_key), {"owner": owner, "expiresAt": time.time() + ttl_seconds}):
            lease = Lease(video_key, owner, held=True)
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


def release_lease(storage: Storage, lease: Lease) -> None:
    """Give the lease up, if this request holds it: another's is never removed."""
    if not lease.held:
        return
    found = storage.read_json(lease_key(lease.video_key))
    if found is not None and found.get("owner") == lease.owner:
        storage.delete(lease_key(lease.video_key))
