"""The messages between the three processes of a render, and the one channel that carries them.

- The handler's worker client sends the worker a `Task`; the worker answers `Ready` once,
  `Progress` while a task runs, and `TaskDone` with one `Outcome` per part.
- A task's part (a forked process running the user's script, render.runner) sends the worker
  `Progress`, `TexRequest`s (answered with a `TexAnswer`) and one `PartReport`.

A part runs hostile code, so everything it sends is validated here before anything trusted
acts on it: its kind, its types, and its sizes. A message that fails is a `MessageError`, which
the worker answers as the script's error.
"""

from __future__ import annotations

import os
import select
import threading
import time
from typing import Annotated, Literal, NamedTuple, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    TypeAdapter,
    ValidationError,
)

from render.limits import RenderLimits

# The longest error text a part may report (its runner trims tracebacks to this).
MAX_TEXT = 4000
_MAX_PATH = 4096
# A scene with more animations than this is not one a part may claim to have planned (the
# plan of 10,000 fits in a part's message).
_MAX_ANIMATIONS = 10_000
# The largest LaTeX source a part may ask to compile.
MAX_TEX_SOURCE = 256 * 1024

Text = Annotated[str, Field(max_length=MAX_TEXT)]
FilePath = Annotated[str, Field(min_length=1, max_length=_MAX_PATH)]
Seconds = Annotated[float, Field(ge=0, le=10**6, allow_inf_nan=False)]
# A count a part reports (frames, mobjects): bounded, so that sums of them stay ordinary numbers.
Count = Annotated[int, Field(ge=0, le=10**9)]


class Message(BaseModel):
    """Every message: immutable, and no field but those declared."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


# What a render writes.

OutputFormat = Literal["mp4", "webm", "gif", "mov", "png"]


class Output(Message):
    """What a render writes, beyond its quality's preset: Manim's own output options, each
    None (or false) for the preset's. Whoever builds one has checked the combination."""

    format: OutputFormat | None = None  # None: MP4, or the last frame as a PNG for a scene without animation
    transparent: bool = False  # an alpha channel (webm, mov or png)
    width: Annotated[int, Field(ge=2, le=16384)] | None = None
    height: Annotated[int, Field(ge=2, le=16384)] | None = None
    fps: Annotated[float, Field(gt=0, le=240)] | None = None
    background: Annotated[str, Field(pattern=r"^#[0-9A-Fa-f]{6}$")] | None = None


# The quality's preset output: an MP4 (or a still), as the CLI writes by default.
PRESET_OUTPUT = Output()


# What a task asks of each of its parts.


class WholePart(Message):
    """Render the whole scene."""

    mode: Literal["whole"] = "whole"


class PlanPart(Message):
    """Count each animation's frames without drawing, and mix the scene's sound. `thorough`
    plays every animation as Manim's own skipping does (a script check), not only what the
    counts need."""

    mode: Literal["plan"] = "plan"
    thorough: bool = False


class FramePart(Message):
    """Render frame `frame` only, as a still, reaching it exactly."""

    mode: Literal["frame"] = "frame"
    frame: Count


class Position(NamedTuple):
    """A point in a scene: frame `frame` (from 0) of animation `animation` (the scene's `play`
    and `wait` calls, from 0). A chunk's range runs from one position up to another."""

    animation: NonNegativeInt
    frame: NonNegativeInt = 0


class RangePart(Message):
    """Render the frames from `start` up to (not including) `end` only, reaching `start`
    exactly."""

    mode: Literal["range"] = "range"
    start: Position
    end: Position


class JoinPart(Message):
    """Join pieces rendered elsewhere into `output`, with the plan's soundtrack."""

    mode: Literal["join"] = "join"
    pieces: list[FilePath]
    soundtrack: FilePath | None = None
    output: FilePath


Part = Annotated[WholePart | PlanPart | RangePart | FramePart | JoinPart, Field(discriminator="mode")]


class Task(Message):
    """One request to the worker: its parts run side by side in a fresh task folder `root`,
    under one time limit, and everything they start is killed before the answer."""

    kind: Literal["task"] = "task"
    root: FilePath
    scene: str
    quality: str  # Manim's name for it, e.g. "low_quality"
    timeout_seconds: float
    limits: RenderLimits
    parts: list[Part]
    output: Output = PRESET_OUTPUT


# What the worker says to its client.


