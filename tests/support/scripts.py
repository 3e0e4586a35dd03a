"""Manim scripts the tests render: small, at -ql, each showing one behaviour."""

CIRCLE = """\
from manim import *


class DrawCircle(Scene):
    def construct(self):
        self.play(Create(Circle(color=BLUE, fill_opacity=1)), run_time=1)
"""

LATEX = r"""
from manim import *


class Formula(Scene):
    def construct(self):
        axes = Axes(x_range=[0, 4, 1], y_range=[0, 4, 1], x_length=5, y_length=3).add_coordinates()
        formula = MathTex(r"\int_0^1 x^2\,dx = \frac{1}{3}").to_edge(UP)
        label = Tex(r"Area under $x^2$").to_edge(DOWN)
        self.add(axes, formula, label)
        self.wait(0.2)
"""

# Two scenes of different lengths, so the video tells which one was rendered.
TWO_SCENES = """\
from manim import *


class Short(Scene):
    def construct(self):
        self.add(Square())
        self.wait(0.4)


class Long(Scene):
    def construct(self):
        self.add(Triangle())
        self.wait(1.2)
"""

# A scene derived from the script's own base class, itself derived from MovingCameraScene.
INDIRECT_SCENE = """\
import manim as mn


class Base(mn.MovingCameraScene):
    pass


class Zoom(Base):
    def construct(self):
        self.add(mn.Dot())
        self.wait(0.2)
"""

RAISES_IN_CONSTRUCT = """\
from manim import *


class Broken(Scene):
    def construct(self):
        circle = Circle()
        self.play(Create(circle), run_time=0.2)
        self.play(circle.animate.shift(RIGHT * undefined_distance))
"""

# A misspelt name on line 7, as a caller's script may have one.
TYPO = """\
from manim import *


class Typo(Scene):
    def construct(self):
        self.wait(0.1)
        self.add(Circel())
"""

# Fails inside Manim: the traceback should end in the library frame that objected.
BAD_MANIM_CALL = """\
from manim import *


class BadCall(Scene):
    def construct(self):
        self.play(Circle())
"""

# A formula LaTeX rejects: the script's error, not a missing tool.
BAD_FORMULA = r"""from manim import *


class Broken(Scene):
    def construct(self):
        self.add(MathTex(r"\frac{"))
"""

SYNTAX_ERROR = """\
from manim import *


class Oops(Scene):
    def construct(self)
        self.wait()
"""

NO_SCENE = """\
from manim import *


class NotAScene:
    pass
"""

# Starts a child process that writes its pid, then never finishes on its own.
SLOW_WITH_CHILD = """\
import subprocess, time
from pathlib import Path
from manim import *


class Slow(Scene):
    def construct(self):
        child = subprocess.Popen(["sleep", "300"])
        Path("{pid_file}").write_text(str(child.pid))
        time.sleep(300)
"""

# A diagram: no animation at all, like the Manim gallery's BraceAnnotation.
DIAGRAM = """\
from manim import *


class Diagram(Scene):
    def construct(self):
        dot, other = Dot([-2, -1, 0]), Dot([2, 1, 0])
        line = Line(dot.get_center(), other.get_center()).set_color(ORANGE)
        brace = Brace(line, direction=line.copy().rotate(PI / 2).get_unit_vector())
        self.add(line, dot, other, brace)
"""

# One second of a circle drawn on an empty background: its frames show the format's pixels.
ONE_SECOND = """\
from manim import *


class Ring(Scene):
    def construct(self):
        self.play(Create(Circle(color=BLUE)), run_time=1)
"""

# Scenes for many jobs at once, each its own: a tile of the job's colour for 0.2 s (3 frames at
# -ql), the job's index in a comment. Four levels a channel give 64 colours, any two of them
# far apart in one channel at least.
TILE_FRAMES = 3
_TILE_LEVELS = (30, 100, 170, 240)
_TILE = """\
from manim import *


class Tile(Scene):
    def construct(self):  # job {index}
        self.add(Square(side_length=7, color="{colour}", fill_opacity=1))
        self.wait(0.2)
"""


def tile_colour(index: int) -> tuple[int, int, int]:
    """The RGB colour of job `index`'s tile (0 to 63)."""
    return _TILE_LEVELS[index // 16], _TILE_LEVELS[index // 4 % 4], _TILE_LEVELS[index % 4]


def tile(index: int) -> str:
    """The script of job `index`: its tile, filling the middle of the frame."""
    return _TILE.format(index=index, colour="#{:02X}{:02X}{:02X}".format(*tile_colour(index)))
