"""Chunked renders by a render/ with a defect, to show that the exactness tests catch it:
`jump` applies the fast reach everywhere (`must_step` always false); `whole-files` encodes each
animation as one file, as Manim does (no segments, render.segments).

The worker is a separate process that imports render/ from its own path, so the defect goes
into a copy of render/ that the worker runs (`reckless_copy`); this module, run with that copy
first on `PYTHONPATH`, renders each scene whole and in chunks and prints the worst frame's PSNR.
CHUNKS is a number of chunks for the split to make, or `inside` for a range from each segment
boundary inside an animation to the next.

    python -m tests.support.reckless CHUNKS SCENE_NAME...
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


# Each defect: the module it goes into, and what is appended to it (redefining a function).
DEFECTS = {
    "jump": ("reach.py", "\n\ndef must_step(scene: Any) -> bool:\n    return False\n"),
    "whole-files": ("segments.py", "\n\ndef encode_in_segments(writer: Any, frames: int) -> None:\n    return None\n"),
}


def reckless_copy(folder: Path, defect: str = "jump") -> Path:
    """A copy of render/ under `folder` with `defect` (one of DEFECTS)."""
    shutil.copytree(PROJECT / "render", folder / "render", ignore=shutil.ignore_patterns("__pycache__"))
    module, redefinition = DEFECTS[defect]
    with (folder / "render" / module).open("a") as changed:
        changed.write(redefinition)
    return folder


def main(chunks: str, names: list[str]) -> dict[str, float]:
    from render import Deadline, Position, RenderLimits, RenderSpec, WorkerClient, render
    from tests.support.chunk_scenes import SCENES
    from tests.support.video import decode, psnr

    assert Path(__file__).parents[2] != Path(sys.modules["render"].__file__ or "").parents[1], "not the reckless copy"
    worst: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="reckless-") as work:
        worker = WorkerClient(Path(work))
        try:
            for name in names:
                code, scene = SCENES[name]
                spec = RenderSpec(code, "-ql", RenderLimits(), Deadline.after(120), scene=scene)
                with render(worker, spec) as video:
                    whole = decode(video.path)
                if chunks != "inside":
                    with render(worker, spec, chunks=int(chunks)) as video:
                        chunked = decode(video.path)
                else:
                    limits, deadline = RenderLimits(), Deadline.after(120)
                    plan = worker.plan(code, scratch=Path(work), scene=scene, quality="-ql", limits=limits, deadline=deadline)
                    assert plan.segment is not None
                    inside = [Position(k, j) for k, n in enumerate(plan.frames) for j in range(plan.segment, n, plan.segment)]
                    ranges = list(itertools.pairwise([Position(0), *inside, Position(len(plan.frames))]))
                    with worker.render(code, scene=scene, quality="-ql", limits=limits, deadline=deadline, ranges=ranges) as made:
                        chunked = decode(made.path)
                pairs = zip(whole.frames, chunked.frames, strict=True)
                worst[name] = min(psnr(a, b) for a, b in pairs) if len(whole.frames) == len(chunked.frames) else 0.0
        finally:
            worker.close()
    return worst


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2:])))
