"""The handler's side of rendering: the warm worker's client.

`RenderWorker` starts `render.worker` once (at init, so Lambda's init phase pays for Manim's
import), with an environment stripped of credentials and settings, then sends it one job at a
time. Each job gets a fresh folder that is removed afterwards, whatever happened. A worker
that dies or stops answering is killed with everything below it and started again, so the
next job finds a working service.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

from render.child import SCRIPT_NAME
from render.chunks import Plan
from render.errors import RendererFailed, RenderTimeout, ResourceLimitExceeded, ScriptError, ToolMissing, strip_ansi
from render.sandbox import (
    RenderLimits,
    become_subreaper,
    clean_environment,
    kill_adopted_orphans,
    kill_descendants,
    make_non_dumpable,
    remove_tree,
    start_time,
)
from render.scenes import choose_scene

# Frames per second of each quality flag (Manim's own values).
FRAME_RATES: dict[str, int] = {"-ql": 15, "-qm": 30, "-qh": 60, "-qp": 60, "-qk": 60}

# The seed's quality flags and the Manim quality each one names.
QUALITY_FLAGS: dict[str, str] = {
    "-ql": "low_quality",
    "-qm": "medium_quality",
    "-qh": "high_quality",
    "-qp": "production_quality",
    "-qk": "fourk_quality",
}

ProgressCallback = Callable[[dict[str, Any]], None]

_START_TIMEOUT_SECONDS = 120.0
# How long past a job's own time limit the worker may take to answer before it is presumed hung.
_REPLY_GRACE_SECONDS = 15.0


@dataclass(frozen=True)
class RenderedVideo:
    """A finished video, valid until the `render` block that made it ends."""

    path: Path
    scene_name: str
    quality: str
    render_seconds: float
    chunks: int = 1


class RenderWorker:
    """One warm worker process and the jobs sent to it, one at a time."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.protections: dict[str, bool] = {}
        self.tools: dict[str, bool] = {}  # which render tools the worker found on its PATH
        self.restarts = 0
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._replies: int | None = None  # the reply pipe's descriptor, read unbuffered
        self._pending = b""  # reply bytes read but not yet returned
        self._requests: IO[bytes] | None = None
        self._started_at = 0
        self._home = work_dir

    @property
    def pid(self) -> int | None:
        """The worker's process id while it runs (its jobs are its children)."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the worker and wait until Manim is imported (idempotent)."""
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._spawn()

    def _spawn(self) -> None:
        # This process holds the credentials: close it to the worker and its jobs, and adopt
        # whatever a dead worker's jobs leave behind.
        self.protections = {"handler_non_dumpable": make_non_dumpable(), "handler_subreaper": become_subreaper()}
        # A fresh, unguessable home for each worker: a job may write anywhere the worker
        # could, but not into a folder made after it was killed, and Manim and Python read
        # their configuration from here when the worker starts.
        self.work_dir.mkdir(parents=True, exist_ok=True)
        home = Path(tempfile.mkdtemp(prefix="worker-", dir=self.work_dir))
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        env = clean_environment(home, {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
        self._process = subprocess.Popen(
            # -P: no current folder on sys.path; -s: no user site-packages.
            [sys.executable, "-P", "-s", "-m", "render.worker", str(request_read), str(reply_write), str(home / "tex")],
            pass_fds=(request_read, reply_write),
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=home,
            start_new_session=True,
        )
        os.close(request_read)
        os.close(reply_write)
        self._home = home
        self._started_at = start_time(self._process.pid)
        self._requests = os.fdopen(request_write, "wb")
        self._replies = reply_read
        self._pending = b""
        hello = self._read_reply(time.monotonic() + _START_TIMEOUT_SECONDS)
        if hello is None or not hello.get("ready"):
            self._stop()
            raise RendererFailed("The render worker did not start.")
        self.protections.update(hello["protections"])
        self.tools = hello["tools"]

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
        if self._requests is not None:
            self._requests.close()
        if self._replies is not None:
            os.close(self._replies)
        self._process = self._requests = self._replies = None

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _read_reply(self, deadline: float) -> dict[str, Any] | None:
        """The worker's next message, or None if it died or said nothing before `deadline`.

        Unbuffered: a buffered reader could hold a second message that select() cannot see.
        """
        assert self._replies is not None
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._replies], [], [], remaining)
            if not ready:
                continue
            data = os.read(self._replies, 1 << 16)
            if not data:
                return None
            self._pending += data
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def _run(self, job: dict[str, Any], timeout_seconds: float, on_progress: ProgressCallback) -> dict[str, Any]:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._stop()
                self._spawn()
            assert self._requests is not None
            deadline = time.monotonic() + timeout_seconds + _REPLY_GRACE_SECONDS
            try:
                self._requests.write(json.dumps({"job": job}).encode() + b"\n")
                self._requests.flush()
                reply = self._read_reply(deadline)
                while reply is not None and "progress" in reply:
                    on_progress(reply["progress"])
                    reply = self._read_reply(deadline)
            except (OSError, ValueError):
                reply = None
            if reply is None or "result" not in reply:
                self._stop()
                self.restarts += 1
                raise RendererFailed("The render worker died during the job; it has been restarted.")
            return reply["result"]

    @contextmanager
    def _job_folder(self, code: str | None) -> Iterator[Path]:
        """A fresh job folder holding the script (if any) in `work/`, removed when the block ends."""
        jobs = self.work_dir / "jobs"
        jobs.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="job-", dir=jobs))
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
        parts: list[dict[str, Any]],
        on_progress: ProgressCallback | None,
    ) -> list[dict[str, Any]]:
        if quality not in QUALITY_FLAGS:
            raise ValueError(f"unknown quality flag {quality!r}")
        job = {"root": str(root), "scene": scene, "quality": QUALITY_FLAGS[quality], "limits": asdict(limits), "parts": parts}
        return self._run(job, limits.timeout_seconds, on_progress or (lambda _progress: None))["parts"]

    def plan(self, code: str, *, quality: str, limits: RenderLimits, scratch: Path, scene_name: str | None = None) -> Plan:
        """The frame count of each animation of the scene, found without drawing or encoding,
        and its soundtrack, if it adds sound, copied into the caller's folder `scratch`."""
        scene = choose_scene(code, scene_name)
        with self._job_folder(code) as root:
            (outcome,) = self._parts(root, scene, quality, limits, [{"mode": "plan"}], None)
            if outcome.get("kind") != "plan":
                _video(outcome, root / "work", limits)  # raises the error the outcome describes
                raise RendererFailed("The plan pass returned no plan.")
            frames = [int(frames) for frames in outcome["frames"]]
            if not outcome.get("soundtrack"):
                return Plan(frames)
            soundtrack = _job_file(outcome["soundtrack"], root / "work", "its soundtrack", "NoSoundtrack")
            # A new file of a random name (O_EXCL): nothing a script planted is followed.
            descriptor, kept = tempfile.mkstemp(prefix="soundtrack-", suffix=".aac", dir=scratch)
            with open(descriptor, "wb") as copy, soundtrack.open("rb") as original:
                shutil.copyfileobj(original, copy)
            return Plan(frames, Path(kept))

    @contextmanager
    def render(
        self,
        code: str,
        *,
        quality: str,
        limits: RenderLimits,
        scene_name: str | None = None,
        on_progress: ProgressCallback | None = None,
        ranges: list[tuple[int, int]] | None = None,
        soundtrack: Path | None = None,
    ) -> Iterator[RenderedVideo]:
        """Render `code`'s scene and yield the video; the job folder is removed when the block ends.

        With `ranges` (from `render.chunks.split`), each range of animations renders in its own
        child, all in parallel, and the pieces are joined by stream copy, with the plan's
        `soundtrack` as their sound. `on_progress` is told, while the scene renders, how many
        animations have played and how many frames they made.
        Raises ScriptError for a script that cannot render, RenderTimeout past the time limit,
        ResourceLimitExceeded past another limit, and RendererFailed for a fault of ours
        (ToolMissing when the worker lacks a program the scene needs, such as latex).
        """
        scene = choose_scene(code, scene_name)
        with self._job_folder(code) as root:
            started = time.monotonic()
            if ranges:
                parts = [
                    {"mode": "range", "start": start, "end": end, "media": f"media-{index}"}
                    for index, (start, end) in enumerate(ranges)
                ]
            else:
                parts = [{"mode": "whole"}]
            outcomes = self._parts(root, scene, quality, limits, parts, on_progress)
            videos = [_video(outcome, root / "work", limits) for outcome in outcomes]
            if len(videos) > 1:
                remaining = replace(limits, timeout_seconds=max(1.0, limits.timeout_seconds - (time.monotonic() - started)))
                videos = [self._join_in(root, videos, soundtrack, scene, quality, remaining)]
            yield RenderedVideo(videos[0], scene, quality, time.monotonic() - started, len(parts))

    @contextmanager
    def join(
        self, pieces: list[Path], *, scene_name: str, quality: str, limits: RenderLimits, soundtrack: Path | None = None
    ) -> Iterator[Path]:
        """Join video pieces (from chunks rendered elsewhere) into one, with the plan's
        soundtrack, in a job of its own; the joined video is valid until the block ends."""
        with self._job_folder(None) as root:
            yield self._join_in(root, pieces, soundtrack, scene_name, quality, limits)

    def _join_in(
        self, root: Path, pieces: list[Path], soundtrack: Path | None, scene: str, quality: str, limits: RenderLimits
    ) -> Path:
        """Join pieces into a video in job folder `root`, in a contained child: the pieces were
        written by a script, so only a process without credentials parses them."""
        part = {
            "mode": "join",
            "pieces": [str(piece) for piece in pieces],
            "soundtrack": soundtrack and str(soundtrack),
            "output": f"{scene}.mp4",
        }
        (outcome,) = self._parts(root, scene, quality, limits, [part], None)
        return _video(outcome, root / "work", limits)


