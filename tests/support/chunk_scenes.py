"""Scenes that stress chunked rendering's exactness: state that depends on every frame.

Every updater here depends on the path taken (it integrates `dt` against the state it moves,
or records each frame), so that one step over an animation, instead of a step per frame,
ends somewhere else: jumping where a chunk must step shows."""

# An updater that moves its mobject around the origin by Euler steps: a large step ends
# farther out than many small ones.
_ORBIT = "lambda m, dt: m.shift(np.array([-m.get_y(), m.get_x(), 0]) * dt)"

UPDATER_DT = """\
from manim import *


class Spinner(Scene):
    def construct(self):
        square = Square(color=BLUE)
        square.add_updater(lambda m, dt: m.rotate(dt * 1.3).shift(np.array([-m.get_y(), m.get_x() + 1, 0]) * dt))
        self.add(square)
        self.play(FadeIn(Circle().shift(LEFT * 3)), run_time=0.8)
        self.wait(0.7)
        self.play(Indicate(square), run_time=0.6)
        self.wait(0.5)
        self.play(square.animate.set_color(RED), run_time=0.5)
"""

TRACED_PATH = """\
from manim import *


class Trace(Scene):
    def construct(self):
        dot = Dot(RIGHT * 2)
        path = TracedPath(dot.get_center, stroke_color=YELLOW, stroke_width=4)
        self.add(path, dot)
        self.play(Rotate(dot, angle=PI, about_point=ORIGIN), run_time=0.8)
        self.play(dot.animate.shift(UP), run_time=0.5)
        self.play(Rotate(dot, angle=PI / 2, about_point=ORIGIN), run_time=0.6)
        self.wait(0.4)
"""

ALWAYS_REDRAW_TRACKER = """\
from manim import *


class Tracker(Scene):
    def construct(self):
        tracker = ValueTracker(0)
        growth = ValueTracker(1).add_updater(lambda m, dt: m.increment_value(m.get_value() * dt))
        line = always_redraw(
            lambda: Line(ORIGIN, [np.cos(tracker.get_value()), np.sin(tracker.get_value()), 0]).scale(growth.get_value())
        )
        label = always_redraw(lambda: DecimalNumber(tracker.get_value()).next_to(line, UP))
        self.add(growth, line, label)
        self.play(tracker.animate.set_value(PI / 2), run_time=0.7)
        self.play(tracker.animate.set_value(PI), run_time=0.6, rate_func=linear)
        self.play(tracker.animate.increment_value(-1), run_time=0.5)
        self.wait(0.4)
"""

RANDOM_COLOURS = """\
from manim import *
import random


class Confetti(Scene):
    def construct(self):
        for _ in range(3):
            dots = VGroup(*[
                Dot(np.array([random.uniform(-5, 5), random.uniform(-3, 3), 0]), color=random_color()) for _ in range(12)
            ])
            self.play(FadeIn(dots), run_time=0.4)
            self.play(dots.animate.shift(np.random.uniform(-1, 1, 3) * [1, 1, 0]), run_time=0.4)
"""

WAIT_WITH_UPDATERS = """\
from manim import *


class Drift(Scene):
    def construct(self):
        clock = {"t": 0.0}
        dot = Dot()

        def drift(mobject, dt):
            clock["t"] += dt * (1 + clock["t"])
            mobject.move_to([np.sin(2 * clock["t"]) * 3, np.cos(3 * clock["t"]), 0])

        dot.add_updater(drift)
        self.add(dot)
        self.wait(0.6)
        self.play(Create(Square()), run_time=0.5)
        self.wait(0.8)
        self.wait(0.4)
"""

MOVING_CAMERA = """\
from manim import *


class Pan(MovingCameraScene):
    def construct(self):
        grid = NumberPlane()
        self.add(grid, Dot(RIGHT * 2, color=RED))
        self.play(self.camera.frame.animate.scale(0.5).move_to(RIGHT * 2), run_time=0.8)
        self.wait(0.3)
        self.play(self.camera.frame.animate.scale(2).move_to(LEFT), run_time=0.7)
        self.play(self.camera.frame.animate.rotate(0.3), run_time=0.4)
"""

