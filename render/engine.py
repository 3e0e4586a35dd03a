"""The one call handler/ makes: render a scene, whole or in chunks, and hand back the video.

Whether a render is chunked, and how (plan, split, render the ranges, join), is decided and
sequenced here. Ranges render side by side in the worker, or, when the caller lends a
`run_range`, each wherever that sends it (another Lambda invocation); either way the pieces
are joined here, in the worker.
"""

from __future__ import annotations

import contextvars
import math
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from render.chunks import Plan, Span, choose_chunks, split
from render.client import QUALITY_PRESETS, Made, ProgressCallback, WorkerClient
from render.errors import FramePastEnd, RenderCancelled, RendererFailed
from render.limits import Deadline, RenderLimits
from render.messages import PRESET_OUTPUT, Output, Progress
from render.scenes import choose_scene


@dataclass(frozen=True)
class RenderSpec:
    """What to render, in plain values."""

    code: str
    quality: str  # a seed quality flag, e.g. "-qm"
    limits: RenderLimits
    deadline: Deadline
    scene: str | None = None  # the scene asked for; None for the script's only one
    # Only the frames from one position up to another: a chunk rendered for another invocation.
    span: Span | None = None
    output: Output = PRESET_OUTPUT  # format, size, frame rate, background
    frame_at: float | None = None  # only the frame a whole render shows at this time, as a still


@dataclass(frozen=True)
class Rendered:
    """A finished video, valid until the `render` block that made it ends."""

    path: Path
    scene: str
    render_seconds: float
    plan_seconds: float = 0.0
    chunks: int = 1
    join_seconds: float = 0.0  # joining pieces rendered elsewhere
    frames: int | None = None  # in the video (1 for a still)
    elsewhere_seconds: float = 0.0  # what the ranges took where `run_range` sent them (other invocations)


@dataclass(frozen=True)
class Checked:
    """What checking a script found: it runs, and its scene's length."""

    scene: str
    seconds: float
    frames: int
    animations: int
    check_seconds: float


@dataclass(frozen=True)
class Range:
    """One range of a chunked render, handed to `run_range` to render elsewhere."""

    spec: RenderSpec  # the whole render's spec, its scene chosen, with `span` set to this range
    index: int
    frames: int  # how many frames the range makes, by the plan
    piece: Path  # where the rendered piece must be written
    on_progress: ProgressCallback  # told how far the range has got
    stopped: threading.Event  # set when the render no longer needs the piece (another range failed)


# The formats whose chunks are joined by stream copy (None: MP4, or a still). A WebM is
# joined only without an alpha channel (kept beside the VP9 stream) and without sound (WebM
# carries no AAC): those render whole.
JOINABLE_FORMATS = (None, "mp4", "mov", "webm")


def _joinable(output: Output, plan: Plan | None = None) -> bool:
    if output.format not in JOINABLE_FORMATS:
        return False
    return output.format != "webm" or not (output.transparent or (plan is not None and plan.soundtrack is not None))

# Renders a range elsewhere and writes its piece; says how long that took there (None: not
# known); raises if it cannot.
RunRange = Callable[[Range], float | None]


