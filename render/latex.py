"""LaTeX for scenes, compiled by the worker and reused across jobs, never written by a job.

LaTeX is the slowest part of many scenes (every MathTex, every axis number), so its results
are worth keeping between jobs. But a job runs hostile code under the same uid as the worker:
any file the worker could keep, the job could overwrite. So the cache lives in the worker's
memory (its process is non-dumpable, closed to the job), and the worker compiles each new
formula itself in a contained process while the job that asked is frozen. A job only ever
receives SVG text over its channel.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any

from render.errors import strip_ansi
from render.sandbox import (
    RenderLimits,
    apply_limits,
    clean_environment,
    descendants,
    die_with_parent,
    remove_tree,
    signal_all,
)

_MAX_ENTRIES = 2048
_MAX_SOURCE_BYTES = 256 * 1024
_ERROR_TAIL = 3000

# The programs Manim runs to turn LaTeX into SVG (MathTex, Tex, axis numbers). Providing them
# is the deployment's job: a render that finds one missing fails by our fault, not the script's.
RENDER_TOOLS = ("latex", "dvisvgm")


def find_tools() -> dict[str, bool]:
    """Which of the render tools are on this process's PATH (its compilers inherit it)."""
    return {tool: shutil.which(tool) is not None for tool in RENDER_TOOLS}


def missing_tool(request: dict[str, Any]) -> str | None:
    """The first render tool that compiling `request` would run and that is not on PATH.

    Checked before compiling: once a tool has failed to start, its error reads like any other
    LaTeX failure, which is the script's.
    """
    needed = [*request["compilers"], "dvisvgm"]
    return next((tool for tool in needed if tool in RENDER_TOOLS and shutil.which(tool) is None), None)


def _key(request: dict[str, Any]) -> str:
    material = json.dumps([request["source"], request["compilers"], request["format"]])
    return hashlib.sha256(material.encode()).hexdigest()