THREE_D_AMBIENT = f"""\
from manim import *


ORBIT = {_ORBIT}


class Orbit(ThreeDScene):
    def construct(self):
        self.set_camera_orientation(phi=70 * DEGREES, theta=30 * DEGREES)
        self.add(ThreeDAxes(), Cube(side_length=1.5, fill_opacity=0.6))
        self.add(Dot(RIGHT * 2, color=RED).add_updater(ORBIT))
        self.begin_ambient_camera_rotation(rate=0.8)
        self.wait(0.6)
        self.play(Create(Sphere(radius=0.5).shift(OUT)), run_time=0.6)
        self.wait(0.5)
        self.stop_ambient_camera_rotation()
        self.wait(0.3)
"""

UPDATERS_COME_AND_GO = f"""\
from manim import *

ORBIT = {_ORBIT}


class ComeAndGo(Scene):
    def construct(self):
        dot = Dot(RIGHT * 2, color=YELLOW)
        square = Square().shift(LEFT * 3)
        self.add(dot, square)
        self.play(square.animate.rotate(PI / 3), run_time=0.5)
        self.wait(0.3)
        dot.add_updater(ORBIT)
        self.play(square.animate.shift(UP), run_time=0.6)
        self.wait(0.4)
        dot.remove_updater(ORBIT)
        self.play(square.animate.shift(DOWN), run_time=0.4)

        def start_drifting(mobject, alpha):
            if alpha > 0.5 and not square.updaters:
                square.add_updater(lambda m, dt: m.shift(RIGHT * dt * (1 + m.get_x() ** 2)))

        self.play(UpdateFromAlphaFunc(dot, start_drifting), run_time=0.6)
        self.play(dot.animate.set_color(RED), run_time=0.5)
        self.wait(0.3)
"""

SCENE_UPDATER = """\
from manim import *


class Stirred(Scene):
    def construct(self):
        dots = VGroup(*[Dot(RIGHT * (i - 2) + UP * 0.5) for i in range(5)])
        self.add(dots)

        def stir(dt):
            for dot in dots:
                dot.shift(np.array([-dot.get_y(), dot.get_x(), 0]) * dt)

        self.add_updater(stir)
        self.play(Create(Circle(radius=3)), run_time=0.6)
        self.wait(0.5)
        self.remove_updater(stir)
        self.play(FadeOut(dots[0]), run_time=0.4)
        self.wait(0.3)
"""

# Animations and a static wait longer than an encoded segment (one second; 15 frames at -ql),
# so ranges may begin inside them: one stepped through (an updater whose path matters runs),
# one jumped over, and the wait.
LONG_MOVES = """\
from manim import *


class LongMoves(Scene):
    def construct(self):
        dot = Dot().add_updater(lambda m, dt: m.shift(RIGHT * dt).rotate(dt, about_point=ORIGIN))
        self.add(dot)
        self.play(Create(Circle()), run_time=1.3)
        dot.clear_updaters()
        self.play(Transform(dot, Square()), run_time=1.1)
        self.wait(1.2)
        self.play(FadeOut(dot), run_time=0.6)
"""

SCENES = {
    "updater-dt": (UPDATER_DT, "Spinner"),
    "traced-path": (TRACED_PATH, "Trace"),
    "always-redraw-value-tracker": (ALWAYS_REDRAW_TRACKER, "Tracker"),
    "random-colours": (RANDOM_COLOURS, "Confetti"),
    "wait-with-updaters": (WAIT_WITH_UPDATERS, "Drift"),
    "moving-camera": (MOVING_CAMERA, "Pan"),
    "three-d-ambient-rotation": (THREE_D_AMBIENT, "Orbit"),
    "updaters-come-and-go": (UPDATERS_COME_AND_GO, "ComeAndGo"),
    "scene-updater": (SCENE_UPDATER, "Stirred"),
    "long-moves": (LONG_MOVES, "LongMoves"),
}

# Scenes in which no updater runs: a chunk jumps over every animation before its range.
WITHOUT_UPDATERS = ("random-colours", "moving-camera")

# Sounds at times that only frame-by-frame stepping reaches exactly (chunks carry none; the
# plan mixes them for the joined video).
BEEPS = """\
import math, struct, wave
from manim import *

with wave.open("beep.wav", "wb") as out:
    out.setnchannels(1)
    out.setsampwidth(2)
    out.setframerate(8000)
    out.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 5))) for i in range(4000)))


class Beeps(Scene):
    def construct(self):
        dot = Dot().add_updater(lambda m, dt: m.shift(RIGHT * dt))
        self.add(dot)
        for step in range(4):
            self.add_sound("beep.wav", time_offset=0.1 * step)
            self.play(Create(Circle().shift(UP * step)), run_time=0.7 + step / 3)
            self.wait(0.4)
        self.add_sound("beep.wav", gain=-6)
"""