class Ready(Message):
    """The worker has imported Manim; what containment it could turn on, which tools it has."""

    kind: Literal["ready"] = "ready"
    protections: dict[str, bool]
    tools: dict[str, bool]
    pid: int
    tex_pid: int  # the worker's LaTeX service, its own process


class Progress(Message):
    """How far a render has got: animations played and frames made, of how many frames in
    all (when a plan counted them), and for a chunked render how many chunks there are and
    how many are done."""

    kind: Literal["progress"] = "progress"
    animations: NonNegativeInt = 0
    frames: NonNegativeInt = 0
    total_frames: NonNegativeInt | None = Field(None, alias="totalFrames")
    chunks: NonNegativeInt | None = None
    chunks_done: NonNegativeInt | None = Field(None, alias="chunksDone")

    def counts(self) -> dict[str, int]:
        """The figures a caller reads (a job record's `progress`)."""
        return self.model_dump(by_alias=True, exclude={"kind"}, exclude_none=True)


# How a part ended. The first four a part reports itself; the rest only the worker can say.


class VideoMade(Message):
    """The part wrote its video (or the joined video, or a still) at `path`, of `frames`
    frames (None: not counted, as for a join)."""

    kind: Literal["video"] = "video"
    path: FilePath
    frames: Count | None = None


class PlannedAnimation(Message):
    """One animation (a `play` or `wait`) as the plan pass found it: the frames it makes,
    whether a chunk must step through it frame by frame to reach what follows exactly, and
    what it cost the plan, from which the cost of reaching and drawing it is estimated."""

    frames: Count
    still: bool = False  # a static wait: one frame drawn, then repeated
    stepped: bool = False
    seconds: Seconds = 0.0  # the script's code before it, and its play as the plan ran it
    update_seconds: Seconds = 0.0  # one update of the scene to a time within it
    members: Count = 0  # mobjects its start copies or aligns, which the plan does not
    # It may end early (a `wait_until`): its frames are counted at most, and no range ends inside it.
    open_ended: bool = False


class PlanMade(Message):
    """The plan pass planned each animation and mixed the soundtrack, if any."""

    kind: Literal["plan"] = "plan"
    animations: Annotated[list[PlannedAnimation], Field(max_length=_MAX_ANIMATIONS)]
    pixels: Annotated[int, Field(ge=1, le=10**9)]  # in one frame
    segment: Annotated[int, Field(ge=1, le=10**6)] | None = None  # frames in an encoded segment (render.segments)
    soundtrack: FilePath | None = None


LimitName = Literal["memory", "cpu", "output", "processes", "open_files"]


class LimitHit(Message):
    """The part ran into one of its resource limits."""

    kind: Literal["limit"] = "limit"
    limit: LimitName


class ScriptFailed(Message):
    """The script raised (or cannot run): its error, its line, and a trimmed traceback."""

    kind: Literal["script_error"] = "script_error"
    type: Annotated[str, Field(max_length=200)]
    message: Text
    line: int | None = None
    traceback: Text | None = None


class TimedOut(Message):
    """The part was still running when the task's time was up."""

    kind: Literal["timeout"] = "timeout"


class ToolLacking(Message):
    """The part asked for a render tool (latex, dvisvgm) this worker does not have."""

    kind: Literal["missing_tool"] = "missing_tool"
    tool: str


class Ended(Message):
    """The part's process ended without a report: it exited with `code`, or a `signal` killed it."""

    kind: Literal["ended"] = "ended"
    code: int | None = None
    signal: str | None = None


class WorkerFailed(Message):
    """The worker itself failed running the task: a fault of ours."""

    kind: Literal["worker_error"] = "worker_error"
    message: str


PartReport = Annotated[VideoMade | PlanMade | LimitHit | ScriptFailed, Field(discriminator="kind")]
Outcome = Annotated[
    VideoMade | PlanMade | LimitHit | ScriptFailed | TimedOut | ToolLacking | Ended | WorkerFailed,
    Field(discriminator="kind"),
]


class TaskDone(Message):
    """The task's end: one outcome per part, in order, and the LaTeX cache's counts."""

    kind: Literal["done"] = "done"
    outcomes: list[Outcome]
    tex_pid: int  # the LaTeX service now (a part may have killed the one before)
    tex_hits: int = 0
    tex_misses: int = 0


# LaTeX, compiled by the worker for a part.


class TexRequest(Message):
    """A part asks the worker to compile a formula (as Manim's `tex_to_svg_file` would)."""

    kind: Literal["tex"] = "tex"
    source: Annotated[str, Field(max_length=MAX_TEX_SOURCE)]
    compilers: Annotated[list[Annotated[str, Field(max_length=64)]], Field(min_length=1, max_length=4)]
    format: Literal[".dvi", ".xdv", ".pdf"]