@contextmanager
def render(
    worker: WorkerClient,
    spec: RenderSpec,
    *,
    chunks: int | str = 1,
    max_chunks: int = 8,
    run_range: RunRange | None = None,
    on_progress: ProgressCallback | None = None,
) -> Iterator[Rendered]:
    """Render `spec`'s scene and yield the video; its files go when the block ends.

    `chunks` (a number or "auto", at most `max_chunks`) asks for a chunked render: a plan
    pass counts each animation's frames, and a scene too short to benefit renders whole, as
    does one in a format whose pieces cannot be joined without re-encoding (MP4's, MOV's and
    WebM's without alpha or sound can). A video render with `on_progress` is planned too, so
    that its progress says how many frames there are in all (`total_frames`).
    Raises ScriptError for a script that cannot render, RenderTimeout past the deadline,
    ResourceLimitExceeded past another limit, RenderCancelled once `spec.deadline` is
    cancelled, RendererFailed for a fault of ours, and whatever `run_range` raises.
    """
    scene = choose_scene(spec.code, spec.scene)
    spec = replace(spec, scene=scene)
    started = time.monotonic()
    if spec.frame_at is not None:
        with _frame(worker, spec, spec.frame_at) as made:
            yield Rendered(made.path, scene, time.monotonic() - started, frames=1)
        return
    counted = on_progress is not None and spec.output.format != "png"
    if spec.span is not None or not (counted or (chunks != 1 and _joinable(spec.output))):
        ranges = [spec.span] if spec.span is not None else None
        with _in_worker(worker, spec, ranges, None, on_progress) as made:
            yield Rendered(made.path, scene, time.monotonic() - started, frames=made.frames)
        return
    with tempfile.TemporaryDirectory(prefix="plan-", dir=worker.scratch) as scratch:
        plan = _plan(worker, spec, Path(scratch))
        plan_seconds = time.monotonic() - started
        told = _with_total(on_progress, sum(plan.frames))
        wanted = choose_chunks(plan.frames, chunks, max_chunks, _frame_rate(spec)) if _joinable(spec.output, plan) else 1
        ranges = split(plan, wanted) if wanted > 1 else []  # fewer where it has fewer places to cut
        count = max(1, len(ranges))
        rendering = time.monotonic()
        elsewhere = 0.0
        if count == 1:
            video = _in_worker(worker, spec, None, None, told)
        elif run_range is None:
            video = _in_worker(worker, spec, ranges, plan, told)
        else:
            elsewhere = _run_ranges(spec, plan, ranges, run_range, told or (lambda _progress: None), Path(scratch))
            video = _join(worker, spec, plan, len(ranges), Path(scratch))
        joining = time.monotonic()
        with video as made:
            join_seconds = time.monotonic() - joining if run_range is not None and count > 1 else 0.0
            frames = made.frames if count == 1 else sum(plan.frames)
            rendered = time.monotonic() - rendering
            yield Rendered(made.path, scene, rendered, plan_seconds, count, join_seconds, frames, elsewhere)


def _with_total(on_progress: ProgressCallback | None, total: int) -> ProgressCallback | None:
    """`on_progress`, told the plan's count of frames with each report."""
    if on_progress is None:
        return None
    return lambda progress: on_progress(progress.model_copy(update={"total_frames": total}))


def check(worker: WorkerClient, spec: RenderSpec) -> Checked:
    """Run `spec`'s scene as Manim's own skipping does (every line and animation executed,
    nothing drawn or encoded) and say how long it is: a script's check before its render.

    Raises what `render` would for a script that cannot run (ScriptError, RenderTimeout,
    ResourceLimitExceeded) and RendererFailed for a fault of ours."""
    spec = replace(spec, scene=choose_scene(spec.code, spec.scene))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="check-", dir=worker.scratch) as scratch:
        plan = _plan(worker, spec, Path(scratch), thorough=True)
    frames = sum(plan.frames)
    assert spec.scene is not None
    return Checked(spec.scene, frames / _frame_rate(spec), frames, len(plan.animations), time.monotonic() - started)


def _plan(worker: WorkerClient, spec: RenderSpec, scratch: Path, *, thorough: bool = False) -> Plan:
    """The plan of `spec`'s scene (chosen already), its soundtrack kept in `scratch`."""
    assert spec.scene is not None
    return worker.plan(
        spec.code,
        scene=spec.scene,
        quality=spec.quality,
        limits=spec.limits,
        deadline=spec.deadline,
        scratch=scratch,
        output=spec.output,
        thorough=thorough,
    )


def _frame_rate(spec: RenderSpec) -> float:
    """The frame rate `spec` asks for, or its quality's."""
    return spec.output.fps or QUALITY_PRESETS[spec.quality][2]


@contextmanager
def _frame(worker: WorkerClient, spec: RenderSpec, at: float) -> Iterator[Made]:
    """The frame a whole render shows at `at` seconds: the plan says which it is (or that the
    scene ends before), and the worker reaches and draws only that one."""
    assert spec.scene is not None
    with tempfile.TemporaryDirectory(prefix="plan-", dir=worker.scratch) as scratch:
        plan = _plan(worker, spec, Path(scratch))
    rate = _frame_rate(spec)
    frame = math.floor(at * rate + 1e-9)
    if frame >= sum(plan.frames):
        raise FramePastEnd(at, round(sum(plan.frames) / rate, 3))
    with _in_worker(worker, spec, None, None, None, frame=frame) as made:
        yield made


