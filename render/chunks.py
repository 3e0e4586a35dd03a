"""Chunked rendering: plan a scene, split it into ranges of whole animations, render a range
exactly as a whole render would, and join the pieces without re-encoding.

Exactness comes from stepping: before its range, a chunk plays every animation through the
same frame times as a whole render (every updater called with the same `dt` sequence,
`renderer.time` advanced frame by frame) but draws and encodes nothing. Manim's own skipping
(`-n`) advances a skipped animation in one step, which lets time-dependent updaters drift.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np


@contextlib.contextmanager
def without_drawing(renderer: Any) -> Iterator[None]:
    """Play animations on `renderer` through all their frame times, drawing and writing nothing.

    Everything that changes state (updaters, `renderer.time`, animation counters) happens as
    in a whole render; what only produces pixels or file data (drawing, static-frame capture,
    encoding) is skipped.
    """
    writer = renderer.file_writer
    saved = {
        (renderer, "update_frame"): renderer.update_frame,
        (renderer, "add_frame"): renderer.add_frame,
        (renderer, "get_frame"): renderer.get_frame,
        (renderer, "save_static_frame_data"): renderer.save_static_frame_data,
        (writer, "begin_animation"): writer.begin_animation,
        (writer, "end_animation"): writer.end_animation,
        (writer, "add_partial_movie_file"): writer.add_partial_movie_file,
    }

    def add_frame(_frame: Any, num_frames: int = 1) -> None:
        renderer.time += num_frames * (1 / renderer.camera.frame_rate)

    renderer.update_frame = lambda *args, **kwargs: None
    renderer.add_frame = add_frame
    renderer.get_frame = lambda: None
    renderer.save_static_frame_data = lambda *args, **kwargs: None
    writer.begin_animation = lambda *args, **kwargs: saved[(writer, "begin_animation")](False, **kwargs)
    writer.end_animation = lambda *args, **kwargs: saved[(writer, "end_animation")](False)
    writer.add_partial_movie_file = lambda _hash: saved[(writer, "add_partial_movie_file")](None)
    try:
        yield
    finally:
        for (owner, name), original in saved.items():
            setattr(owner, name, original)


@dataclass(frozen=True)
class Plan:
    """What a planning pass found: each animation's frame count, and the scene's soundtrack
    (an AAC file, or None for a silent scene). Chunks carry no sound; the soundtrack is added
    once to the joined video."""

    frames: list[int]
    soundtrack: Path | None = None


def plan_scene(scene: Any, soundtrack: Path) -> Plan:
    """Run the scene as Manim's own skipping does (each animation advanced in one step, nothing
    drawn or encoded) and count the frames each animation (each `play` and `wait`) would make
    in a whole render, by Manim's own rule: one per frame time in `[0, run_time)`, or for a
    static wait, `int(duration / dt)`. Sounds the scene adds are mixed as a whole render mixes
    them, at the time a whole render would have reached, and written to `soundtrack`.

    Skipping is fine here, where only counts matter: ranges are rendered exactly however the
    plan balanced them. (A `wait_until` whose length depends on the scene's state is counted
    at its maximum.)"""
    renderer = scene.renderer
    writer = renderer.file_writer
    dt = 1 / renderer.camera.frame_rate
    frames: list[int] = []
    clock = 0.0  # `renderer.time` in a whole render, advanced by the same additions
    original_play = renderer.play

    def counting_play(*args: Any, **kwargs: Any) -> None:
        nonlocal clock
        renderer._original_skipping_status = True
        original_play(*args, **kwargs)
        if scene.is_current_animation_frozen_frame():
            frames.append(int(scene.duration / dt))
            clock += frames[-1] * dt
        else:
            frames.append(len(np.arange(0, scene.duration, dt)))
            for _ in range(frames[-1]):
                clock += dt

    def timed_add_sound(sound_file: str, time_offset: float = 0, gain: float | None = None, **kwargs: Any) -> None:
        writer.add_sound(sound_file, clock + time_offset, gain, **kwargs)  # skipping would drop it

    renderer.play = counting_play
    scene.add_sound = timed_add_sound
    scene.render()
    if not writer.includes_sound:
        return Plan(frames)
    _write_soundtrack(writer, soundtrack)
    return Plan(frames, soundtrack)


def _write_soundtrack(writer: Any, target: Path) -> None:
    """Export the mixed sound as Manim's own `combine_to_movie` does: WAV, then AAC."""
    from manim.scene.scene_file_writer import AudioSegment, convert_audio

    wav = target.with_suffix(".wav")
    writer.add_audio_segment(AudioSegment.silent(0))
    writer.audio_segment.export(wav, format="wav", bitrate="312k")
    convert_audio(wav, target, "aac")
    wav.unlink()


