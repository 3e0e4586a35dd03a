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
from pathlib import Path

import numpy as np

from render import Deadline, RenderLimits, WorkerClient
from render.chunks import Plan
from tests.support.cloud import Measured, emulated_cloud
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

# An explainer with no updaters: text, shapes, formulas and transforms (23 s).
EXPLAINER = r"""
from manim import *


class Explainer(Scene):
    def construct(self):
        title = Text("Three shapes, three areas", font_size=48).to_edge(UP)
        self.play(Write(title), run_time=1.5)
        square = Square(side_length=2, color=BLUE, fill_opacity=0.5).shift(LEFT * 4)
        circle = Circle(radius=1.1, color=GREEN, fill_opacity=0.5)
        triangle = Triangle(color=RED, fill_opacity=0.5).scale(1.3).shift(RIGHT * 4)
        self.play(Create(square), Create(circle), Create(triangle), run_time=2)
        self.wait(1)
        formulas = VGroup()
        for shape, area in ((square, "a^2"), (circle, r"\pi r^2"), (triangle, r"\tfrac{1}{2} b h")):
            formula = MathTex(area, font_size=44).next_to(shape, DOWN)
            formulas.add(formula)
            self.play(Indicate(shape), FadeIn(formula, shift=UP * 0.3), run_time=1.5)
            self.wait(0.5)
        self.play(square.animate.rotate(PI / 4).set_color(YELLOW), run_time=1.5)
        self.play(Transform(square, Circle(radius=1.1, color=YELLOW, fill_opacity=0.5).move_to(square)), run_time=1.5)
        self.wait(1)
        arrow = Arrow(circle.get_right(), triangle.get_left(), buff=0.3)
        note = Text("same area?", font_size=32).next_to(arrow, UP)
        self.play(GrowArrow(arrow), Write(note), run_time=1.5)
        self.wait(1)
        self.play(triangle.animate.scale(1.4).shift(DOWN * 0.5), formulas[2].animate.shift(DOWN), run_time=1.5)
        self.play(Circumscribe(formulas[1]), run_time=1.5)
        shapes = (square, circle, triangle, arrow, note)
        self.play(LaggedStart(*[FadeOut(m, shift=DOWN) for m in shapes], lag_ratio=0.2), run_time=2)
        summary = Text("Area grows with the square of size", font_size=36)
        self.play(ReplacementTransform(formulas, summary), run_time=1.5)
        self.wait(1.5)
"""

# Motion driven by a dt updater and traced throughout (17 s).
UPDATER_HEAVY = r"""
from manim import *


class Orbits(Scene):
    def construct(self):
        plane = NumberPlane(background_line_style={"stroke_opacity": 0.4})
        planet = Dot(RIGHT * 3, color=YELLOW)
        moon = Dot(RIGHT * 3.6, color=BLUE, radius=0.05)
        planet.add_updater(lambda m, dt: m.shift(np.array([-m.get_y(), m.get_x(), 0]) * dt * 0.35))
        moon.add_updater(lambda m, dt: m.move_to(planet.get_center() + rotate_vector(m.get_center() - planet.get_center(), dt)))
        trail = TracedPath(planet.get_center, stroke_color=YELLOW, stroke_width=3)
        moon_trail = TracedPath(moon.get_center, stroke_color=BLUE, stroke_width=2, dissipating_time=2)
        self.add(plane, trail, moon_trail, planet, moon)
        title = Text("Orbits", font_size=40).to_corner(UL)
        self.play(Write(title), run_time=1)
        for step in range(7):
            shape = RegularPolygon(n=step + 3, color=random_color()).scale(0.6).shift(LEFT * 4 + DOWN * 2)
            self.play(FadeIn(shape), run_time=1)
            self.play(shape.animate.rotate(PI / 2).set_color(random_color()), run_time=1)
            self.remove(shape)
        self.wait(2)
"""

CLOUD_SCENES = {"explainer, no updaters": (EXPLAINER, "Explainer", 0.35), "updater-heavy": (UPDATER_HEAVY, "Orbits", 0.38)}

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


CLOUD_CHUNKS = (2, 4, 8)
# The README's projection: a 3-minute scene at 1080p60 on 30 chunks.
PROJECTED_SECONDS, PROJECTED_CHUNKS = 180, 30