class TexCache:
    """The worker's compiled formulas, by source, compiler and output format."""

    def __init__(self, work_dir: Path, max_entries: int = _MAX_ENTRIES) -> None:
        self._work_dir = work_dir
        self._entries: OrderedDict[str, str] = OrderedDict()
        self._max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def answer(self, request: dict[str, Any], deadline: float) -> dict[str, Any]:
        """The SVG for a job's request, from memory or compiled now with the job frozen; an
        answer naming `missingTool` says the worker lacks a render tool the request needs."""
        if not _valid(request):
            return {"error": "malformed LaTeX request"}
        key = _key(request)
        if key in self._entries:
            self.hits += 1
            self._entries.move_to_end(key)
            return {"svg": self._entries[key]}
        tool = missing_tool(request)
        if tool is not None:
            return {"error": f"{tool} is not installed on the render worker", "missingTool": tool}
        self.misses += 1
        frozen = _freeze_descendants()
        try:
            answer = self._compile(request, deadline)
        finally:
            signal_all(frozen, signal.SIGCONT)
        if "svg" in answer:
            self._entries[key] = answer["svg"]
            if len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return answer

    def _compile(self, request: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Compile in a forked, limited process; its output comes back through a pipe."""
        self._work_dir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="tex-", dir=self._work_dir))
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the forked compiler
            os.close(reader)
            _compile_in_child(request, folder, writer, deadline)
        os.close(writer)
        try:
            return _collect(pid, reader, deadline)
        finally:
            os.close(reader)
            # Only the compiler's own process group (it called setsid): the job's processes,
            # frozen or exited and waiting to be reaped with their status, are the worker's.
            for kill in (os.killpg, os.kill):  # the group, and the compiler if it had none yet
                try:
                    kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            os.waitpid(pid, 0)
            remove_tree(folder)


def _valid(request: dict[str, Any]) -> bool:
    return (
        isinstance(request.get("source"), str)
        and len(request["source"].encode()) <= _MAX_SOURCE_BYTES
        and isinstance(request.get("compilers"), list)
        and all(isinstance(name, str) for name in request["compilers"])
        and request.get("format") in (".dvi", ".xdv", ".pdf")
    )


def _freeze_descendants() -> list[int]:
    """Stop the job and every process it started (all of them are the worker's descendants,
    orphans included, since the worker is a subreaper), so none can touch the compiler's files."""
    frozen: list[int] = []
    while True:
        running = [pid for pid in descendants(os.getpid()) if pid not in frozen]
        if not running:
            return frozen
        signal_all(running, signal.SIGSTOP)
        frozen.extend(running)


def _collect(pid: int, reader: int, deadline: float) -> dict[str, Any]:
    """Read the compiler's answer until it exits or the job's time is up."""
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return {"error": "LaTeX did not finish within the render's time limit", "timeout": True}
        ready, _, _ = select.select([reader], [], [], remaining)
        if not ready:
            continue
        data = os.read(reader, 1 << 16)
        if not data:
            break
        chunks.append(data)
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return {"error": "LaTeX compilation failed"}


def _compile_in_child(request: dict[str, Any], folder: Path, writer: int, deadline: float) -> None:
    """In the forked compiler: write the source, run Manim's LaTeX steps, send the SVG."""
    try:
        os.setsid()
        die_with_parent()
        os.chdir(folder)
        env = clean_environment(folder)
        os.environ.clear()
        os.environ.update(env)
        log = os.open(folder / "compile.log", os.O_WRONLY | os.O_CREAT, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        apply_limits(replace(RenderLimits(), timeout_seconds=max(1.0, deadline - time.monotonic())))
        from manim import config
        from manim.utils.tex_file_writing import compile_tex, convert_to_svg

        config.media_dir = str(folder)
        tex_dir = config.get_dir("tex_dir")
        tex_dir.mkdir(parents=True, exist_ok=True)
        tex_file = tex_dir / "formula.tex"
        tex_file.write_text(request["source"], encoding="utf-8")
        compilers = request["compilers"]
        dvi = compile_tex(tex_file, compilers[0] if len(compilers) == 1 else compilers, request["format"])
        answer = {"svg": convert_to_svg(dvi, request["format"]).read_text(encoding="utf-8")}
    except BaseException as error:  # noqa: BLE001 - every failure is reported, none escapes
        details = ""
        try:
            details = strip_ansi((folder / "compile.log").read_text(errors="replace"))[-_ERROR_TAIL:]
        except OSError:
            pass
        answer = {"error": f"{error}\n{details}".strip()}
    with os.fdopen(writer, "wb") as out:
        out.write(json.dumps(answer).encode())
    os._exit(0)


class TexChannel:
    """The job's side of its connection to the worker: LaTeX requests (answered), progress
    and the final report (not answered). Safe to use from several threads."""

    def __init__(self, connection: socket.socket) -> None:
        self._connection = connection
        self._reader = connection.makefile("rb")
        self._sending = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        with self._sending:
            self._connection.sendall(json.dumps(message).encode() + b"\n")

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self.send(message)
        line = self._reader.readline()
        if not line:
            raise RuntimeError("the render worker closed the LaTeX channel")
        return json.loads(line)


def install_tex_client(channel: TexChannel) -> None:
    """Route Manim's `tex_to_svg_file` through the worker, keeping its signature and results."""
    from manim import config
    from manim.mobject.text import tex_mobject
    from manim.utils.tex import TexTemplate
    from manim.utils.tex_file_writing import tex_hash

    def tex_to_svg_file(expression: str, environment: str | None = None, tex_template: TexTemplate | None = None) -> Path:
        template = tex_template or config["tex_template"]
        if environment is not None:
            source = template.get_texcode_for_expression_in_env(expression, environment)
        else:
            source = template.get_texcode_for_expression(expression)
        compilers = template.tex_compiler
        answer = channel.request(
            {
                "tex": {
                    "source": source,
                    "compilers": [compilers] if isinstance(compilers, str) else list(compilers),
                    "format": template.output_format,
                }
            }
        )
        if "svg" not in answer:
            raise ValueError(f"LaTeX could not compile {expression!r}: {answer.get('error', 'unknown error')}")
        tex_dir = config.get_dir("tex_dir")
        tex_dir.mkdir(parents=True, exist_ok=True)
        svg_file = tex_dir / f"{tex_hash(source)}.svg"
        svg_file.write_text(answer["svg"], encoding="utf-8")
        return svg_file

    tex_mobject.tex_to_svg_file = tex_to_svg_file