def limit_to_range(scene: Any, start: int, end: int) -> None:
    """Make `scene.render()` produce only animations `start` to `end - 1`, reaching `start`
    by stepping the earlier ones without drawing, and ending the scene after `end - 1`."""
    from manim.utils.exceptions import EndSceneEarlyException

    renderer = scene.renderer
    original_play = renderer.play
    renderer.drawn_from = None  # (time, animation) where drawing began, for progress reports
    scene.add_sound = lambda *args, **kwargs: None  # the plan made the soundtrack for the joined video

    def ranged_play(*args: Any, **kwargs: Any) -> None:
        index = renderer.num_plays
        if index >= end:
            raise EndSceneEarlyException()
        if index < start:
            with without_drawing(renderer):
                original_play(*args, **kwargs)
        else:
            if renderer.drawn_from is None:
                renderer.drawn_from = (renderer.time, index)
            original_play(*args, **kwargs)

    renderer.play = ranged_play


# A chunk shorter than this is not worth its start-up and join; `auto` never makes one.
MIN_CHUNK_SECONDS = 5.0


def choose_chunks(frames: list[int], requested: int | str, max_chunks: int, frame_rate: float) -> int:
    """How many chunks to render `frames` in: the number asked for (at most one per animation
    and `max_chunks`), or for "auto" as many as give each at least MIN_CHUNK_SECONDS."""
    if requested == "auto":
        wanted = int(sum(frames) / frame_rate // MIN_CHUNK_SECONDS)
    else:
        wanted = int(requested)
    return max(1, min(wanted, max_chunks, len(frames)))


def split(frames: list[int], chunks: int) -> list[tuple[int, int]]:
    """At most `chunks` contiguous ranges of whole animations, balanced by frames.

    Each range is (first animation, one past the last). Each boundary goes where the running
    total of frames comes closest to the next equal share, every range keeping at least one
    animation.
    """
    chunks = max(1, min(chunks, len(frames)))
    total = sum(frames)
    through = list(itertools.accumulate(frames))  # frames up to and including animation i
    starts = [0]
    for k in range(1, chunks):
        share = total * k / chunks
        candidates = range(starts[-1] + 1, len(frames) - (chunks - k) + 1)
        starts.append(min(candidates, key=lambda end: abs(through[end - 1] - share)))
    return list(zip(starts, [*starts[1:], len(frames)], strict=True))


def join(parts: list[Path], output: Path, soundtrack: Path | None = None) -> None:
    """Concatenate MP4 chunks into one by stream copy (no re-encoding): packets are copied
    with their timestamps shifted past the previous chunks. A soundtrack (from the plan) is
    copied in as the audio stream, as a whole render adds its sound."""
    with contextlib.ExitStack() as stack:
        target = stack.enter_context(av.open(str(output), "w", format="mp4"))
        with av.open(str(parts[0])) as first:
            video = target.add_stream_from_template(first.streams.video[0])
        if soundtrack is not None:
            sound = stack.enter_context(av.open(str(soundtrack)))
            audio = target.add_stream_from_template(sound.streams.audio[0])
        offset = 0
        for part in parts:
            with av.open(str(part)) as source:
                last_end = offset
                for packet in source.demux(source.streams.video[0]):
                    if packet.dts is None or packet.pts is None:
                        continue
                    end = packet.pts + (packet.duration or 0)
                    packet.pts += offset
                    packet.dts += offset
                    last_end = max(last_end, end + offset)
                    packet.stream = video
                    target.mux(packet)
                offset = last_end
        if soundtrack is not None:
            for sound_packet in sound.demux(sound.streams.audio[0]):
                if sound_packet.dts is not None:
                    sound_packet.stream = audio
                    target.mux(sound_packet)
