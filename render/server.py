"""The warm render worker: one process per execution environment, Manim already imported,
running one task at a time, each part of it in a contained process forked for it.

Started by render.client.WorkerClient with an environment holding no credentials. It speaks
render.messages on the descriptors named on its command line: `Ready` once, then for each
`Task` some `Progress` and a `TaskDone`. A part renders through Manim's Python API (no
interpreter start-up, no import) in render.runner; the worker enforces the time limit,
answers the parts' LaTeX requests, validates everything they send, and when the task ends
kills everything it started before it answers.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time
from pathlib import Path

from render.latex import find_tools, start_tex_service
from render.messages import (
    FROM_PART,
    TASK,
    TEX_RESULT,
    Channel,
    Ended,
    LimitHit,
    LimitName,
    MessageError,
    Outcome,
    Part,
    PartReport,
    PlanMade,
    Progress,
    Ready,
    ScriptFailed,
    Task,
    TaskDone,
    TexAnswer,
    TexJob,
    TexRequest,
    TexResult,
    TimedOut,
    ToolLacking,
    VideoMade,
    WorkerFailed,
)
from render.runner import run_part
from render.sandbox import become_subreaper, descendants, kill_descendants, make_non_dumpable, signal_all

# The largest message a part may send (a LaTeX request's source is the largest legitimate one).
_PART_MESSAGE_LIMIT = 1024 * 1024
# The largest task the client may send.
_TASK_LIMIT = 1024 * 1024
_LIMIT_SIGNALS: dict[int, LimitName] = {signal.SIGXCPU: "cpu", signal.SIGXFSZ: "output"}


def _preload() -> None:
    """Import what a render needs, once, so that no part pays for it."""
    import manim
    import manim.mobject.text.tex_mobject
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


class WorkerServer:
    """The worker's loop: one task at a time, each part in a fresh forked process."""

    def __init__(self, tex_dir: Path, replies: Channel) -> None:
        self._tex_dir = tex_dir
        self.tex_pid, self._tex = start_tex_service(tex_dir)
        self._replies = replies
        self._tex_counts = (0, 0)

    def run_task(self, task: Task) -> TaskDone:
        """Run the task's parts (one whole render, a plan, chunk ranges, or a join) side by
        side, each in its own session, under one time limit; then kill all they started."""
        deadline = time.monotonic() + task.timeout_seconds
        parts: list[_RunningPart] = []
        try:
            for index, part in enumerate(task.parts):
                parts.append(self._start(task, part, index))
            self._supervise(parts, deadline)
        finally:
            for running in parts:
                running.close()
            # Everything the task started, daemons included; the LaTeX service stays.
            kill_descendants(os.getpid(), exclude={self.tex_pid})
        hits, misses = self._tex_counts
        return TaskDone(
            outcomes=[running.outcome() for running in parts], tex_pid=self.tex_pid, tex_hits=hits, tex_misses=misses
        )

    def _start(self, task: Task, part: Part, index: int) -> _RunningPart:
        ours, theirs = socket.socketpair()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the part's process
            ours.close()
            run_part(task, part, index, theirs.detach())
        theirs.close()
        connection = ours.detach()
        return _RunningPart(index, pid, Channel(connection, connection, limit=_PART_MESSAGE_LIMIT), os.pidfd_open(pid))

    def _supervise(self, parts: list[_RunningPart], deadline: float) -> None:
        """Serve the parts' messages until all exit or the time is up (their status then
        stays None)."""
        while running := [part for part in parts if part.status is None]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            watched = {part.exited: part for part in running}
            watched.update({part.channel.fileno(): part for part in running if part.listening})
            ready, _, _ = select.select(list(watched), [], [], remaining)
            for source in ready:
                part = watched[source]
                if source == part.exited:
                    part.drain()  # what it said before it ended counts, even if its exit came first
                    part.reap()
                    if len(parts) > 1:
                        self._replies.send(_total(parts))
                    continue
                for message in part.receive():
                    if isinstance(message, Progress):
                        part.progress = message
                        self._replies.send(_total(parts))
                    elif isinstance(message, TexRequest):
                        result = self._compile(message, deadline)
                        part.missing_tool = part.missing_tool or result.missing_tool
                        part.send(result.answer)
                    else:
                        part.report = message


    def _compile(self, request: TexRequest, deadline: float) -> TexResult:
        """The LaTeX service's answer: from its cache at once, or compiled with every process
        of the task frozen meanwhile (all are the worker's descendants, orphans included,
        since it is a subreaper), so none can touch the compiler's files."""
        result = self._ask_tex(request, deadline, compile_now=False)
        if result is not None and result.compile_needed:
            frozen = self._freeze_task()
            try:
                result = self._ask_tex(request, deadline, compile_now=True)
            finally:
                signal_all(frozen, signal.SIGCONT)
        if result is None:  # the service died or hung: a fresh one for the next request
            self._restart_tex()
            return TexResult(answer=TexAnswer(error="LaTeX did not answer within the render's time limit"))
        self._tex_counts = (result.hits, result.misses)
        return result

    def _ask_tex(self, request: TexRequest, deadline: float, compile_now: bool) -> TexResult | None:
        timeout = max(0.0, deadline - time.monotonic())
        try:
            self._tex.send(TexJob(request=request, timeout_seconds=timeout, compile_now=compile_now))
            return self._tex.receive(TEX_RESULT, deadline)
        except (OSError, MessageError):
            return None

    def _freeze_task(self) -> list[int]:
        service = {self.tex_pid, *descendants(self.tex_pid)}
        frozen: list[int] = []
        while running := [pid for pid in descendants(os.getpid()) if pid not in service and pid not in frozen]:
            signal_all(running, signal.SIGSTOP)
            frozen.extend(running)
        return frozen

    def _restart_tex(self) -> None:
        signal_all([self.tex_pid], signal.SIGKILL)
        os.waitpid(self.tex_pid, 0)
        self._tex.close()
        self.tex_pid, self._tex = start_tex_service(self._tex_dir)


