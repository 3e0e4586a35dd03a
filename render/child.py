"""The render process: runs the user's script through Manim's Python API and reports.

Started by `render.job` with the job spec on stdin. It writes one JSON report to the spec's
`result` path: `{"video": path}` or `{"error": {...}}` with the exception type, the line in
the user's script and a traceback trimmed to the frames that help fix the script.
"""

from __future__ import annotations

import json
import sys
import sysconfig
import traceback
import types
from pathlib import Path
from typing import Any

from render.errors import strip_ansi

_MAX_TEXT = 4000


def _frame_label(filename: str, script: str) -> str:
    """Show the script as `scene.py` and library files relative to site-packages."""
    if filename == script:
        return "scene.py"
    for root in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], sysconfig.get_paths()["stdlib"]}:
        if filename.startswith(root + "/"):
            return filename[len(root) + 1 :]
    return Path(filename).name


def describe_exception(error: BaseException, script: str) -> dict[str, Any]:
    """The error's type, its line in the user's script, and a clean traceback.

    Frames of the script are kept, plus the frame that raised when it lies in a library
    (it says what the library objected to); our frames and Manim's internals are dropped.
    """
    frames = traceback.extract_tb(error.__traceback__)
    kept = [frame for frame in frames if frame.filename == script]
    if frames and frames[-1].filename != script:
        kept.append(frames[-1])
    shown = traceback.StackSummary.from_list(
        [(_frame_label(f.filename, script), f.lineno, f.name, f.line) for f in kept]
    )
    user_lines = [frame.lineno for frame in frames if frame.filename == script]
    if isinstance(error, SyntaxError) and error.filename == script:
        error.filename = "scene.py"
        user_lines.append(error.lineno)
    summary = "".join(traceback.format_exception_only(type(error), error)).strip()
    text = "Traceback (most recent call last):\n" + "".join(shown.format()) + summary
    return {
        "type": type(error).__name__,
        "message": strip_ansi(summary)[-_MAX_TEXT:],
        "line": user_lines[-1] if user_lines else None,
        "traceback": strip_ansi(text)[-_MAX_TEXT:],
    }


def _apply_job_config(config: Any, spec: dict[str, Any]) -> None:
    """Settings the job needs whatever the script sets: output inside the job, no extras."""
    config.media_dir = spec["media_dir"]
    config.disable_caching = True  # a job renders once; Manim's partial-movie cache only costs
    config.write_to_movie = True
    config.save_last_frame = False
    config.format = "mp4"
    config.preview = False
    config.progress_bar = "none"
    config.notify_outdated_version = False


def render_scene(spec: dict[str, Any]) -> str:
    """Execute the script as module `scene`, render the chosen scene, return the video path."""
    from manim import config, tempconfig

    script = spec["script"]
    code = Path(script).read_text(encoding="utf-8")
    with tempconfig({"quality": spec["quality"], "verbosity": "WARNING"}):
        _apply_job_config(config, spec)
        config.input_file = script
        module = types.ModuleType("scene")
        module.__file__ = script
        sys.modules["scene"] = module
        exec(compile(code, script, "exec"), module.__dict__)
        _apply_job_config(config, spec)  # the script may have moved the output elsewhere
        scene = module.__dict__[spec["scene"]]()
        scene.render()
        return str(scene.renderer.file_writer.movie_file_path)


def main() -> None:
    spec = json.load(sys.stdin)
    try:
        report: dict[str, Any] = {"video": render_scene(spec)}
    except BaseException as error:  # noqa: BLE001 - SystemExit from a script is its error too
        report = {"error": describe_exception(error, spec["script"])}
    Path(spec["result"]).write_text(json.dumps(report), encoding="utf-8")


if __name__ == "__main__":
    main()
