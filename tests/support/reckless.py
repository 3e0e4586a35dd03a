"""Chunked renders with the fast reach applied everywhere (`must_step` always false), to show
that the exactness tests catch a jump where a chunk must step.

The worker is a separate process that imports render/ from its own path, so the defect goes
into a copy of render/ that the worker runs (`reckless_copy`); this module, run with that copy
first on `PYTHONPATH`, renders each scene whole and in chunks and prints the worst frame's PSNR.

    python -m tests.support.reckless CHUNKS SCENE_NAME...
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def reckless_copy(folder: Path) -> Path:
    """A copy of render/ under `folder` whose `must_step` always allows a jump."""
    shutil.copytree(PROJECT / "render", folder / "render", ignore=shutil.ignore_patterns("__pycache__"))
    with (folder / "render" / "reach.py").open("a") as reach:
        reach.write("\n\ndef must_step(scene: Any) -> bool:\n    return False\n")
    return folder


def main(chunks: int, names: list[str]) -> dict[str, float]:
    from render import Deadline, RenderLimits, RenderSpec, WorkerClient, render
    from tests.support.chunk_scenes import SCENES
    from tests.support.video import decode, psnr

    assert "return False" in Path(sys.modules["render.reach"].__file__ or "").read_text(), "not the reckless copy"
    worst: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="reckless-") as work:
        worker = WorkerClient(Path(work))
        try:
            for name in names:
                code, scene = SCENES[name]
                spec = RenderSpec(code, "-ql", RenderLimits(), Deadline.after(120), scene=scene)
                with render(worker, spec) as video:
                    whole = decode(video.path)
                with render(worker, spec, chunks=chunks) as video:
                    chunked = decode(video.path)
                pairs = zip(whole.frames, chunked.frames, strict=True)
                worst[name] = min(psnr(a, b) for a, b in pairs) if len(whole.frames) == len(chunked.frames) else 0.0
        finally:
            worker.close()
    return worst


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), sys.argv[2:])))
