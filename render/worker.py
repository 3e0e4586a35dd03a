"""The warm render worker: one process per execution environment, Manim already imported,
forking one contained child per job.

Started by `render.job.RenderWorker` with an environment holding no credentials. It speaks
JSON lines on the file descriptors given on its command line: it announces itself with
`{"ready": ..., "protections": ...}`, then answers each `{"job": ...}` with `{"result": ...}`.
A job's child renders through Manim's Python API (no interpreter start-up, no import), under
rlimits, in its own folder; the worker enforces the time limit, answers its LaTeX requests,
and when the job ends kills everything the job started before it answers.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any

from render.latex import TexCache, TexChannel, install_tex_client
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
        root = Path(job["root"])
        limits = RenderLimits(**job["limits"])
        deadline = time.monotonic() + limits.timeout_seconds
        ours, theirs = socket.socketpair()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the job's child
            ours.close()
            _child(job, theirs, limits)
        theirs.close()
        try:
            status, report = self._supervise(pid, ours, deadline)
        finally:
            ours.close()
            kill_descendants(os.getpid())  # everything the job started, daemons included
        return _outcome(status, report, limits, _tail(root / "output.log"))

    def _supervise(self, pid: int, connection: socket.socket, deadline: float) -> tuple[int | None, dict | None]:
        """Serve the child's messages until it exits or its time is up.

        Returns its wait status (None on timeout) and its final report, if it sent one.
        """
        exited = os.pidfd_open(pid)
        buffer = b""
        report: dict[str, Any] | None = None
        watching = [exited, connection]
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None, None
                ready, _, _ = select.select(watching, [], [], remaining)
                if connection in ready:
                    data = connection.recv(1 << 16)
                    if not data:
                        watching.remove(connection)
                    buffer += data
                    if len(buffer) > _MAX_MESSAGE_BYTES:
                        os.kill(pid, signal.SIGKILL)
                        _, status = os.waitpid(pid, 0)
                        flood = {"type": "ChannelFlooded", "message": "The script flooded the worker's channel."}
                        return status, {"error": flood}
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        report = self._handle(line, connection, deadline) or report
                if exited in ready:
                    _, status = os.waitpid(pid, 0)
                    return status, report
        finally:
            os.close(exited)

    def _handle(self, line: bytes, connection: socket.socket, deadline: float) -> dict[str, Any] | None:
        """A LaTeX request is answered; a report is kept. Anything else is ignored."""
        try:
            message = json.loads(line)
        except ValueError:
            return None
        if not isinstance(message, dict):
            return None
        if isinstance(message.get("tex"), dict):
            answer = self.tex_cache.answer(message["tex"], deadline)
            try:
                connection.sendall(json.dumps(answer).encode() + b"\n")
            except OSError:
                pass
            return None
        if isinstance(message.get("progress"), dict):
            progress = message["progress"]
            self.reply({"progress": {key: int(progress.get(key) or 0) for key in ("animations", "frames")}})
            return None
        if isinstance(message.get("report"), dict):
            return message["report"]
        return None


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - _OUTPUT_TAIL_BYTES))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _outcome(status: int | None, report: dict | None, limits: RenderLimits, output: str) -> dict[str, Any]:
    """What happened to the job, in the terms render.job turns into a video or an error."""
    if status is None:
        return {"kind": "timeout", "limitSeconds": limits.timeout_seconds}
    if report is not None and "video" in report:
        return {"kind": "video", "video": report["video"]}
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


def _child(job: dict[str, Any], connection: socket.socket, limits: RenderLimits) -> None:
    """In the job's child: contain this process, render, report, exit."""
    code = 70
    try:
        os.setsid()
        die_with_parent()
        forbid_new_privileges()
        root = Path(job["root"])
        workspace = root / "work"
        output = os.open(root / "output.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
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
        report = render_job(job, channel)
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
    worker.reply({"ready": True, "protections": state, "pid": os.getpid()})
    for line in requests:
        job = json.loads(line)["job"]
        try:
            result = worker.run_job(job)
        except OSError as error:
            result = {"kind": "worker_error", "message": os.strerror(error.errno or errno.EIO)}
        result["tex"] = {"hits": worker.tex_cache.hits, "misses": worker.tex_cache.misses}
        worker.reply({"result": result})


if __name__ == "__main__":
    main()