class _RunningPart:
    """One running part of a task, seen from the worker."""

    def __init__(self, index: int, pid: int, channel: Channel, exited: int) -> None:
        self.index = index
        self.pid = pid
        self.channel = channel
        self.exited = exited
        self.listening = True
        self.status: int | None = None
        self.progress = Progress()
        self.report: PartReport | None = None
        # Seen by the worker itself, so a script cannot claim it: a render tool it needed was missing.
        self.missing_tool: str | None = None
        # Set by the worker when the part broke the protocol; then nothing it says counts.
        self.broke_protocol: str | None = None

    def receive(self) -> list[Progress | TexRequest | PartReport]:
        """The messages that have arrived. One that breaks the protocol (too large, not
        JSON, not of a kind a part may send) ends the part: it is the script's doing."""
        try:
            self.channel.read_available()
            messages = self.channel.take(FROM_PART)
        except MessageError as error:
            os.kill(self.pid, signal.SIGKILL)
            self.broke_protocol = str(error)
            self.listening = False
            return []
        if self.channel.at_end:
            self.listening = False
        return messages

    def drain(self) -> None:
        """Read whatever the part sent and nobody has read yet, without waiting: another
        process of the task may still hold its end open."""
        while self.listening and select.select([self.channel.fileno()], [], [], 0)[0]:
            for message in self.receive():
                if not isinstance(message, (Progress, TexRequest)):
                    self.report = message

    def send(self, answer: TexAnswer) -> None:
        try:
            self.channel.send(answer)
        except OSError:
            pass

    def reap(self) -> None:
        try:
            _, self.status = os.waitpid(self.pid, 0)
        except ChildProcessError:  # collected elsewhere: its report, if any, says how it ended
            self.status = 0

    def close(self) -> None:
        self.channel.close()
        os.close(self.exited)

    def outcome(self) -> Outcome:
        """How the part ended, as far as the worker can tell.

        A part without a result that asked for a render tool we lack failed by our fault,
        whatever error it then reported.
        """
        if self.broke_protocol is not None:
            return ScriptFailed(
                type="MalformedMessage",
                message=f"The script sent the render worker {self.broke_protocol}."[:4000],
            )
        if self.status is None:
            return TimedOut()
        if isinstance(self.report, (VideoMade, PlanMade)):
            return self.report
        if self.missing_tool is not None:
            return ToolLacking(tool=self.missing_tool)
        if self.report is not None:
            return self.report
        if os.WIFSIGNALED(self.status):
            signum = os.WTERMSIG(self.status)
            if signum in _LIMIT_SIGNALS:
                return LimitHit(limit=_LIMIT_SIGNALS[signum])
            return Ended(signal=signal.Signals(signum).name)
        return Ended(code=os.WEXITSTATUS(self.status))


def _total(parts: list[_RunningPart]) -> Progress:
    """Progress summed over a task's parts; with several (chunks), how many have finished."""
    several = len(parts) > 1
    return Progress(
        animations=sum(part.progress.animations for part in parts),
        frames=sum(part.progress.frames for part in parts),
        chunks=len(parts) if several else None,
        chunks_done=sum(1 for part in parts if part.status is not None) if several else None,
    )


def main() -> None:
    """Serve tasks on the descriptors named on the command line until the input closes."""
    requests = Channel(int(sys.argv[1]), None, limit=_TASK_LIMIT)
    replies = Channel(None, int(sys.argv[2]), limit=_TASK_LIMIT)
    state = protections()
    _preload()
    server = WorkerServer(Path(sys.argv[3]), replies)  # its LaTeX service forked before any task
    replies.send(Ready(protections=state, tools=find_tools(), pid=os.getpid(), tex_pid=server.tex_pid))
    while (task := requests.receive(TASK)) is not None:
        try:
            done = server.run_task(task)
        except Exception as error:  # noqa: BLE001 - one task's failure must not end the worker
            kill_descendants(os.getpid(), exclude={server.tex_pid})
            done = TaskDone(outcomes=[WorkerFailed(message=f"{type(error).__name__}: {error}")], tex_pid=server.tex_pid)
        replies.send(done)


if __name__ == "__main__":
    main()
