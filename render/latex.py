"""LaTeX for scenes, compiled by the worker and reused across tasks, never written by a script.

LaTeX is the slowest part of many scenes (every MathTex, every axis number), so its results
are worth keeping between tasks. But a part runs hostile code under the same uid as the worker:
any file the worker could keep, the part could overwrite. So the cache lives in the memory of
a process of its own, the LaTeX service, forked from the worker before any task: parts are
forked from the worker, so they must inherit nothing of earlier requests, and the service is
non-dumpable, closed to them. It compiles each new formula in a contained process while the
worker keeps the part that asked frozen. A part only ever receives SVG text over its channel.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import NoReturn

from render.errors import strip_ansi
from render.limits import Deadline, RenderLimits
from render.messages import MAX_TEX_SOURCE, TEX_ANSWER, TEX_JOB, Channel, TexAnswer, TexRequest, TexResult
from render.sandbox import apply_limits, clean_environment, die_with_parent, make_non_dumpable, own_folder, remove_tree

_MAX_ENTRIES = 2048
# A compiled formula larger than this is answered but not kept; the cache keeps at most the total.
_MAX_ENTRY_BYTES = 1024 * 1024
_MAX_CACHE_BYTES = 64 * 1024 * 1024
_ERROR_TAIL = 3000
# The largest compiled formula passed back (from the compiler to the worker, and to a part).
TEX_ANSWER_LIMIT = 16 * 1024 * 1024

# The programs Manim runs to turn LaTeX into SVG (MathTex, Tex, axis numbers). Providing them
# is the deployment's job: a render that finds one missing fails by our fault, not the script's.
RENDER_TOOLS = ("latex", "dvisvgm")


def find_tools() -> dict[str, bool]:
    """Which of the render tools are on this process's PATH (its compilers inherit it)."""
    return {tool: shutil.which(tool) is not None for tool in RENDER_TOOLS}


def missing_tool(request: TexRequest) -> str | None:
    """The first render tool that compiling `request` would run and that is not on PATH.

    Checked before compiling: once a tool has failed to start, its error reads like any other
    LaTeX failure, which is the script's.
    """
    needed = [*request.compilers, "dvisvgm"]
    return next((tool for tool in needed if tool in RENDER_TOOLS and shutil.which(tool) is None), None)


def _key(request: TexRequest) -> str:
    material = json.dumps([request.source, request.compilers, request.format])
    return hashlib.sha256(material.encode()).hexdigest()


class TexCache:
    """Compiled formulas, by source, compiler and output format: at most `max_entries`, none
    over _MAX_ENTRY_BYTES, _MAX_CACHE_BYTES in all, the least recently used going first."""

    def __init__(self, work_dir: Path, max_entries: int = _MAX_ENTRIES) -> None:
        self._work_dir = work_dir
        self._entries: OrderedDict[str, str] = OrderedDict()
        self._max_entries = max_entries
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def answer(self, request: TexRequest, deadline: float, compile_now: bool) -> TexResult:
        """The SVG for a part's request, from memory or (with `compile_now`) compiled now; and
        the render tool the request needs that is missing, if any. A miss without
        `compile_now` answers `compile_needed`: the worker freezes the part, then asks again."""
        key = _key(request)
        if key in self._entries:
            self.hits += 1
            self._entries.move_to_end(key)
            return self._result(TexAnswer(svg=self._entries[key]))
        tool = missing_tool(request)
        if tool is not None:
            return self._result(TexAnswer(error=f"{tool} is not installed on the render worker"), tool)
        if not compile_now:
            return TexResult(answer=TexAnswer(), compile_needed=True, hits=self.hits, misses=self.misses)
        self.misses += 1
        answer = self._compile(request, deadline)
        if answer.svg is not None and len(answer.svg) <= _MAX_ENTRY_BYTES:
            self._entries[key] = answer.svg
            self._bytes += len(answer.svg)
            while len(self._entries) > self._max_entries or self._bytes > _MAX_CACHE_BYTES:
                self._bytes -= len(self._entries.popitem(last=False)[1])
        return self._result(answer)

    def _result(self, answer: TexAnswer, missing: str | None = None) -> TexResult:
        return TexResult(answer=answer, missing_tool=missing, hits=self.hits, misses=self.misses)

    def _compile(self, request: TexRequest, deadline: float) -> TexAnswer:
        """Compile in a forked, limited process; its answer comes back through a pipe."""
        folder = Path(tempfile.mkdtemp(prefix="tex-", dir=own_folder(self._work_dir)))
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the forked compiler
            os.close(reader)
            _compile_in_child(request, folder, writer, deadline)
        os.close(writer)
        answers = Channel(reader, None, limit=TEX_ANSWER_LIMIT)
        try:
            answer = answers.receive(TEX_ANSWER, deadline)
        except Exception:  # noqa: BLE001 - a broken answer is a failed compile
            answer = None
        finally:
            answers.close()
            # Only the compiler's own process group (it called setsid): the part's processes,
            # frozen or exited and waiting to be reaped with their status, are the worker's.
            for kill in (os.killpg, os.kill):  # the group, and the compiler if it had none yet
                try:
                    kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            os.waitpid(pid, 0)
            remove_tree(folder)
        if answer is None and time.monotonic() >= deadline:
            return TexAnswer(error="LaTeX did not finish within the render's time limit")
        return answer or TexAnswer(error="LaTeX compilation failed")


