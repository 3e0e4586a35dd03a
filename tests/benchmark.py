"""`make bench`: the warm service against a fresh `manim render` process per request.

The baseline is what the seed did for each request: a new job folder, then the `manim`
CLI (`manim render -ql scene.py Scene`, with the PyPI version check silenced, which would
otherwise wait for the network). The service is `make serve`'s local server, called over
HTTP like a caller would, with the whole request timed (render and store). Also measured:
the cold start (init) of the function under the Lambda Runtime Interface Emulator.

    .venv/bin/python -m tests.benchmark [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from render import Deadline, RenderLimits, WorkerClient, choose_scene
from render.chunks import join, split
from tests.support.lambda_runtime import lambda_runtime
from tests.support.leftovers import created_by_functions, entries, remove
from tests.support.processes import free_ports
from tests.support.task_root import readable_tempdir, stage_task_root

PROJECT = Path(__file__).resolve().parent.parent

SHORT = """\
from manim import *


class Short(Scene):
    def construct(self):
        square = Square(color=BLUE, fill_opacity=0.5)
        self.play(Create(square))
        self.play(square.animate.rotate(PI / 4).scale(0.5))
"""

LATEX = r"""
from manim import *


class Plot(Scene):
    def construct(self):
        axes = Axes(x_range=[0, 5, 1], y_range=[0, 10, 2]).add_coordinates()
        graph = axes.plot(lambda x: x**2 / 2.5, color=YELLOW)
        formula = MathTex(r"f(x) = \frac{x^2}{2.5}").to_corner(UR)
        self.play(Create(axes), Write(formula))
        self.play(Create(graph))
"""

# Fifteen seconds of motion driven by time-based updaters: a scene for chunked rendering.
LONG = """\
from manim import *


class Long(Scene):
    def construct(self):
        plane = NumberPlane()
        dots = VGroup(*[Dot(color=random_color()).shift(RIGHT * (i - 5) * 0.6) for i in range(11)])
        for index, dot in enumerate(dots):
            dot.add_updater(lambda m, dt, k=index: m.shift(UP * np.sin(k + m.get_x()) * dt))
        self.add(plane, dots)
        for step in range(15):
            self.play(Rotate(plane, angle=0.05), dots.animate.set_color(random_color()), run_time=1)