def _job_file(reported: str, workspace: Path, what: str, error_type: str) -> Path:
    """A file the job reports having written, if it is one inside its workspace (the job's
    processes are gone by now, so it cannot be swapped afterwards)."""
    path = Path(reported).resolve()
    if path.is_file() and path.is_relative_to(workspace.resolve()):
        return path
    raise ScriptError(f"The render finished without writing {what}.", error_type=error_type)


def _video(outcome: dict[str, Any], workspace: Path, limits: RenderLimits) -> Path:
    """The video the worker reports, or the error its outcome describes."""
    kind = outcome.get("kind")
    if kind == "video":
        return _job_file(outcome["video"], workspace, "a video", "NoVideo")
    if kind == "script_error":
        raise ScriptError(
            outcome["message"], error_type=outcome["type"], line=outcome.get("line"), traceback=outcome.get("traceback")
        )
    if kind == "timeout":
        raise RenderTimeout(limits.timeout_seconds)
    if kind == "missing_tool":
        raise ToolMissing(outcome["tool"])
    if kind == "limit":
        raise ResourceLimitExceeded(outcome["limit"], limits)
    if kind == "exited":
        raise ScriptError(
            f"The script ended the render process (exit code {outcome['code']}) before the scene finished.",
            error_type="ProcessExited",
        )
    if kind == "crashed":
        raise ScriptError(
            f"The render process crashed ({outcome['signal']}) while running the script.",
            error_type="ProcessCrashed",
        )
    raise RendererFailed(f"The render worker failed: {strip_ansi(str(outcome))[:500]}")

