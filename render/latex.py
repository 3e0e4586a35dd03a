"""LaTeX for scenes, compiled by the worker and reused across tasks, never written by a script.

LaTeX is the slowest part of many scenes (every MathTex, every axis number), so its results
are worth keeping between tasks. But a part runs hostile code under the same uid as the worker:
any file the worker could keep, the part could overwrite. So the cache lives in the worker's
memory (its process is non-dumpable, closed to the part), and the worker compiles each new
formula itself in a contained process while the part that asked is frozen. A part only ever
receives SVG text over its channel.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import NoReturn

from render.errors import strip_ansi
from render.limits import Deadline, RenderLimits
from render.messages import TEX_ANSWER, Channel, TexAnswer, TexRequest
from render.sandbox import apply_limits, clean_environment, descendants, die_with_parent, remove_tree, signal_all

_MAX_ENTRIES = 2048
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
    """The worker's compiled formulas, by source, compiler and output format."""

    def __init__(self, work_dir: Path, max_entries: int = _MAX_ENTRIES) -> None:
        self._work_dir = work_dir
        self._entries: OrderedDict[str, str] = OrderedDict()
        self._max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def answer(self, request: TexRequest, deadline: float) -> tuple[TexAnswer, str | None]:
        """The SVG for a part's request, from memory or compiled now with the part frozen;
        and the render tool the request needs that the worker lacks, if any."""
        key = _key(request)
        if key in self._entries:
            self.hits += 1
            self._entries.move_to_end(key)
            return TexAnswer(svg=self._entries[key]), None
        tool = missing_tool(request)
        if tool is not None:
            return TexAnswer(error=f"{tool} is not installed on the render worker"), tool
        self.misses += 1
        frozen = _freeze_descendants()
        try:
            answer = self._compile(request, deadline)
        finally:
            signal_all(frozen, signal.SIGCONT)
        if answer.svg is not None:
            self._entries[key] = answer.svg
            if len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return answer, None

    def _compile(self, request: TexRequest, deadline: float) -> TexAnswer:
        """Compile in a forked, limited process; its answer comes back through a pipe."""
        self._work_dir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="tex-", dir=self._work_dir))
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


def _freeze_descendants() -> list[int]:
    """Stop the part and every process it started (all of them are the worker's descendants,
    orphans included, since the worker is a subreaper), so none can touch the compiler's files."""
    frozen: list[int] = []
    while True:
        running = [pid for pid in descendants(os.getpid()) if pid not in frozen]
        if not running:
            return frozen
        signal_all(running, signal.SIGSTOP)
        frozen.extend(running)


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