"""

SCENES = {"short scene, no LaTeX": (SHORT, "Short", 0.40), "axes, numbers and a formula": (LATEX, "Plot", 0.50)}


def cli_seconds(code: str, scene: str) -> float:
    """One request the seed's way: a fresh folder and a fresh `manim render` process."""
    manim = Path(sys.executable).parent / "manim"
    with tempfile.TemporaryDirectory(prefix="seed-job-") as job:
        Path(job, "scene.py").write_text(code)
        started = time.perf_counter()
        subprocess.run(
            [str(manim), "render", "-ql", "--silent", "scene.py", scene],
            cwd=job,
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - started


def call(url: str, body: dict | None = None) -> tuple[float, dict]:
    """Seconds one HTTP request takes, and its JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=300) as response:
        answer = json.loads(response.read())
    return time.perf_counter() - started, answer


def post(url: str, body: dict) -> float:
    """Seconds one render request takes (the cache is bypassed unless `body` says otherwise)."""
    elapsed, answer = call(url, {"cache": False, **body})
    assert "s3Key" in answer, answer
    return elapsed


def chunk_figures(base: str, runs: int) -> None:
    """The 15-second scene rendered whole and in 2 chunks (plan and join included), and the
    measured costs the README's Lambda estimate is built from."""
    print(f"\n{'15 s scene':30} {'whole (s)':>10} {'2 chunks (s)':>13} {'plan (s)':>9} {'ratio':>6} {'goal':>6}")
    for quality in ("-ql", "-qm"):
        body = {"codeContent": LONG, "quality": quality, "cache": False}
        whole = statistics.median(post(f"{base}/api/render", body) for _ in range(runs))
        answers = [call(f"{base}/api/render", {**body, "chunks": 2}) for _ in range(runs)]
        assert all(answer["chunks"] == 2 for _, answer in answers)
        chunked = statistics.median(seconds for seconds, _ in answers)
        plan = statistics.median(answer["timings"]["planSeconds"] for _, answer in answers)
        ratio = chunked / whole
        verdict = "met" if ratio <= 0.75 else "MISSED"
        frames = 15 * {"-ql": 15, "-qm": 30}[quality]
        print(f"{quality:30} {whole:10.2f} {chunked:13.2f} {plan:9.2f} {ratio:6.2f} {0.75:6.2f} {verdict}")
        print(f"{'':30} {whole / frames * 1000:.1f} ms a frame whole; plan {plan / whole:.0%} of a whole render")


def _cpu_seconds(pid: int) -> float:
    """CPU time of a process and of the children it has reaped (the worker and its jobs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _timed(worker: WorkerClient, action: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the worker and its jobs) that `action` takes."""
    assert worker.pid is not None
    cpu, started = _cpu_seconds(worker.pid), time.perf_counter()
    action()
    return time.perf_counter() - started, _cpu_seconds(worker.pid) - cpu


def chunk_cost_figures(runs: int) -> None:
    """Where a chunked render's time goes, with the warm worker called directly: the whole
    render's CPU against its wall time (how many cores it already keeps busy), 2 chunks in
    parallel here, and each chunk alone, as each runs on Lambda in an environment of its own."""
    work = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    worker = WorkerClient(work)
    worker.start()
    scene = choose_scene(LONG)

    def options(quality: str) -> dict:
        return {"scene": scene, "quality": quality, "limits": RenderLimits(), "deadline": Deadline.after(600)}

    print(f"\n{'15 s scene, worker only':24} {'whole (s)':>10} {'cores':>6} {'2 here (s)':>11} {'each alone (s)':>15}"
          f" {'join (s)':>9} {'own envs (s)':>13} {'ratio':>6}")
    try:
        for quality in ("-ql", "-qm"):
            def render(ranges: list[tuple[int, int]] | None = None, keep: Path | None = None) -> None:
                with worker.render(LONG, ranges=ranges, **options(quality)) as path:
                    if keep is not None:
                        shutil.copyfile(path, keep)

            with tempfile.TemporaryDirectory(prefix="bench-chunks-") as folder:
                started = time.perf_counter()
                plan = worker.plan(LONG, scratch=Path(folder), **options(quality))
                plan_seconds = time.perf_counter() - started
                ranges = split(plan.frames, 2)
                whole = [_timed(worker, render) for _ in range(runs)]
                wall, cpu = statistics.median(w for w, _ in whole), statistics.median(c for _, c in whole)
                here = statistics.median(_timed(worker, lambda: render(ranges))[0] for _ in range(runs))
                pieces = [Path(folder) / f"{index}.mp4" for index in range(len(ranges))]
                alone = [
                    statistics.median(_timed(worker, lambda: render([piece_range], piece))[0] for _ in range(runs))
                    for piece_range, piece in zip(ranges, pieces, strict=True)
                ]
                started = time.perf_counter()
                join(pieces, Path(folder) / "joined.mp4")
                join_seconds = time.perf_counter() - started
            own = plan_seconds + max(alone) + join_seconds
            print(f"{quality:24} {wall:10.2f} {cpu / wall:6.2f} {here:11.2f} {' + '.join(f'{a:.2f}' for a in alone):>15}"
                  f" {join_seconds:9.2f} {own:13.2f} {own / wall:6.2f}")
    finally:
        worker.close()
        shutil.rmtree(work, ignore_errors=True)
    print("cores: CPU seconds per wall second of the whole render; own envs: plan + slowest chunk alone + join.")


def cache_and_status_figures(base: str, runs: int) -> None:
    """A cache hit's latency against a render's, and a status poll's latency."""
    render = {"codeContent": SHORT, "quality": "-ql"}
    rendering = statistics.median(post(f"{base}/api/render", render) for _ in range(runs))
    hits = [call(f"{base}/api/render", render) for _ in range(runs)]
    assert all(answer["cached"] for _, answer in hits)
    hit = statistics.median(seconds for seconds, _ in hits)
    _, accepted = call(f"{base}/api/render", {**render, "async": True})
    deadline = time.monotonic() + 60
    while call(accepted["statusUrl"])[1]["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.05)
    poll = statistics.median(call(accepted["statusUrl"])[0] for _ in range(runs * 4))
    print(f"\nShort scene through the local server (embedded store): render {rendering * 1000:.0f} ms,")
    print(f"cache hit {hit * 1000:.1f} ms ({rendering / hit:.0f}x faster), status poll {poll * 1000:.1f} ms.")


def start_server(port: int, work: Path) -> subprocess.Popen[bytes]:
    env = {key: value for key, value in os.environ.items() if key != "S3_BUCKET_NAME"}
    env.update(PORT=str(port), RENDER_WORK_DIR=str(work / "worker"), LOCAL_STORE_DIR=str(work / "store"))
    server = subprocess.Popen(
        [sys.executable, "-m", "handler.local", "serve"],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the local server did not start")


def cold_start_seconds() -> tuple[float, float]:
    """(first invoke, a warm invoke) of the health route under the RIE: their difference is
    the init, which starts the warm worker and imports Manim."""
    health = json.loads((PROJECT / "events/function-url-health.json").read_text())
    before = entries()
    try:
        return _first_and_warm(health)
    finally:  # what the function's user wrote in /tmp (X-Ray's marker at init) goes with it
        now = entries()
        remove(created_by_functions(before, now), now)


def _first_and_warm(health: dict) -> tuple[float, float]:
    with readable_tempdir("bench-task-") as dest, tempfile.TemporaryDirectory() as work:
        os.chmod(work, 0o777)
        root = stage_task_root(PROJECT, Path(dest))
        env = {"RENDER_WORK_DIR": f"{work}/worker", "LOCAL_STORE_DIR": f"{work}/store"}
        with lambda_runtime("handler.app.lambda_handler", root, env) as runtime:
            started = time.perf_counter()
            runtime.invoke(health)
            first = time.perf_counter() - started
            started = time.perf_counter()
            runtime.invoke(health)
            return first, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per scene and side (default 5)")
    runs = parser.parse_args().runs
    print(f"{os.cpu_count()} cores; {runs} timed runs per scene and side; medians; -ql\n")
    met = True
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    (port,) = free_ports(1)
    server = start_server(port, work)
    try:
        url = f"http://127.0.0.1:{port}/api/render"
        header = f"{'scene':30} {'CLI (s)':>8} {'service (s)':>12} {'first call (s)':>15} {'ratio':>6} {'goal':>6}"
        print(header)
        for label, (code, scene, goal) in SCENES.items():
            cli_seconds(code, scene)  # warm the OS caches for the CLI too
            cli = statistics.median(cli_seconds(code, scene) for _ in range(runs))
            first = post(url, {"codeContent": code, "quality": "-ql"})
            service = statistics.median(post(url, {"codeContent": code, "quality": "-ql"}) for _ in range(runs))
            ratio = service / cli
            met &= ratio <= goal
            verdict = "met" if ratio <= goal else "MISSED"
            print(f"{label:30} {cli:8.2f} {service:12.2f} {first:15.2f} {ratio:6.2f} {goal:6.2f} {verdict}")
        cache_and_status_figures(f"http://127.0.0.1:{port}", runs)
        chunk_figures(f"http://127.0.0.1:{port}", max(1, runs // 2))
        chunk_cost_figures(max(1, runs // 2))
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    first, warm = cold_start_seconds()
    print(f"\nCold start under the Lambda RIE: first invoke {first:.2f} s, warm invoke {warm * 1000:.0f} ms,")
    print(f"so init (worker start and Manim import) takes about {first - warm:.2f} s.")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
