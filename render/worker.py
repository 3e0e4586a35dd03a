"""The warm render worker: one process per execution environment, Manim already imported,
forking one contained child per job.

Started by `render.job.RenderWorker` with an environment holding no credentials. It speaks
JSON lines on the file descriptors given on its command line: it announces itself with
`{"ready": ..., "protections": ..., "tools": ...}`, then answers each `{"job": ...}` with
`{"result": ...}`.
A job's child renders through Manim's Python API (no interpreter start-up, no import), under
rlimits, in its own folder; the worker enforces the time limit, answers its LaTeX requests,
and when the job ends kills everything the job started before it answers.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any

from render.latex import TexCache, TexChannel, find_tools, install_tex_client
from render.sandbox import (
    RenderLimits,
    apply_limits,
    become_subreaper,
    clean_environment,
    die_with_parent,
    forbid_new_privileges,
    kill_descendants,
    make_non_dumpable,
)

_MAX_MESSAGE_BYTES = 1024 * 1024
_OUTPUT_TAIL_BYTES = 4000
_LIMIT_SIGNALS = {signal.SIGXCPU: "cpu", signal.SIGXFSZ: "output"}


def _preload() -> None:
    """Import what a render needs, once, so that no job pays for it."""
    import manim  # noqa: F401
    import manim.mobject.text.tex_mobject  # noqa: F401
    import manim.scene.scene_file_writer  # noqa: F401
    from manim.utils.tex_file_writing import compile_tex  # noqa: F401


def protections() -> dict[str, bool]:
    """Which containment mechanisms this process could turn on (see render.sandbox)."""
    return {
        "subreaper": become_subreaper(),
        "non_dumpable": make_non_dumpable(),
        "rlimits": True,
        "clean_environment": not any(key.startswith("AWS_") for key in os.environ),
        # Lambda forbids the mechanisms below; network egress is the deployment's to close.
        "namespaces": False,
        "seccomp": False,
        "network_isolation": False,
    }


class Worker:
    """The worker's loop: one job at a time, each in a fresh forked child."""

    def __init__(self, tex_cache: TexCache, replies: IO[bytes]) -> None:
        self.tex_cache = tex_cache
        self._replies = replies

    def reply(self, message: dict[str, Any]) -> None:
        self._replies.write(json.dumps(message).encode() + b"\n")
        self._replies.flush()

    def run_job(self, job: dict[str, Any]) -> dict[str, Any]:
        """Run the job's parts (one whole render, a plan, or chunk ranges) in parallel children,
        each in its own process group, under one time limit; then kill all they started."""
        root = Path(job["root"])
        limits = RenderLimits(**job["limits"])
        deadline = time.monotonic() + limits.timeout_seconds
        parts = job.get("parts") or [{"mode": "whole"}]
        children: list[_Child] = []
        try:
            for index, part in enumerate(parts):
                children.append(self._start(job, {**part, "parts": len(parts)}, index, limits))
            self._supervise(children, deadline)
        finally:
            for child in children:
                child.close()
            kill_descendants(os.getpid())  # everything the job started, daemons included
        outcomes = [
            _outcome(child.status, child.report, limits, _tail(root / f"output-{child.index}.log"), child.missing_tool)
            for child in children
        ]
        return {"parts": outcomes}

    def _start(self, job: dict[str, Any], part: dict[str, Any], index: int, limits: RenderLimits) -> _Child:
        ours, theirs = socket.socketpair()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the job's child
            ours.close()
            _child(job, {**part, "index": index}, theirs, limits)
        theirs.close()
        return _Child(index, pid, ours, os.pidfd_open(pid))

    def _supervise(self, children: list[_Child], deadline: float) -> None:
        """Serve the children's messages until all exit or the time is up (their status then
        stays None)."""
        progress: dict[int, dict[str, int]] = {}
        while running := [child for child in children if child.status is None]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            watched = {child.exited: child for child in running}
            watched.update({child.connection: child for child in running if child.listening})
            ready, _, _ = select.select(list(watched), [], [], remaining)
            for source in ready:
                child = watched[source]
                if source is child.exited:
                    child.reap()
                    if len(children) > 1:
                        self.reply({"progress": _total(progress.values(), children)})
                    continue
                for message in child.receive():
                    if isinstance(message.get("progress"), dict):
                        progress[child.index] = message["progress"]
                        self.reply({"progress": _total(progress.values(), children)})
                    else:
                        self._handle(message, child, deadline)

    def _handle(self, message: dict[str, Any], child: _Child, deadline: float) -> None:
        """A LaTeX request is answered (a render tool found missing is noted); a report is
        kept. Anything else is ignored."""
        if isinstance(message.get("tex"), dict):
            answer = self.tex_cache.answer(message["tex"], deadline)
            child.missing_tool = child.missing_tool or answer.get("missingTool")
            child.send(answer)
        elif isinstance(message.get("report"), dict):
            child.report = message["report"]


