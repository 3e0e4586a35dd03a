"""Inside one part of a task (a process forked by the worker): run the user's script through
Manim's Python API, or join pieces, and report.

The report (render.messages.PartReport) is `VideoMade` (also for a join of chunks),
`PlanMade` for a planning pass, `LimitHit` when the script ran into one of its resource limits,
or `ScriptFailed` with the exception type, the line in the user's script and a traceback
trimmed to the frames that help fix the script.
"""

from __future__ import annotations

import errno
import os
import random
import sys
import sysconfig
import tempfile
import threading
import time
import traceback
import types
from pathlib import Path
from typing import Any, NoReturn

from render.errors import strip_ansi
from render.latex import TEX_ANSWER_LIMIT, install_tex_client
from render.messages import (
    MAX_TEXT,
    Channel,
    FramePart,
    JoinPart,
    LimitHit,
    LimitName,
    Output,
    Part,
    PartReport,
    PlanMade,
    PlanPart,
    Progress,
    RangePart,
    ScriptFailed,
    Task,
    VideoMade,
    WholePart,
)
from render.sandbox import apply_limits, clean_environment, die_with_parent, forbid_new_privileges

SCRIPT_NAME = "scene.py"

_PROGRESS_SECONDS = 0.5
_OUR_CODE = str(Path(__file__).resolve().parent) + "/"


def _frame_label(filename: str, script: str) -> str:
    """Show the script as `scene.py` and library files relative to site-packages."""
    if filename == script:
        return "scene.py"
    for root in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], sysconfig.get_paths()["stdlib"]}:
        if filename.startswith(root + "/"):
            return filename[len(root) + 1 :]
    return Path(filename).name


def describe_exception(error: BaseException, script: str) -> ScriptFailed:
    """The error's type, its line in the user's script, and a clean traceback.

    Frames of the script are kept, plus the frame that raised when it lies in a library
    (it says what the library objected to); our frames and Manim's internals are dropped.
    """
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith(_OUR_CODE)]
    kept = [frame for frame in frames if frame.filename == script]
    if frames and frames[-1].filename != script:
        kept.append(frames[-1])
    shown = traceback.StackSummary.from_list(
        [traceback.FrameSummary(_frame_label(f.filename, script), f.lineno, f.name, line=f.line) for f in kept]
    )
    user_lines = [frame.lineno for frame in frames if frame.filename == script]
    if isinstance(error, SyntaxError) and error.filename == script:
        error.filename = "scene.py"
        user_lines.append(error.lineno)
    summary = "".join(traceback.format_exception_only(type(error), error)).strip()
    text = "Traceback (most recent call last):\n" + "".join(shown.format()) + summary
    return ScriptFailed(
        type=type(error).__name__[:200],
        message=strip_ansi(summary)[-MAX_TEXT:],
        line=user_lines[-1] if user_lines else None,
        traceback=strip_ansi(text)[-MAX_TEXT:],
    )


