"""Render one scene in a job folder of its own, in a separate process, within a time limit.

The parent side of a render: it prepares the folder, starts `render.child`, enforces the
time limit from outside, turns the child's report into a video or a RenderError, and
removes the folder and every process the job started, whatever happened.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from render.errors import RendererFailed, RenderTimeout, ScriptError, strip_ansi
from render.scenes import choose_scene

# The seed's quality flags and the Manim quality each one names.
QUALITY_FLAGS: dict[str, str] = {
    "-ql": "low_quality",
    "-qm": "medium_quality",
    "-qh": "high_quality",
    "-qp": "production_quality",
    "-qk": "fourk_quality",
}

SCRIPT_NAME = "scene.py"
# Only these variables reach the render process: it gets no credentials and none of our settings.
_INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "FONTCONFIG_PATH", "FONTCONFIG_FILE")
_INHERITED_PREFIXES = ("TEXMF",)
_OUTPUT_TAIL_BYTES = 4000


@dataclass(frozen=True)
class RenderedVideo:
    """A finished video, valid until the `render_video` block that made it ends."""

    path: Path
    scene_name: str
    quality: str
    render_seconds: float


@contextmanager
def render_video(
    code: str,
    *,
    quality: str,
    work_dir: Path,
    timeout_seconds: float,
    scene_name: str | None = None,
) -> Iterator[RenderedVideo]:
    """Render `code`'s scene and yield the video; the job folder is removed when the block ends.

    Raises ScriptError for a script that cannot render, RenderTimeout past the time limit,
    and RendererFailed when the render process dies without a report.
    """
    if quality not in QUALITY_FLAGS:
        raise ValueError(f"unknown quality flag {quality!r}")
    scene = choose_scene(code, scene_name)
    work_dir.mkdir(parents=True, exist_ok=True)
    job_root = Path(tempfile.mkdtemp(prefix="job-", dir=work_dir))
    try:
        started = time.monotonic()
        video_path = _run_child(job_root, code, scene, QUALITY_FLAGS[quality], timeout_seconds)
        yield RenderedVideo(video_path, scene, quality, time.monotonic() - started)
    finally:
        shutil.rmtree(job_root, ignore_errors=True)


def _child_env(home: Path) -> dict[str, str]:
    """A minimal environment: HOME and TMPDIR in the job, nothing of ours."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key in _INHERITED_ENV or key.startswith(_INHERITED_PREFIXES)
    }
    env.update(
        HOME=str(home),
        TMPDIR=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        MPLCONFIGDIR=str(home / ".cache"),
        PYTHONPATH=str(Path(__file__).resolve().parent.parent),
        PYTHONDONTWRITEBYTECODE="1",
        NO_COLOR="1",
        TERM="dumb",
        COLUMNS="160",
    )
    return env


def _run_child(job_root: Path, code: str, scene: str, quality: str, timeout_seconds: float) -> Path:
    """Run `render.child` on the job and return the video path it reports."""
    workspace = job_root / "work"
    workspace.mkdir()
    script = workspace / SCRIPT_NAME
    script.write_text(code, encoding="utf-8")
    result_path = job_root / "result.json"
    spec = {
        "script": str(script),
        "scene": scene,
        "quality": quality,
        "media_dir": str(workspace / "media"),
        "result": str(result_path),
    }
    with tempfile.TemporaryFile(dir=job_root) as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "render.child"],
            stdin=subprocess.PIPE,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=workspace,
            env=_child_env(workspace),
            start_new_session=True,  # its own process group, so the whole job can be killed
        )
        try:
            process.communicate(json.dumps(spec).encode(), timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            raise RenderTimeout(timeout_seconds) from None
        finally:
            _kill_group(process)
        output_tail = _tail(output)
    return _read_result(result_path, workspace, process.returncode, output_tail)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the render process and everything it started in its group, then reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _tail(output: "tempfile._TemporaryFileWrapper[bytes]") -> str:
    """The last few KB of what the render printed, readable outside a terminal."""
    output.seek(0, os.SEEK_END)
    output.seek(max(0, output.tell() - _OUTPUT_TAIL_BYTES))
    return strip_ansi(output.read().decode("utf-8", "replace"))


def _read_result(result_path: Path, workspace: Path, returncode: int, output_tail: str) -> Path:
    """Turn the child's report into the video path, or raise the error it describes."""
    try:
        result = json.loads(result_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        if returncode >= 0:
            raise ScriptError(
                f"The script ended the render process (exit code {returncode}) before the scene finished.",
                error_type="ProcessExited",
            ) from None
        raise RendererFailed(
            f"The render process was killed by signal {-returncode} before it finished.",
            output_tail,
        ) from None
    if "error" in result:
        error = result["error"]
        raise ScriptError(
            error["message"],
            error_type=error["type"],
            line=error.get("line"),
            traceback=error.get("traceback"),
        )
    video = Path(result["video"]).resolve()
    if not video.is_file() or not video.is_relative_to(workspace.resolve()):
        raise RendererFailed("The render finished without writing a video.", output_tail)
    return video