def cloud_figures(runs: int) -> bool:
    """Chunked renders on Lambda's model (tests/support/cloud.py): the whole render, and for
    2, 4 and 8 chunks each chunk, the plan, the join and the critical path, at -qm; then the
    3-minute 1080p60 projection from the measured costs. True if the 4-chunk goals are met."""
    met = True
    work = Path(tempfile.mkdtemp(prefix="bench-plans-"))
    worker = WorkerClient(work)
    print(
        f"\n{'emulated cloud, -qm':24} {'chunks':>6} {'whole':>6} {'each chunk (s)':>40} {'plan':>5} {'join':>5}"
        f" {'head':>5} {'tail':>5} {'critical':>8} {'ratio':>6} {'goal':>5}"
    )
    try:
        with emulated_cloud(max(CLOUD_CHUNKS)) as cloud:
            for label, (code, scene, goal) in CLOUD_SCENES.items():
                body = {"codeContent": code, "sceneName": scene, "quality": "-qm"}
                for environment in cloud.environments:  # each has compiled the scene's formulas
                    environment.invoke({**body, "quality": "-ql", "cache": False})
                whole = statistics.median(cloud.render(body).seconds for _ in range(runs))
                plan = _plan(worker, code, scene, "-qm")
                measured: dict[int, Measured] = {}
                for count in CLOUD_CHUNKS:
                    tries = sorted((cloud.render({**body, "chunks": count}) for _ in range(runs)), key=lambda m: m.critical_path)
                    measured[count] = one = tries[len(tries) // 2]
                    timings = one.answer["timings"]
                    ratio = one.critical_path / whole
                    verdict = ""
                    if count == 4:
                        met &= ratio <= goal
                        verdict = f"{goal:5.2f} {'met' if ratio <= goal else 'MISSED'}"
                    each = " ".join(f"{chunk.seconds:.2f}" for chunk in one.chunks)
                    print(
                        f"{label if count == CLOUD_CHUNKS[0] else '':24} {count:6} {whole:6.2f} {each:>40}"
                        f" {timings['planSeconds']:5.2f} {timings['joinSeconds']:5.2f} {one.head:5.2f} {one.tail:5.2f}"
                        f" {one.critical_path:8.2f} {ratio:6.2f} {verdict}"
                    )
                high = cloud.render({**body, "quality": "-qh"}).seconds
                _projection(plan, _plan(worker, code, scene, "-qh"), whole, high, measured)
    finally:
        worker.close()
        shutil.rmtree(work, ignore_errors=True)
    print("head: request to the first chunk's start (plan, split, invokes); tail: the last chunk's end to the answer")
    print("(noticing it, download, join, upload); critical: head + slowest chunk + tail, as with a Lambda environment each.")
    return met


def _plan(worker: WorkerClient, code: str, scene: str, quality: str) -> Plan:
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as folder:
        return worker.plan(
            code, scene=scene, quality=quality, limits=RenderLimits(), deadline=Deadline.after(300), scratch=Path(folder)
        )


def _projection(plan: Plan, high_plan: Plan, whole: float, high: float, measured: dict[int, Measured]) -> None:
    """The 3-minute 1080p60 render on 30 chunks, from this scene's measured costs: a chunk
    costs a fixed part, its reach (per second of scene before it) and its frames (fitted over
    every chunk measured at -qm); a 1080p60 frame costs what the whole -qh render took per
    frame; the plan, head and tail overheads grow with the scene's length."""
    rate = sum(plan.frames) / (sum(high_plan.frames) / 60) if high_plan.frames else 30
    rows = [
        (1.0, plan.frames_before(c.start) / rate, plan.frames_before(c.end) - plan.frames_before(c.start))
        for m in measured.values()
        for c in m.chunks
    ]
    times = [c.seconds for m in measured.values() for c in m.chunks]
    fixed, reach, per_frame = np.linalg.lstsq(np.array(rows), np.array(times), rcond=None)[0]
    scene_seconds = sum(plan.frames) / rate
    scale = PROJECTED_SECONDS / scene_seconds
    frame_high = high / sum(high_plan.frames)
    frames = PROJECTED_SECONDS * 60
    four = measured[4]
    plan_seconds = four.answer["timings"]["planSeconds"] * scale
    join_seconds = four.answer["timings"]["joinSeconds"] * frames / sum(plan.frames) * frame_high / (whole / sum(plan.frames))
    # Balanced by cost, each chunk takes the average: its frames, plus on average half the reach.
    chunk = max(fixed, 0.0) + frame_high * frames / PROJECTED_CHUNKS + max(reach, 0.0) * PROJECTED_SECONDS / 2
    overhead = (four.head - four.answer["timings"]["planSeconds"]) + (four.tail - four.answer["timings"]["joinSeconds"])
    critical = plan_seconds + chunk + join_seconds + overhead
    print(
        f"{'':24} fitted: a chunk {fixed:.2f} s + {reach * 1000:.0f} ms per second of scene reached"
        f" + {per_frame * 1000:.1f} ms a frame drawn (-qm); -qh whole {high:.1f} s = {frame_high * 1000:.1f} ms a frame"
    )
    print(
        f"{'':24} 3 min 1080p60 on {PROJECTED_CHUNKS} chunks: plan {plan_seconds:.1f} + chunk {chunk:.1f} + join"
        f" {join_seconds:.1f} + overhead {overhead:.1f} = {critical:.1f} s, against {frame_high * frames / 60:.1f} min whole"
        f" {'met' if critical <= 30 else 'MISSED'} (goal 30 s)"
    )


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
    parser.add_argument("--cloud-only", action="store_true", help="only the emulated cloud's chunk figures")
    arguments = parser.parse_args()
    runs = arguments.runs
    print(f"{os.cpu_count()} cores; {runs} timed runs per scene and side; medians; -ql\n")
    if arguments.cloud_only:
        return 0 if cloud_figures(max(1, runs // 2)) else 1
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
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    first, warm = cold_start_seconds()
    print(f"\nCold start under the Lambda RIE: first invoke {first:.2f} s, warm invoke {warm * 1000:.0f} ms,")
    print(f"so init (worker start and Manim import) takes about {first - warm:.2f} s.")
    met &= cloud_figures(max(1, runs // 2))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
