"""The handler's side of rendering: the warm worker's client.

`WorkerClient` starts `render.server` once (at init, so Lambda's init phase pays for Manim's
import), with an environment stripped of credentials and settings, then sends it one task at a
time. Each task gets a fresh folder that is removed afterwards, whatever happened. A worker
that dies or stops answering is killed with everything below it and started again, so the
next task finds a working service.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from render.chunks import Plan, Span
from render.errors import RenderCancelled, RendererFailed, RenderTimeout, ResourceLimitExceeded, ScriptError, ToolMissing
from render.leftovers import Leftovers, LeftoversRemain
from render.limits import Deadline, RenderLimits
from render.messages import (
    FROM_WORKER,
    PRESET_OUTPUT,
    Channel,
    Ended,
    FramePart,
    JoinPart,
    LimitHit,
    MessageError,
    Outcome,
    Output,
    Part,
    PlanMade,
    PlanPart,
    Progress,
    RangePart,
    Ready,
    ScriptFailed,
    Task,
    TaskDone,
    TimedOut,
    ToolLacking,
    VideoMade,
    WholePart,
)
from render.runner import SCRIPT_NAME
from render.sandbox import (
    become_subreaper,
    clean_environment,
    kill_adopted_orphans,
    kill_descendants,
    make_non_dumpable,
    own_folder,
    remove_tree,
    start_time,
)

# What a render may hand back: a video in one of the formats, or a still.
OUTPUT_SUFFIXES = (".mp4", ".webm", ".gif", ".mov", ".png")

# The frame's width and height and the frames per second of each quality flag (Manim's own).
QUALITY_PRESETS: dict[str, tuple[int, int, int]] = {
    "-ql": (854, 480, 15),
    "-qm": (1280, 720, 30),
    "-qh": (1920, 1080, 60),
    "-qp": (2560, 1440, 60),
    "-qk": (3840, 2160, 60),
}

# The seed's quality flags and the Manim quality each one names.
QUALITY_FLAGS: dict[str, str] = {
    "-ql": "low_quality",
    "-qm": "medium_quality",
    "-qh": "high_quality",
    "-qp": "production_quality",
    "-qk": "fourk_quality",
}

ProgressCallback = Callable[[Progress], None]

_START_TIMEOUT_SECONDS = 120.0
# How long past a task's own time limit the worker may take to answer before it is presumed hung.
_REPLY_GRACE_SECONDS = 15.0
# The largest answer the worker may send (one outcome per part, each with a bounded error text).
_REPLY_LIMIT = 4 * 1024 * 1024


class WorkerClient:
    """One warm worker process and the tasks sent to it, one at a time."""

    def __init__(
        self,
        work_dir: Path,
        *,
        leftovers: Leftovers | None = None,
        keep: Iterable[Path] = (),
        user: int | None = None,
    ) -> None:
        """`leftovers`, where the tasks' uid is theirs alone, removes what each task leaves
        outside its folder (processes and files), sparing the folders in `keep`. `user` (when
        this process is root) runs the worker and its tasks as that uid and gid, which can
        write neither this process's files nor a task folder but while its task runs."""
        self.work_dir = work_dir
        self.user = user
        self.protections: dict[str, bool] = {}
        self.tools: dict[str, bool] = {}  # which render tools the worker found on its PATH
        self.restarts = 0
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._requests: Channel | None = None
        self._replies: Channel | None = None
        self._started_at = 0
        self._home = work_dir
        self._helpers: set[int] = set()  # the worker's own processes (its LaTeX service)
        self._leftovers = leftovers
        self._keep = [Path(path) for path in keep]
        self.cleanup_seconds = 0.0  # what removing the last task's leftovers took

    @property
    def pid(self) -> int | None:
        """The worker's process id while it runs (the parts of its tasks are its children)."""
        return self._process.pid if self._process is not None else None

    @property
    def scratch(self) -> Path:
        """A folder for the caller's own files between tasks (plans, pieces), spared by cleanup."""
        return own_folder(own_folder(self.work_dir) / "scratch")

    def start(self) -> None:
        """Start the worker and wait until Manim is imported (idempotent)."""
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._spawn()

    def _spawn(self) -> None:
        # This process holds the credentials: close it to the worker and its parts, and adopt
        # whatever a dead worker's parts leave behind.
        self.protections = {"handler_non_dumpable": make_non_dumpable(), "handler_subreaper": become_subreaper()}
        # A fresh, unguessable home for each worker: a part may write anywhere the worker
        # could, but not into a folder made after it was killed, and Manim and Python read
        # their configuration from here when the worker starts.
        home = Path(tempfile.mkdtemp(prefix="worker-", dir=own_folder(self.work_dir)))
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        env = clean_environment(home, {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
        if self.user is not None:
            os.chown(home, self.user, self.user)
        self._process = subprocess.Popen(
            # -P: no current folder on sys.path; -s: no user site-packages.
            [sys.executable, "-P", "-s", "-m", "render.server", str(request_read), str(reply_write), str(home / "tex")],
            pass_fds=(request_read, reply_write),
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=home,
            start_new_session=True,
            user=self.user,
            group=self.user,
            extra_groups=[] if self.user is not None else None,
        )
        os.close(request_read)
        os.close(reply_write)
        self._home = home
        self._started_at = start_time(self._process.pid)
        self._requests = Channel(None, request_write, limit=_REPLY_LIMIT)
        self._replies = Channel(reply_read, None, limit=_REPLY_LIMIT)
        try:
            hello = self._replies.receive(FROM_WORKER, time.monotonic() + _START_TIMEOUT_SECONDS)
        except MessageError:
            hello = None
        if not isinstance(hello, Ready):
            self._stop()
            raise RendererFailed("The render worker did not start.")
        self.protections.update(hello.protections)
        self.protections["leftovers_removed"] = self._leftovers is not None
        self.protections["uid_separation"] = self.user is not None
        self.tools = hello.tools
        self._helpers = {hello.tex_pid}

    def _stop(self) -> None:
        """Kill the worker, everything below it, and whatever it left to us."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            kill_descendants(process.pid)
            process.kill()
        process.wait()
        kill_adopted_orphans(self._started_at)
        remove_tree(self._home)
        for channel in (self._requests, self._replies):
            if channel is not None:
                channel.close()
        self._process = self._requests = self._replies = None
        self._helpers = set()

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _run(self, root: Path, task: Task, on_progress: ProgressCallback | None, cancelled: threading.Event) -> TaskDone:
        with self._lock:
            if cancelled.is_set():
                raise RenderCancelled()
            if self._process is None or self._process.poll() is not None:
                self._stop()
                self._spawn()
            self._clear_leftovers(root)
            self._hand_over(root, to=self.user)
            try:
                return self._exchange(task, on_progress, cancelled)
            finally:
                self._clear_leftovers(root)
                self._hand_over(root, to=None)  # the next task's user cannot touch this one's files

    def _hand_over(self, root: Path, to: int | None) -> None:
        """With a separate user, its task folder is its own only while its task runs; before
        and after, this process's (so no other task of that user can read or change it)."""
        if self.user is None:
            return
        uid = os.getuid() if to is None else to
        for folder, subfolders, names in os.walk(root):
            for name in (folder, *(os.path.join(folder, entry) for entry in (*subfolders, *names))):
                os.lchown(name, uid, uid)

    def _exchange(self, task: Task, on_progress: ProgressCallback | None, cancelled: threading.Event) -> TaskDone:
        """Send the task and wait for its answer, passing its progress on. If `cancelled` is
        set meanwhile, the worker is killed with everything below it (it is started again for
        the next task) and RenderCancelled raised."""
        assert self._requests is not None and self._replies is not None and self._process is not None
        deadline = time.monotonic() + task.timeout_seconds + _REPLY_GRACE_SECONDS
        answered = threading.Event()
        threading.Thread(target=_kill_when, args=(cancelled, answered, self._process), daemon=True).start()
        try:
            self._requests.send(task)
            reply = self._replies.receive(FROM_WORKER, deadline)
            while isinstance(reply, Progress):
                if on_progress is not None:
                    on_progress(reply)
                reply = self._replies.receive(FROM_WORKER, deadline)
        except (OSError, MessageError):
            reply = None
        finally:
            answered.set()
        if cancelled.is_set():  # its parts may have been killed before the worker: no answer counts
            self._stop()
            raise RenderCancelled()
        if not isinstance(reply, TaskDone) or len(reply.outcomes) != len(task.parts):
            self._stop()
            self.restarts += 1
            raise RendererFailed("The render worker died during the job; it has been restarted.")
        self._helpers = {reply.tex_pid}
        return reply

    def _clear_leftovers(self, root: Path) -> None:
        """Remove every process and file the tasks left (see render.leftovers), or fail the
        task: none may start beside what an earlier one left."""
        if self._leftovers is None:
            return
        started = time.monotonic()
        spare = self._helpers | ({self._process.pid} if self._process is not None else set())
        try:
            # The trusted side's folders are kept whole, even when made anew after a task replaced
            # them (a new folder there is not the task's): task folders, the worker's home, scratch.
            self._leftovers.clear(spare, [root.parent, self._home, self.work_dir / "scratch", *self._keep])
        except LeftoversRemain as error:
            self._stop()
            raise RendererFailed(f"The render could not be contained: {error}.") from None
        self.cleanup_seconds = time.monotonic() - started

    @contextmanager
    def _task_folder(self, code: str | None) -> Iterator[Path]:
        """A fresh task folder holding the script (if any) in `work/`, removed when the block ends."""
        root = Path(tempfile.mkdtemp(prefix="job-", dir=own_folder(own_folder(self.work_dir) / "jobs")))
        try:
            (root / "work").mkdir()
            if code is not None:
                (root / "work" / SCRIPT_NAME).write_text(code, encoding="utf-8")
            yield root
        finally:
            remove_tree(root)

    def _parts(
        self,
        root: Path,
        scene: str,
        quality: str,
        limits: RenderLimits,
        deadline: Deadline,
        parts: list[Part],
        on_progress: ProgressCallback | None = None,
        output: Output = PRESET_OUTPUT,
    ) -> tuple[list[Outcome], float]:
        """Run `parts` as one task; their outcomes, and the time limit they were given (to a
        tenth of a second, as callers are told it)."""
        if quality not in QUALITY_FLAGS:
            raise ValueError(f"unknown quality flag {quality!r}")
        timeout = deadline.seconds_left()
        task = Task(
            root=str(root),
            scene=scene,
            quality=QUALITY_FLAGS[quality],
            timeout_seconds=timeout,
            limits=limits,
            parts=parts,
            output=output,
        )
        return self._run(root, task, on_progress, deadline.cancelled).outcomes, round(timeout, 1)

    def plan(
        self,
        code: str,
        *,
        scene: str,
        quality: str,
        limits: RenderLimits,
        deadline: Deadline,
        scratch: Path,
        output: Output = PRESET_OUTPUT,
        thorough: bool = False,
    ) -> Plan:
        """The scene's plan (each animation's frames and costs), found without drawing or
        encoding, and its soundtrack, if it adds sound, copied into the caller's folder `scratch`."""
        with self._task_folder(code) as root:
            parts: list[Part] = [PlanPart(thorough=thorough)]
            (outcome,), timeout = self._parts(root, scene, quality, limits, deadline, parts, output=output)
            if not isinstance(outcome, PlanMade):
                _video(outcome, root / "work", limits, timeout)  # raises the error the outcome describes
                raise RendererFailed("The plan pass returned no plan.")
            if outcome.soundtrack is None:
                return Plan(outcome.animations, outcome.pixels, segment=outcome.segment)
            soundtrack = _task_file(outcome.soundtrack, root / "work", "its soundtrack", "NoSoundtrack")
            # A new file of a random name (O_EXCL): nothing a script planted is followed.
            descriptor, kept = tempfile.mkstemp(prefix="soundtrack-", suffix=".aac", dir=scratch)
            with open(descriptor, "wb") as copy, soundtrack.open("rb") as original:
                shutil.copyfileobj(original, copy)
            return Plan(outcome.animations, outcome.pixels, Path(kept), outcome.segment)

    @contextmanager
    def render(
        self,
        code: str,
        *,
        scene: str,
        quality: str,
        limits: RenderLimits,
        deadline: Deadline,
        ranges: list[Span] | None = None,
        soundtrack: Path | None = None,
        on_progress: ProgressCallback | None = None,
        output: Output = PRESET_OUTPUT,
        frame: int | None = None,
    ) -> Iterator[Made]:
        """Render `code`'s scene as `output` asks and yield the video (or still); the task folder
        is removed when the block ends.

        With `frame`, only that frame renders, as a still (`output` must ask for PNG).
        With `ranges` (from `render.chunks.split`), each range of frames renders in its own
        part, all in parallel, and the pieces are joined by stream copy, with the plan's
        `soundtrack` as their sound. `on_progress` is told, while the scene renders, how many
        animations have played and how many frames they made.
        Raises ScriptError for a script that cannot render, RenderTimeout past the time limit,
        ResourceLimitExceeded past another limit, and RendererFailed for a fault of ours
        (ToolMissing when the worker lacks a program the scene needs, such as latex).
        """
        with self._task_folder(code) as root:
            parts: list[Part] = [RangePart(start=start, end=end) for start, end in ranges] if ranges else [WholePart()]
            if frame is not None:
                parts = [FramePart(frame=frame)]
            outcomes, timeout = self._parts(root, scene, quality, limits, deadline, parts, on_progress, output)
            videos = [_video(outcome, root / "work", limits, timeout) for outcome in outcomes]
            if len(videos) > 1:
                joined = self._join_in(root, [video.path for video in videos], soundtrack, scene, quality, limits, deadline)
                videos = [Made(joined.path, sum(video.frames or 0 for video in videos))]
            yield videos[0]

    @contextmanager
    def join(
        self,
        pieces: list[Path],
        *,
        scene: str,
        quality: str,
        limits: RenderLimits,
        deadline: Deadline,
        soundtrack: Path | None = None,
    ) -> Iterator[Made]:
        """Join video pieces (from chunks rendered elsewhere) into one, with the plan's
        soundtrack, in a task of its own; the joined video is valid until the block ends."""
        with self._task_folder(None) as root:
            yield self._join_in(root, pieces, soundtrack, scene, quality, limits, deadline)

    def _join_in(
        self,
        root: Path,
        pieces: list[Path],
        soundtrack: Path | None,
        scene: str,
        quality: str,
        limits: RenderLimits,
        deadline: Deadline,
    ) -> Made:
        """Join pieces into a video in task folder `root`, in a contained part: the pieces were
        written by a script, so only a process without credentials parses them."""
        if soundtrack is not None:  # the join reads it from its own folder, as any task's input
            soundtrack = Path(shutil.copyfile(soundtrack, root / "work" / "soundtrack.aac"))
        part = JoinPart(
            pieces=[str(piece) for piece in pieces],
            soundtrack=str(soundtrack) if soundtrack is not None else None,
            output=f"{scene}{pieces[0].suffix}",
        )
        (outcome,), timeout = self._parts(root, scene, quality, limits, deadline, [part])
        return _video(outcome, root / "work", limits, timeout)


# How often a running task looks whether it has been cancelled.
_CANCEL_CHECK_SECONDS = 0.1


def _kill_when(cancelled: threading.Event, answered: threading.Event, worker: subprocess.Popen[bytes]) -> None:
    """Kill `worker` and everything below it if `cancelled` is set before `answered`."""
    while not answered.is_set():
        if cancelled.wait(_CANCEL_CHECK_SECONDS) and not answered.is_set():
            kill_descendants(worker.pid)
            worker.kill()
            return


def _task_file(reported: str, workspace: Path, what: str, error_type: str) -> Path:
    """A file the part reports having written, if it is one inside its workspace (the part's
    processes are gone by now, so it cannot be swapped afterwards)."""
    path = Path(reported).resolve()
    if path.is_file() and path.is_relative_to(workspace.resolve()):
        return path
    raise ScriptError(f"The render finished without writing {what}.", error_type=error_type)


@dataclass(frozen=True)
class Made:
    """A part's video (or still), and how many frames it has, as the part counted them (None
    for a join, which does not count)."""

    path: Path
    frames: int | None = None


def _video(outcome: Outcome, workspace: Path, limits: RenderLimits, timeout: float) -> Made:
    """The video the worker reports, or the error its outcome describes."""
    match outcome:
        case VideoMade(path=path, frames=frames) if Path(path).suffix in OUTPUT_SUFFIXES:
            return Made(_task_file(path, workspace, "a video", "NoVideo"), frames)
        case VideoMade():
            raise ScriptError("The render finished without writing a video.", error_type="NoVideo")
        case ScriptFailed():
            raise ScriptError(outcome.message, error_type=outcome.type, line=outcome.line, traceback=outcome.traceback)
        case TimedOut():
            raise RenderTimeout(timeout)
        case ToolLacking(tool=tool):
            raise ToolMissing(tool)
        case LimitHit(limit=limit):
            raise ResourceLimitExceeded(limit, limits, timeout)
        case Ended(signal=str(name)):
            raise ScriptError(f"The render process crashed ({name}) while running the script.", error_type="ProcessCrashed")
        case Ended(code=code):
            raise ScriptError(
                f"The script ended the render process (exit code {code}) before the scene finished.",
                error_type="ProcessExited",
            )
    raise RendererFailed(f"The render worker failed: {str(outcome)[:500]}")