def _compile_in_child(request: TexRequest, folder: Path, writer: int, deadline: float) -> NoReturn:
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
        apply_limits(RenderLimits(), Deadline(deadline).seconds_left())
        from manim import config
        from manim.utils.tex_file_writing import compile_tex, convert_to_svg

        config.media_dir = str(folder)
        tex_dir = config.get_dir("tex_dir")
        tex_dir.mkdir(parents=True, exist_ok=True)
        tex_file = tex_dir / "formula.tex"
        tex_file.write_text(request.source, encoding="utf-8")
        compilers = request.compilers
        dvi = compile_tex(tex_file, compilers[0] if len(compilers) == 1 else compilers, request.format)
        answer = TexAnswer(svg=convert_to_svg(dvi, request.format).read_text(encoding="utf-8"))
    except BaseException as error:  # noqa: BLE001 - every failure is reported, none escapes
        details = ""
        try:
            details = strip_ansi((folder / "compile.log").read_text(errors="replace"))[-_ERROR_TAIL:]
        except OSError:
            pass
        answer = TexAnswer(error=f"{error}\n{details}".strip())
    try:
        Channel(None, writer, limit=TEX_ANSWER_LIMIT).send(answer)
    finally:
        os._exit(0)


def install_tex_client(channel: Channel) -> None:
    """In a part: route Manim's `tex_to_svg_file` through the worker, keeping its signature
    and results."""
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
        channel.send(
            TexRequest(
                source=source,
                compilers=[compilers] if isinstance(compilers, str) else list(compilers),
                format=template.output_format,
            )
        )
        answer = channel.receive(TEX_ANSWER)
        if answer is None:
            raise RuntimeError("the render worker closed the LaTeX channel")
        if answer.svg is None:
            raise ValueError(f"LaTeX could not compile {expression!r}: {answer.error or 'unknown error'}")
        tex_dir = config.get_dir("tex_dir")
        tex_dir.mkdir(parents=True, exist_ok=True)
        svg_file = tex_dir / f"{tex_hash(source)}.svg"
        svg_file.write_text(answer.svg, encoding="utf-8")
        return svg_file

    tex_mobject.tex_to_svg_file = tex_to_svg_file


def start_tex_service(work_dir: Path) -> tuple[int, Channel]:
    """Fork the LaTeX service (call before any task); its pid, and the worker's channel to it."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the service
        ours.close()
        _serve(TexCache(work_dir), theirs.detach())
    theirs.close()
    connection = ours.detach()
    return pid, Channel(connection, connection, limit=TEX_ANSWER_LIMIT + MAX_TEX_SOURCE)


def _serve(cache: TexCache, connection: int) -> NoReturn:
    """The service's loop: answer each request until the worker goes."""
    try:
        die_with_parent()
        make_non_dumpable()
        channel = Channel(connection, connection, limit=MAX_TEX_SOURCE * 2)
        while (job := channel.receive(TEX_JOB)) is not None:
            channel.send(cache.answer(job.request, time.monotonic() + job.timeout_seconds, job.compile_now))
    finally:
        os._exit(0)