class TexAnswer(Message):
    """The compiled SVG, or why there is none."""

    kind: Literal["tex_answer"] = "tex_answer"
    svg: str | None = None
    error: str | None = None


class TexJob(Message):
    """The worker passes a part's request on to its LaTeX service, with the time left."""

    kind: Literal["tex_job"] = "tex_job"
    request: TexRequest
    timeout_seconds: float
    compile_now: bool = False  # the part is frozen: compile on a miss


class TexResult(Message):
    """The LaTeX service's answer for the part, and what only the worker may know of it: a
    render tool it found missing, and the cache's counts."""

    kind: Literal["tex_result"] = "tex_result"
    answer: TexAnswer
    compile_needed: bool = False  # a miss: ask again with the part frozen
    missing_tool: str | None = None
    hits: int = 0
    misses: int = 0


FromWorker = Annotated[Ready | Progress | TaskDone, Field(discriminator="kind")]
FromPart = Annotated[Progress | TexRequest | VideoMade | PlanMade | LimitHit | ScriptFailed, Field(discriminator="kind")]

FROM_WORKER: TypeAdapter[FromWorker] = TypeAdapter(FromWorker)
FROM_PART: TypeAdapter[FromPart] = TypeAdapter(FromPart)
TASK: TypeAdapter[Task] = TypeAdapter(Task)
TEX_ANSWER: TypeAdapter[TexAnswer] = TypeAdapter(TexAnswer)
TEX_JOB: TypeAdapter[TexJob] = TypeAdapter(TexJob)
TEX_RESULT: TypeAdapter[TexResult] = TypeAdapter(TexResult)

T = TypeVar("T")


class MessageError(Exception):
    """A message that breaks the protocol: too large, not JSON, or not of the expected shape."""


class Channel:
    """Messages as JSON lines over a pair of file descriptors (pipes or a socket).

    Reads are unbuffered and select()-able, so a reader can wait on several channels and a
    deadline at once; a message longer than `limit` bytes is refused before it is parsed.
    Sending is safe from several threads.
    """

    def __init__(self, reads: int | None, writes: int | None, *, limit: int) -> None:
        self._reads = reads
        self._writes = writes
        self.limit = limit
        self.at_end = False  # the other end closed its side
        self._pending = b""
        self._sending = threading.Lock()

    def fileno(self) -> int:
        """The descriptor to wait on for incoming messages."""
        assert self._reads is not None
        return self._reads

    def send(self, message: Message) -> None:
        """Write one message whole (raises OSError if the other end has gone)."""
        assert self._writes is not None
        data = memoryview(message.model_dump_json(by_alias=True).encode() + b"\n")
        with self._sending:
            while data:
                data = data[os.write(self._writes, data) :]

    def read_available(self) -> None:
        """Take in what has arrived (call when select() says the channel is readable)."""
        data = os.read(self.fileno(), 1 << 16)
        if not data:
            self.at_end = True
        self._pending += data
        if len(self._pending.partition(b"\n")[0]) > self.limit:
            self._pending = b""
            raise MessageError(f"a message longer than {self.limit} bytes")

    def take(self, expected: TypeAdapter[T]) -> list[T]:
        """The complete messages received so far, validated as `expected`."""
        messages = []
        while b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            messages.append(self._parse(line, expected))
        return messages

    def receive(self, expected: TypeAdapter[T], deadline: float | None = None) -> T | None:
        """The next message, or None if the other end closed or `deadline` (monotonic) passed."""
        while b"\n" not in self._pending:
            if self.at_end:
                return None
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                return None
            ready, _, _ = select.select([self.fileno()], [], [], timeout)
            if ready:
                self.read_available()
        line, self._pending = self._pending.split(b"\n", 1)
        return self._parse(line, expected)

    def _parse(self, line: bytes, expected: TypeAdapter[T]) -> T:
        if len(line) > self.limit:
            raise MessageError(f"a message longer than {self.limit} bytes")
        try:
            return expected.validate_json(line)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:3])
            raise MessageError(f"an invalid message ({problems})") from None

    def close(self) -> None:
        """Close both descriptors (once)."""
        for descriptor in {self._reads, self._writes} - {None}:
            try:
                os.close(descriptor)  # type: ignore[arg-type]
            except OSError:
                pass
        self._reads = self._writes = None