def _apply_part_config(config: Any, media_dir: str, siblings: int, whole: bool, output: Output) -> None:
    """Settings the part needs whatever the script sets: output inside its folder, in the
    format, size, frame rate and background asked for, no extras.

    Without a format, a whole render (or its plan) asks for MP4 as the CLI does by default
    ("auto"): a scene without animation then writes its last frame as a PNG. A chunk's range
    is MP4 then. A PNG format is the last frame, as the CLI's `-s`."""
    config.media_dir = media_dir
    config.disable_caching = True  # a part renders once; Manim's partial-movie cache only costs
    config.save_last_frame = False
    config.format = output.format or ("auto" if whole else "mp4")
    config.transparent = output.transparent
    if output.width is not None and output.height is not None:
        config.pixel_width, config.pixel_height = output.width, output.height
    if output.fps is not None:
        config.frame_rate = output.fps
    if output.background is not None:
        config.background_color = output.background
    config.preview = False
    config.progress_bar = "none"
    config.notify_outdated_version = False
    # Encode one animation's segment while the next renders, as far as this part's share of
    # the cores allows (the parts of a chunked task render side by side).
    config.max_inflight_encoders = max(1, min(4, (os.cpu_count() or 1) // siblings))


# Every render seeds Python's and NumPy's generators alike, so random colours and positions
# are the same in a whole render and in each of its chunks (and in a re-render).
RANDOM_SEED = 0


def render_scene(
    script: str, task: Task, part: Part, index: int, reporter: _ProgressReporter
) -> PartReport:
    """Execute the script as module `scene` and render the chosen scene, or the part of it
    that `part` names: all of it, a plan (frame counts and soundtrack), or a range of
    animations."""
    import numpy
    from manim import config, tempconfig

    from render.chunks import limit_to_frame, limit_to_range, plan_scene
    from render.segments import encode_in_segments, segment_frames

    code = Path(script).read_text(encoding="utf-8")
    # Parts of one task render side by side: each keeps its own media folder.
    media_dir = str(Path(script).parent / (f"media-{index}" if isinstance(part, RangePart) else "media"))
    scene_name, parts, output = task.scene, len(task.parts), task.output
    with tempconfig({"quality": task.quality, "verbosity": "WARNING", "seed": RANDOM_SEED}):

        whole = isinstance(part, WholePart | PlanPart)

        def new_scene() -> Any:
            _apply_part_config(config, media_dir, parts, whole, output)
            config.input_file = script
            random.seed(RANDOM_SEED)
            numpy.random.seed(RANDOM_SEED)
            module = types.ModuleType("scene")
            module.__file__ = script
            sys.modules["scene"] = module
            exec(compile(code, script, "exec"), module.__dict__)
            _apply_part_config(config, media_dir, parts, whole, output)  # the script may have moved it
            return module.__dict__[scene_name]()

        if isinstance(part, PlanPart):
            Path(media_dir).mkdir(parents=True, exist_ok=True)
            soundtrack = Path(media_dir) / "soundtrack.aac"
            try:
                plan = plan_scene(new_scene(), soundtrack, quick=not part.thorough)
            except Exception:
                if part.thorough:
                    raise
                plan = plan_scene(new_scene(), soundtrack, quick=False)
            soundtrack_made = plan.soundtrack and str(plan.soundtrack)
            return PlanMade(animations=plan.animations, pixels=plan.pixels, segment=plan.segment, soundtrack=soundtrack_made)
        scene = new_scene()
        segment = segment_frames(config.frame_rate, config.format)
        if isinstance(part, WholePart | RangePart) and segment is not None:  # a range's files are then the whole's
            encode_in_segments(scene.renderer.file_writer, segment)
        if isinstance(part, RangePart):
            config.output_file = f"part-{index:05d}"
            limit_to_range(scene, part.start, part.end)
        if isinstance(part, FramePart):
            limit_to_frame(scene, part.frame)
        reporter.scene = scene
        reporter.start()
        scene.render()
        writer = scene.renderer.file_writer
        path = Path(getattr(writer, "final_file_path", None) or writer.movie_file_path)
        return VideoMade(path=str(path), frames=_frames_made(scene.renderer, path, config.frame_rate))


def _frames_made(renderer: Any, path: Path, frame_rate: float) -> int:
    """The frames a part wrote: one for a still; otherwise as many as the clock advanced by
    while drawing (a chunk's from where its range began)."""
    if path.suffix == ".png":
        return 1
    drawn_from = getattr(renderer, "drawn_from", None)
    return round((renderer.time - (drawn_from[0] if drawn_from else 0.0)) * frame_rate)


# Exceptions that mean the script hit one of its rlimits rather than a bug of its own.
_LIMIT_ERRNOS: dict[int, LimitName] = {errno.EFBIG: "output", errno.EMFILE: "open_files", errno.EAGAIN: "processes"}


def limit_hit(error: BaseException) -> LimitName | None:
    """The name of the resource limit behind `error`, if it is one."""
    if isinstance(error, MemoryError):
        return "memory"
    if isinstance(error, OSError) and error.errno in _LIMIT_ERRNOS:
        return _LIMIT_ERRNOS[error.errno]
    return None


class _ProgressReporter(threading.Thread):
    """Sends the scene's progress to the worker twice a second while it renders."""

    def __init__(self, channel: Channel) -> None:
        super().__init__(daemon=True)
        self.channel = channel
        self.scene: Any = None

    def run(self) -> None:
        last: Progress | None = None
        while True:
            time.sleep(_PROGRESS_SECONDS)
            renderer = getattr(self.scene, "renderer", None)
            if renderer is None:
                continue
            from manim import config

            # A chunk counts only what it draws, not the animations it stepped through.
            drawn_from = getattr(renderer, "drawn_from", (0.0, 0))
            if drawn_from is None:
                continue
            start_time, start_play = drawn_from
            progress = Progress(
                animations=max(0, renderer.num_plays - start_play),
                frames=max(0, int((renderer.time - start_time) * config.frame_rate)),
            )
            if progress != last:
                self.channel.send(progress)
                last = progress


def join_pieces(workspace: Path, part: JoinPart) -> VideoMade:
    """Join the chunks' pieces into one video in the workspace, with the plan's soundtrack
    if there is one."""
    from render.chunks import join

    output = workspace / part.output
    join([Path(piece) for piece in part.pieces], output, Path(part.soundtrack) if part.soundtrack else None)
    return VideoMade(path=str(output))


def run(task: Task, part: Part, index: int, channel: Channel) -> PartReport:
    """Render the task's scene (or the part of it asked for), or join pieces; describe the
    video or plan, the limit hit, or the error."""
    script = str(Path(task.root) / "work" / SCRIPT_NAME)
    try:
        if isinstance(part, JoinPart):
            return join_pieces(Path(task.root) / "work", part)
        return render_scene(script, task, part, index, _ProgressReporter(channel))
    except BaseException as error:  # noqa: BLE001 - SystemExit from a script is its error too
        limit = limit_hit(error)
        if limit is not None:
            return LimitHit(limit=limit)
        return describe_exception(error, script)


def run_part(task: Task, part: Part, index: int, connection: int) -> NoReturn:
    """The forked part's whole life: contain this process, run, report on `connection` (the
    worker's socket), exit. It never returns into the worker's loop."""
    code = 70
    try:
        os.setsid()
        die_with_parent()
        forbid_new_privileges()
        root = Path(task.root)
        workspace = root / "work"
        output = os.open(root / f"output-{index}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.closerange(3, connection)
        os.closerange(connection + 1, 65536)
        os.chdir(workspace)
        env = clean_environment(workspace)
        os.environ.clear()
        os.environ.update(env)
        tempfile.tempdir = None  # read TMPDIR again
        apply_limits(task.limits, task.timeout_seconds)
        channel = Channel(connection, connection, limit=TEX_ANSWER_LIMIT)
        install_tex_client(channel)
        channel.send(run(task, part, index, channel))
        code = 0
    except BaseException:  # noqa: BLE001 - whatever happens, this process ends here
        pass
    finally:
        os._exit(code)
