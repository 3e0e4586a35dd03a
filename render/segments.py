"""Encoded segments: every video part encodes each animation in segments of a fixed number of
frames, so that a chunk whose range starts or ends at a segment boundary inside an animation
encodes exactly the bits a whole render encodes there.

Manim encodes each animation as its own file (a "partial movie") and joins the files by stream
copy. An encoder's choices for a frame depend on the frames around it in its file, so a chunk
that began inside an animation and encoded from there would make different (if close) pixels.
Cutting every animation's file at the same fixed offsets in every render, whole or chunked,
makes the chunk's files the whole render's files. The cost is a key frame per segment.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

# The length of a segment. Ranges of a chunked render start and end at animations' starts or
# at segment boundaries inside them; a shorter segment gives the split more places to cut, a
# longer one fewer key frames.
SEGMENT_SECONDS = 1.0


# The formats encoded in segments. WebM's millisecond timestamps would drift across files.
SEGMENTED_FORMATS = frozenset({"mp4", "mov"})


def segment_frames(frame_rate: float, video_format: str | None) -> int | None:
    """The frames in one segment at `frame_rate`, or None for a format that encodes each
    animation as one file (Manim's "auto" is MP4 for a scene that animates)."""
    if video_format not in SEGMENTED_FORMATS | {"auto"}:
        return None
    return max(1, math.ceil(frame_rate * SEGMENT_SECONDS))


def encode_in_segments(writer: Any, frames: int) -> None:
    """Make Manim's file writer `writer` start a new file after every `frames` frames of an
    animation, and join the extra files in order after the animation's own."""
    original_begin, original_write, original_combine = writer.begin_animation, writer.write_frame, writer.combine_to_movie
    extra: dict[int, list[str]] = {}  # animation index: its files after the first
    written = 0  # frames in the open file

    def begin_animation(*args: Any, **kwargs: Any) -> None:
        nonlocal written
        written = 0
        original_begin(*args, **kwargs)

    def write_frame(pixels: Any, *, repeat: int = 1) -> None:
        nonlocal written
        if writer._current_encode_job is None:  # not going to a file: Manim drops it
            original_write(pixels, repeat=repeat)
            return
        while repeat > 0:
            if written == frames:
                _next_file(writer, extra)
                written = 0
            count = min(repeat, frames - written)
            original_write(pixels, repeat=count)
            written, repeat = written + count, repeat - count

    def combine_to_movie() -> None:
        writer.partial_movie_files = [
            path for index, first in enumerate(writer.partial_movie_files) for path in [first, *extra.get(index, [])]
        ]
        original_combine()

    writer.begin_animation, writer.write_frame, writer.combine_to_movie = begin_animation, write_frame, combine_to_movie


def _next_file(writer: Any, extra: dict[int, list[str]]) -> None:
    """Close the animation's open file and open its next, beside its first."""
    index = writer._current_encode_job.animation_index
    writer.close_partial_movie_stream()
    files = extra.setdefault(index, [])
    first = Path(writer.partial_movie_files[index])
    path = first.with_name(f"{first.stem}.{len(files) + 1}{first.suffix}")
    writer.open_partial_movie_stream(animation_index=index, file_path=path)
    files.append(str(path))
