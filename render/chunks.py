"""Chunked rendering: plan a scene, split it into ranges of frames, render a range exactly as
a whole render would, and join the pieces without re-encoding.

A range runs from one `Position` (a frame of an animation) up to another, so it may begin or
end inside an animation. A chunk reaches its range without drawing what comes before it
(render.reach): it jumps over each animation, or the start of one, whose state does not depend
on the path to it, and steps through the others frame by frame, so that its first frame is the
whole render's. The plan says which animations need stepping and what each costs, and the
split balances the ranges' estimated costs (reaching the range, then drawing it), not their
frame counts.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from render.messages import PlannedAnimation, Position
from render.reach import jumping_where_exact, members_to_begin, must_step, runs_script_code, without_drawing
from render.segments import segment_frames


@dataclass(frozen=True)
class Plan:
    """What a planning pass found: each animation's frames, whether it must be stepped, and
    its costs; the size of a frame; the scene's soundtrack (an AAC file, or None for a silent
    scene); and the frames in an encoded segment (render.segments), where a range may begin
    inside an animation. Chunks carry no sound; the soundtrack is added once to the joined
    video."""

    animations: list[PlannedAnimation]
    pixels: int
    soundtrack: Path | None = None
    segment: int | None = 1  # None: animations are encoded whole, and ranges begin with one

    @property
    def frames(self) -> list[int]:
        return [animation.frames for animation in self.animations]

    def frames_before(self, position: Position) -> int:
        """How many frames the scene makes before `position`."""
        return sum(self.frames[: position.animation]) + position.frame


# A range of a chunked render: its first position, and the position it stops before.
Span = tuple[Position, Position]


def plan_scene(scene: Any, soundtrack: Path, *, quick: bool = True) -> Plan:
    """Run the scene as Manim's own skipping does (each animation advanced in one step, nothing
    drawn or encoded) and plan each animation (each `play` and `wait`):

    - the frames it would make in a whole render, by Manim's own rule: one per frame time in
      `[0, run_time)`, or for a static wait, `int(duration / dt)`;
    - whether `must_step` holds for it (a static wait never needs stepping);
    - the seconds its play and the script's code before it took, and one update of the scene.

    Sounds the scene adds are mixed as a whole render mixes them, at the time a whole render
    would have reached, and written to `soundtrack`.

    `quick` goes further than Manim's skipping: Manim's own animations are not begun, advanced
    or finished at all (their copies and alignments are most of a skipped play's cost), and
    only the updaters run, once per animation. A play that runs the script's own code while it
    plays (an `UpdateFromFunc`, say, which may add updaters) is still played as Manim skips it.
    The scene's state may then differ from a whole render's; a script that fails for it is
    planned again without `quick`.

    Either way only counts and estimates come from here: ranges are rendered exactly however
    the plan balanced them. (A `wait_until` is counted at its maximum.)"""
    renderer = scene.renderer
    writer = renderer.file_writer
    dt = 1 / renderer.camera.frame_rate
    planned: list[PlannedAnimation] = []
    clock = 0.0  # `renderer.time` in a whole render, advanced by the same additions
    probe = _PlayProbe(scene, quick)
    original_play = renderer.play
    last = time.perf_counter()

    def counting_play(*args: Any, **kwargs: Any) -> None:
        nonlocal clock, last
        renderer._original_skipping_status = True
        probe.stepped, probe.update_seconds, probe.members = False, 0.0, 0
        with without_drawing(renderer):
            original_play(*args, **kwargs)
        still = scene.is_current_animation_frozen_frame()
        if still:
            frames = int(scene.duration / dt)
            clock += frames * dt
        else:
            frames = len(np.arange(0, scene.duration, dt))
            for _ in range(frames):
                clock += dt
        now = time.perf_counter()
        planned.append(
            PlannedAnimation(
                frames=frames,
                still=still,
                stepped=probe.stepped,
                seconds=now - last,
                update_seconds=probe.update_seconds,
                members=probe.members,
                open_ended=scene.stop_condition is not None,
            )
        )
        last = now

    def timed_add_sound(sound_file: str, time_offset: float = 0, gain: float | None = None, **kwargs: Any) -> None:
        writer.add_sound(sound_file, clock + time_offset, gain, **kwargs)  # skipping would drop it

    renderer.play = counting_play
    scene.add_sound = timed_add_sound
    scene.render()
    pixels = renderer.camera.pixel_width * renderer.camera.pixel_height
    from manim import config

    segment = segment_frames(renderer.camera.frame_rate, config.format)
    if not writer.includes_sound:
        return Plan(planned, pixels, segment=segment)
    _write_soundtrack(writer, soundtrack)
    return Plan(planned, pixels, soundtrack, segment)


class _PlayProbe:
    """Notes, for the play running on `scene`, whether it must be stepped, how long one update
    of the scene takes and, when `quick`, how many mobjects the play's begin (skipped) copies."""

    def __init__(self, scene: Any, quick: bool) -> None:
        self.stepped = False
        self.update_seconds = 0.0
        self.members = 0
        self.played = not quick  # whether the running play is played as Manim skips it
        play_internal, update_to_time, begin_animations = scene.play_internal, scene.update_to_time, scene.begin_animations

        def probed_play_internal(*args: Any, **kwargs: Any) -> None:
            self.stepped = must_step(scene)
            if self.played:
                play_internal(*args, **kwargs)
                return
            started = time.perf_counter()
            scene.update_mobjects(scene.duration)
            scene.update_self(scene.duration)
            self.update_seconds = time.perf_counter() - started

        def timed_update_to_time(t: float) -> None:
            started = time.perf_counter()
            update_to_time(t)
            self.update_seconds = time.perf_counter() - started

        def begin_if_needed() -> None:
            self.played = runs_script_code(scene.animations)
            if self.played:
                begin_animations()
                return
            self.members = members_to_begin(scene.animations)
            for animation in scene.animations:  # what of beginning them the scene's contents need
                animation._setup_scene(scene)

        scene.play_internal = probed_play_internal
        scene.update_to_time = timed_update_to_time
        if quick:
            scene.begin_animations = begin_if_needed


def _write_soundtrack(writer: Any, target: Path) -> None:
    """Export the mixed sound as Manim's own `combine_to_movie` does: WAV, then AAC."""
    from manim.scene.scene_file_writer import AudioSegment, convert_audio

    wav = target.with_suffix(".wav")
    writer.add_audio_segment(AudioSegment.silent(0))
    writer.audio_segment.export(wav, format="wav", bitrate="312k")
    convert_audio(wav, target, "aac")
    wav.unlink()


def limit_to_range(scene: Any, start: Position, end: Position) -> None:
    """Make `scene.render()` produce only the frames from `start` up to `end`: the animations
    before `start` are reached without drawing (render.reach), and so are the frames of
    `start`'s animation before it (jumped over where exact, else stepped); drawing stops at
    `end` and the scene ends there."""
    from manim.utils.exceptions import EndSceneEarlyException

    renderer = scene.renderer
    original_play, original_progression = renderer.play, scene.get_time_progression
    dt = 1 / renderer.camera.frame_rate
    renderer.drawn_from = None  # (time, animation) where drawing began, for progress reports
    scene.add_sound = lambda *args, **kwargs: None  # the plan made the soundtrack for the joined video

    def window(frames: int) -> tuple[int, int]:
        """The frames of the running play to draw, from and up to, of its `frames`."""
        index = renderer.num_plays
        first = start.frame if index == start.animation else 0
        last = end.frame if index == end.animation else frames
        return min(first, frames), min(last, frames)

    def reach(times: list[float], first: int) -> None:
        """Bring the running play to its frame `first` without drawing the frames before."""
        stepped = first > 0 and must_step(scene)
        for t in times[:first]:
            if stepped:
                scene.update_to_time(t)
            renderer.time += dt  # as drawing the frame would add it
        if renderer.drawn_from is None:
            renderer.drawn_from = (renderer.time, renderer.num_plays)

    def windowed_progression(run_time: float, *args: Any, **kwargs: Any) -> Any:
        progression = original_progression(run_time, *args, **kwargs)
        times = list(progression.iterable)
        first, last = window(len(times))

        def drawn() -> Any:
            reach(times, first)  # when the play starts iterating, after its begin
            yield from times[first:last]

        progression.iterable = drawn()
        return progression

    def windowed_freeze(duration: float) -> None:
        frames = int(duration / dt)
        first, last = window(frames)
        reach([0.0] * frames, first)  # a static wait has nothing to step
        renderer.add_frame(renderer.get_frame(), num_frames=max(0, last - first))

    def ranged_play(*args: Any, **kwargs: Any) -> None:
        index = renderer.num_plays
        if Position(index) >= end:
            raise EndSceneEarlyException()
        if index < start.animation:
            with without_drawing(renderer), jumping_where_exact(scene):
                original_play(*args, **kwargs)
            return
        scene.get_time_progression, renderer.freeze_current_frame = windowed_progression, windowed_freeze
        try:
            original_play(*args, **kwargs)
        finally:
            del scene.get_time_progression, renderer.freeze_current_frame  # the classes' own again

    renderer.play = ranged_play


class _FrameDrawn(Exception):
    """Raised out of a play once the frame asked for is drawn, with its pixels."""

    def __init__(self, pixels: Any) -> None:
        self.pixels = pixels


def limit_to_frame(scene: Any, frame: int) -> None:
    """Make `scene.render()` draw only frame `frame` (counted from 0 over the whole scene) and
    end there, with Manim saving it as the still the configuration asks for.

    The plays before it are reached without drawing (render.reach). In the play it is in, the
    scene is brought to that frame's time (jumped there where exact, else stepped), and the
    frame is drawn as a whole render draws it: the play's static mobjects as its background,
    its moving ones on top. Nothing after it runs."""
    from manim.utils.exceptions import EndSceneEarlyException

    renderer = scene.renderer
    original_play, original_progression = renderer.play, scene.get_time_progression
    dt = 1 / renderer.camera.frame_rate
    reached = 0  # frames of the plays before the current one
    scene.add_sound = lambda *args, **kwargs: None

    def draw() -> None:
        for name in ("update_frame", "get_frame", "save_static_frame_data"):
            vars(renderer).pop(name, None)  # the renderer's own drawing, for this frame
        renderer.save_static_frame_data(scene, scene.static_mobjects)
        renderer.update_frame(scene, scene.moving_mobjects)
        raise _FrameDrawn(renderer.get_frame())

    def to_the_frame(run_time: float, *args: Any, **kwargs: Any) -> Any:
        nonlocal reached
        progression = original_progression(run_time, *args, **kwargs)
        times = list(progression.iterable)
        if reached + len(times) <= frame:
            reached += len(times)
            return progression
        index = frame - reached
        first = 0 if must_step(scene) else index  # jump: the scene updated at the frame's time only
        for _ in times[:first]:
            renderer.add_frame(None)
        progression.iterable = times[first : index + 1]
        renderer.render = lambda _scene, t, _moving: draw() if t == times[index] else renderer.add_frame(None)
        return progression

    def frozen(duration: float) -> None:
        nonlocal reached
        frames = int(duration / dt)
        if reached + frames > frame:
            draw()
        reached += frames
        renderer.add_frame(None, num_frames=frames)

    def frame_play(*args: Any, **kwargs: Any) -> None:
        try:
            with without_drawing(renderer):
                scene.get_time_progression = to_the_frame
                renderer.freeze_current_frame = frozen
                renderer.update_skipping_status = lambda: None  # a still skips every play: not this one
                try:
                    original_play(*args, **kwargs)
                finally:
                    del scene.get_time_progression, renderer.freeze_current_frame, renderer.update_skipping_status
                    vars(renderer).pop("render", None)
        except _FrameDrawn as drawn:
            pixels = drawn.pixels
            renderer.update_frame = lambda *args, **kwargs: None  # Manim saves the frame as it is
            renderer.get_frame = lambda: pixels
            raise EndSceneEarlyException() from None

    renderer.play = frame_play


# A chunk shorter than this is not worth its start-up and join; `auto` never makes one.
MIN_CHUNK_SECONDS = 5.0


def choose_chunks(frames: list[int], requested: int | str, max_chunks: int, frame_rate: float) -> int:
    """How many chunks to render `frames` in: the number asked for (at most `max_chunks`, and
    one per frame), or for "auto" as many as give each at least MIN_CHUNK_SECONDS."""
    if requested == "auto":
        wanted = int(sum(frames) / frame_rate // MIN_CHUNK_SECONDS)
    else:
        wanted = int(requested)
    return max(1, min(wanted, max_chunks, sum(frames)))


# Costs the plan cannot measure without doing the work, estimated from `make bench`'s scenes
# (only their ratio to the plan's own figures matters): drawing and encoding a frame, per
# pixel, beyond updating the scene; encoding a repeated frame of a static wait, as a share of
# that; copying or aligning one mobject when an animation begins; and what a frame's update
# costs beyond the updaters the plan timed (the animations' interpolation, the bookkeeping).
DRAW_SECONDS_PER_PIXEL = 1e-8
REPEATED_FRAME_SHARE = 0.1
BEGIN_SECONDS_PER_MEMBER = 4e-3
FRAME_UPDATE_SECONDS = 7e-4


def split(plan: Plan, chunks: int) -> list[Span]:
    """`chunks` contiguous ranges of the scene's frames (fewer only if it has fewer frames),
    balanced by their estimated cost (`_RangeCosts`): reaching the range, then drawing it.

    A range may begin and end inside an animation, except one that may end early (its frames
    are only counted at most). The largest range cost is minimised: since reaching a frame
    costs less than drawing it, filling each range as far as a bound allows is close to
    optimal, and the least bound that fits is found by bisection."""
    costs = _RangeCosts(plan)
    ends = costs.ends
    wanted = max(1, min(chunks, len(ends)))

    def fill(bound: float) -> list[int]:
        """The ranges' first frames when each takes as many frames as fit within `bound`."""
        starts = [0]
        while True:
            start = starts[-1]
            low = bisect.bisect_right(ends, start)
            index = bisect.bisect_right(ends, bound, lo=low, key=lambda end: costs.of(start, end)) - 1
            end = ends[max(index, low)]  # at least one frame, whatever it costs
            if end == ends[-1]:
                return starts
            starts.append(end)

    low, high = 0.0, costs.of(0, ends[-1])
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (low, middle) if len(fill(middle)) <= wanted else (middle, high)
    starts = fill(high)
    while len(starts) < wanted:  # splitting a range never raises the largest cost
        bounds = [*starts[1:], ends[-1]]
        inside = [[end for end in ends if start < end < stop] for start, stop in zip(starts, bounds, strict=True)]
        widest = max((i for i in range(len(starts)) if inside[i]), key=lambda i: costs.of(starts[i], bounds[i]))
        start, stop = starts[widest], bounds[widest]
        cut = min(inside[widest], key=lambda c: max(costs.of(start, c), costs.of(c, stop)))
        starts.insert(widest + 1, cut)
    firsts = [costs.position(frame) for frame in starts]
    return list(zip(firsts, [*firsts[1:], Position(len(plan.animations))], strict=True))


class _RangeCosts:
    """The estimated cost of rendering a range of a plan's frames (counted over the whole
    scene), in seconds.

    Reaching an animation costs its plan seconds and its begin, and the updates of its frames
    if it must be stepped (once, for the jump, if not); reaching a frame inside it costs its
    begin and the updates up to that frame. Drawing a frame costs an update and the drawing,
    except in a static wait, which draws its frame once and repeats it (and draws it again in
    a range that starts inside it)."""

    def __init__(self, plan: Plan) -> None:
        self._animations = plan.animations
        self._firsts = [0, *itertools.accumulate(plan.frames)]  # each animation's first frame, then the end
        draw_frame = plan.pixels * DRAW_SECONDS_PER_PIXEL
        self._begin, self._update, self._per_frame, self._redraw = [], [], [], []
        for a in plan.animations:
            update = a.update_seconds + FRAME_UPDATE_SECONDS
            self._begin.append(a.seconds + a.members * BEGIN_SECONDS_PER_MEMBER)
            self._update.append(update)
            self._per_frame.append(draw_frame * REPEATED_FRAME_SHARE if a.still else update + draw_frame)
            self._redraw.append(update + draw_frame if a.still else 0.0)
        whole = [self._reach_into(k, a.frames) for k, a in enumerate(plan.animations)]
        drawn = [self._drawn_into(k, a.frames) for k, a in enumerate(plan.animations)]
        self._reached = [0.0, *itertools.accumulate(whole)]  # reaching animation k
        self._drawn = [0.0, *itertools.accumulate(drawn)]  # drawing animations 0 to k - 1
        # The frames a range may end at: each animation's end, and each segment's inside it
        # (render.segments), but inside an animation that may end early.
        self.ends: list[int] = []
        for k, a in enumerate(plan.animations):
            first, end = self._firsts[k], self._firsts[k + 1]
            if plan.segment is not None and not a.open_ended:
                self.ends.extend(range(first + plan.segment, end, plan.segment))
            self.ends.extend([end] if a.frames else [])

    def of(self, start: int, end: int) -> float:
        """The cost of the range of frames `start` up to `end`."""
        k, frame = self.position(start)
        redraw = self._redraw[k] if frame else 0.0
        return self._reach(start) + redraw + self._drawn_to(end) - self._drawn_to(start)

    def position(self, frame: int) -> Position:
        """The position of a frame of the scene (the end, for one past its last)."""
        if frame == 0:
            return Position(0)
        k = bisect.bisect_right(self._firsts, frame) - 1
        return Position(k, frame - self._firsts[k])

    def _reach(self, frame: int) -> float:
        k, into = self.position(frame)
        return self._reached[k] + (self._reach_into(k, into) if into else 0.0)

    def _drawn_to(self, frame: int) -> float:
        k, into = self.position(frame)
        return self._drawn[k] + (self._drawn_into(k, into) if into else 0.0)

    def _reach_into(self, k: int, frames: int) -> float:
        """Reaching animation k's frame `frames` (its end, for all of them)."""
        updates = frames if self._animations[k].stepped else 1
        return self._begin[k] + updates * self._update[k]

    def _drawn_into(self, k: int, frames: int) -> float:
        """Drawing animation k's first `frames` frames."""
        return self._begin[k] + self._redraw[k] + frames * self._per_frame[k]


def join(parts: list[Path], output: Path, soundtrack: Path | None = None) -> None:
    """Concatenate chunks into one video in the container `output`'s extension names (MP4,
    MOV, WebM) by stream copy (no re-encoding): packets are copied with their timestamps
    shifted past the previous chunks. A soundtrack (from the plan) is copied in as the audio
    stream, as a whole render adds its sound."""
    with contextlib.ExitStack() as stack:
        target = stack.enter_context(av.open(str(output), "w"))
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
