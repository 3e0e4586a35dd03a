"""Decode a rendered video, so tests assert what a viewer would see, not that a file exists; and
compare frames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class DecodedVideo:
    width: int
    height: int
    fps: float
    frames: list[np.ndarray]  # RGB, one array per frame

    @property
    def duration(self) -> float:
        return len(self.frames) / self.fps

    def lit_fraction(self, index: int, rows: slice = slice(None)) -> float:
        """The share of pixels that are not background black in frame `index` (within `rows`)."""
        return float((self.frames[index][rows].max(axis=2) > 40).mean())


def decode(path: Path) -> DecodedVideo:
    """Every frame of the video's first stream, which must be H.264 in MP4."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264", stream.codec_context.name
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return DecodedVideo(stream.codec_context.width, stream.codec_context.height, float(stream.average_rate or 0), frames)


def decode_sound(path: Path) -> np.ndarray | None:
    """The video's sound as one array of samples, or None if it has no audio stream."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        return np.concatenate([frame.to_ndarray().reshape(-1) for frame in container.decode(stream)])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """The peak signal-to-noise ratio between two RGB frames, in dB (infinite when they are equal)."""
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else 10 * np.log10(255.0**2 / error)


@dataclass(frozen=True)
class Probe:
    """What a player sees of a video's (or a still's) first stream."""

    codec: str
    pixel_format: str
    width: int
    height: int
    frames: int
    rate: float
    metadata: dict[str, str]
    corner: np.ndarray  # the first frame's top-left pixel, RGBA


def probe(path: Path) -> Probe:
    """Decode every frame of any format (MP4, WebM, MOV, GIF, PNG) and describe it."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgba") for frame in container.decode(stream)]
        context = stream.codec_context
        return Probe(
            context.name,
            context.pix_fmt or "",
            context.width,
            context.height,
            len(frames),
            float(stream.average_rate or 0),
            dict(stream.metadata),
            frames[0][0, 0],
        )