def _in_worker(
    worker: WorkerClient,
    spec: RenderSpec,
    ranges: list[Span] | None,
    plan: Plan | None,
    on_progress: ProgressCallback | None,
    *,
    frame: int | None = None,
) -> AbstractContextManager[Made]:
    """The scene rendered whole (or only its frame `frame`), or its ranges side by side and
    joined, all in the worker."""
    assert spec.scene is not None
    return worker.render(
        spec.code,
        scene=spec.scene,
        quality=spec.quality,
        limits=spec.limits,
        deadline=spec.deadline,
        ranges=ranges,
        soundtrack=plan.soundtrack if plan is not None else None,
        on_progress=on_progress,
        output=spec.output,
        frame=frame,
    )


def _pieces(spec: RenderSpec, count: int, scratch: Path) -> list[Path]:
    """Where the pieces of ranges rendered elsewhere are written, in order."""
    return [scratch / f"piece-{index}.{spec.output.format or 'mp4'}" for index in range(count)]


def _join(worker: WorkerClient, spec: RenderSpec, plan: Plan, count: int, scratch: Path) -> AbstractContextManager[Made]:
    """The pieces of ranges rendered elsewhere, joined in the worker (when the block is entered)."""
    assert spec.scene is not None
    return worker.join(
        _pieces(spec, count, scratch),
        scene=spec.scene,
        quality=spec.quality,
        limits=spec.limits,
        deadline=spec.deadline,
        soundtrack=plan.soundtrack,
    )


def _run_ranges(
    spec: RenderSpec,
    plan: Plan,
    ranges: list[Span],
    run_range: RunRange,
    on_progress: ProgressCallback,
    scratch: Path,
) -> float:
    """Render every range at once with `run_range`, each into its piece; the seconds they took
    there, together. The first failure (or the render's cancellation) stops the others and is
    raised."""
    pieces = _pieces(spec, len(ranges), scratch)
    stopped = threading.Event()
    tally = _Tally(len(ranges), on_progress)
    work = [
        Range(
            spec=replace(spec, span=(start, end)),
            index=index,
            frames=plan.frames_before(end) - plan.frames_before(start),
            piece=pieces[index],
            on_progress=tally.reporter(index),
            stopped=stopped,
        )
        for index, (start, end) in enumerate(ranges)
    ]

    def run(one: Range) -> float:
        seconds = run_range(one) or 0.0
        assert one.spec.span is not None
        start, end = one.spec.span  # the animations that end in the range are done
        tally.done(one.index, Progress(animations=end.animation - start.animation, frames=one.frames))
        return seconds

    with ThreadPoolExecutor(max_workers=len(work) + 1, thread_name_prefix="range") as pool:
        # Each range in the caller's context (contextvars): what it set for this render holds there.
        futures = [pool.submit(contextvars.copy_context().run, run, one) for one in work]
        pool.submit(_stop_when_cancelled, spec.deadline.cancelled, stopped, futures)
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((future for future in futures if future in finished and future.exception()), None)
        if failed is not None:
            stopped.set()
            wait(futures)
            raise failed.exception()  # type: ignore[misc]
    if spec.deadline.cancelled.is_set():
        raise RenderCancelled()
    missing = [str(index) for index, piece in enumerate(pieces) if not piece.is_file()]
    if missing:
        raise RendererFailed(f"Chunks {', '.join(missing)} came back without a video.")
    return sum(future.result() for future in futures)


def _stop_when_cancelled(cancelled: threading.Event, stopped: threading.Event, futures: list[Future[float]]) -> None:
    """Set `stopped` (every range gives up) once the render is cancelled, until all are done."""
    while not all(future.done() for future in futures):
        if cancelled.wait(0.1):
            stopped.set()
            return


class _Tally:
    """Progress over all ranges of a render rendered elsewhere: each range's last report
    (its whole share once done), summed, and how many ranges are done."""

    def __init__(self, count: int, on_progress: ProgressCallback) -> None:
        self._ranges = [Progress() for _ in range(count)]
        self._done = [False] * count
        self._on_progress = on_progress
        self._lock = threading.Lock()
        self._last: Progress | None = None

    def reporter(self, index: int) -> ProgressCallback:
        return lambda progress: self._update(index, progress, done=False)

    def done(self, index: int, whole: Progress) -> None:
        self._update(index, whole, done=True)

    def _update(self, index: int, progress: Progress, *, done: bool) -> None:
        with self._lock:
            if self._done[index]:
                return
            self._ranges[index] = progress
            self._done[index] = done
            total = Progress(
                animations=sum(part.animations for part in self._ranges),
                frames=sum(part.frames for part in self._ranges),
                chunks=len(self._ranges),
                chunks_done=sum(self._done),
            )
            if total != self._last:
                self._last = total
                self._on_progress(total)  # under the lock, so totals are told in order