class _Child:
    """One running part of a job, seen from the worker."""

    def __init__(self, index: int, pid: int, connection: socket.socket, exited: int) -> None:
        self.index = index
        self.pid = pid
        self.connection = connection
        self.exited = exited
        self.listening = True
        self.status: int | None = None
        self.report: dict[str, Any] | None = None
        # Seen by the worker itself, so a job cannot claim it: a render tool it needed was missing.
        self.missing_tool: str | None = None
        self._buffer = b""

    def receive(self) -> list[dict[str, Any]]:
        """The complete messages that have arrived; a flood ends the child."""
        data = self.connection.recv(1 << 16)
        if not data:
            self.listening = False
        self._buffer += data
        if len(self._buffer) > _MAX_MESSAGE_BYTES:
            os.kill(self.pid, signal.SIGKILL)
            self.report = {"error": {"type": "ChannelFlooded", "message": "The script flooded the worker's channel."}}
            self._buffer = b""
            self.listening = False
            return []
        messages = []
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                messages.append(message)
        return messages

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.connection.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            pass

    def reap(self) -> None:
        try:
            _, self.status = os.waitpid(self.pid, 0)
        except ChildProcessError:  # collected elsewhere: its report, if any, says how it ended
            self.status = 0

    def close(self) -> None:
        self.connection.close()
        os.close(self.exited)


def _total(progress: Any, children: list[_Child]) -> dict[str, int]:
    """Progress summed over a job's parts; with several (chunks), how many have finished."""
    totals = {"animations": 0, "frames": 0}
    for part in progress:
        for key in totals:
            totals[key] += int(part.get(key) or 0)
    if len(children) > 1:
        totals["chunks"] = len(children)
        totals["chunksDone"] = sum(1 for child in children if child.status is not None)
    return totals


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - _OUTPUT_TAIL_BYTES))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _outcome(
    status: int | None, report: dict | None, limits: RenderLimits, output: str, missing_tool: str | None
) -> dict[str, Any]:
    """What happened to the job, in the terms render.job turns into a video or an error.

    A job without a result that asked for a render tool we lack failed by our fault, whatever
    error it then reported.
    """
    if status is None:
        return {"kind": "timeout", "limitSeconds": limits.timeout_seconds}
    if report is not None and "video" in report:
        return {"kind": "video", "video": report["video"]}
    if report is not None and "plan" in report:
        return {"kind": "plan", "frames": report["plan"], "soundtrack": report.get("soundtrack")}
    if missing_tool is not None:
        return {"kind": "missing_tool", "tool": missing_tool}
    if report is not None and "limit" in report:
        return {"kind": "limit", "limit": report["limit"]}
    if report is not None and "error" in report:
        return {"kind": "script_error", **report["error"]}
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum in _LIMIT_SIGNALS:
            return {"kind": "limit", "limit": _LIMIT_SIGNALS[signum]}
        return {"kind": "crashed", "signal": signal.Signals(signum).name, "output": output}
    return {"kind": "exited", "code": os.WEXITSTATUS(status), "output": output}


def _child(job: dict[str, Any], part: dict[str, Any], connection: socket.socket, limits: RenderLimits) -> None:
    """In the job's child: contain this process, render, report, exit."""
    code = 70
    try:
        os.setsid()
        die_with_parent()
        forbid_new_privileges()
        root = Path(job["root"])
        workspace = root / "work"
        output = os.open(root / f"output-{part['index']}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        keep = connection.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, 65536)
        os.chdir(workspace)
        env = clean_environment(workspace)
        os.environ.clear()
        os.environ.update(env)
        import tempfile

        tempfile.tempdir = None  # read TMPDIR again
        apply_limits(limits)
        from render.child import render_job

        channel = TexChannel(connection)
        install_tex_client(channel)
        report = render_job(job, part, channel)
        channel.send({"report": report})
        code = 0
    except BaseException:  # noqa: BLE001 - the child must never return into the worker's loop
        pass
    finally:
        os._exit(code)


def main() -> None:
    """Serve jobs on the descriptors named on the command line until the input closes."""
    requests = os.fdopen(int(sys.argv[1]), "rb")
    replies = os.fdopen(int(sys.argv[2]), "wb")
    state = protections()
    _preload()
    worker = Worker(TexCache(Path(sys.argv[3])), replies)
    worker.reply({"ready": True, "protections": state, "tools": find_tools(), "pid": os.getpid()})
    for line in requests:
        job = json.loads(line)["job"]
        try:
            result = worker.run_job(job)
        except Exception as error:  # noqa: BLE001 - one job's failure must not end the worker
            kill_descendants(os.getpid())
            result = {"parts": [{"kind": "worker_error", "message": f"{type(error).__name__}: {error}"}]}
        result["tex"] = {"hits": worker.tex_cache.hits, "misses": worker.tex_cache.misses}
        worker.reply({"result": result})


if __name__ == "__main__":
    main()
