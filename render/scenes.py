"""Find the scenes a script defines, by reading its syntax tree, never by running it."""

from __future__ import annotations

import ast
import traceback

from render.errors import ScriptError

# Manim's own Scene classes. A class is a scene if it derives from one of these, directly
# or through other classes of the same script. tests/test_scenes.py checks this list
# against the installed Manim, so a new Manim scene class cannot go unnoticed.
MANIM_SCENE_CLASSES = frozenset(
    {
        "Scene",
        "ThreeDScene",
        "SpecialThreeDScene",
        "MovingCameraScene",
        "ZoomedScene",
        "VectorScene",
        "LinearTransformationScene",
    }
)


def _base_name(base: ast.expr) -> str | None:
    """`Scene`, `manim.Scene` and `mn.Scene` all name the class `Scene`."""
    if isinstance(base, ast.Name):
        return base.id
    if isinstance(base, ast.Attribute):
        return base.attr
    return None


def parse_script(code: str) -> ast.Module:
    """Parse the script, turning a syntax error into a ScriptError that names its line."""
    try:
        return ast.parse(code, filename="scene.py")
    except SyntaxError as error:
        raise ScriptError(
            f"The script has a syntax error on line {error.lineno}: {error.msg}.",
            error_type=type(error).__name__,
            line=error.lineno,
            traceback="".join(_format_syntax_error(error)),
        ) from None
    except ValueError as error:  # e.g. a NUL byte in the source
        raise ScriptError(f"The script cannot be parsed: {error}.", error_type="ValueError") from None


def _format_syntax_error(error: SyntaxError) -> list[str]:
    """The lines Python would print, naming the script `scene.py`, without our frames."""
    error.filename = "scene.py"
    return traceback.format_exception_only(type(error), error)


def find_scenes(code: str) -> list[str]:
    """The names of the scene classes defined at the top level of `code`, in source order."""
    tree = parse_script(code)
    scenes: list[str] = []
    known = set(MANIM_SCENE_CLASSES)
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        if any(_base_name(base) in known for base in node.bases):
            known.add(node.name)
            scenes.append(node.name)
        elif node.name in known:
            # A script class that shadows a Manim name, e.g. its own `Scene`, is not Manim's.
            known.discard(node.name)
    return scenes


def choose_scene(code: str, scene_name: str | None = None) -> str:
    """The scene to render: the only one, or the one asked for.

    Raises ScriptError when there is none, when the one asked for is missing, or when there
    are several and none was asked for (the error lists them, so the caller can choose).
    """
    scenes = find_scenes(code)
    if scene_name is not None:
        if scene_name in scenes:
            return scene_name
        raise ScriptError(
            f"The script has no scene named {scene_name!r}.",
            error_type="SceneNotFound",
            scenes=scenes,
        )
    if len(scenes) == 1:
        return scenes[0]
    if not scenes:
        raise ScriptError(
            "The script defines no scene: no class derives from Scene or another Manim scene class.",
            error_type="NoSceneFound",
            scenes=[],
        )
    raise ScriptError(
        f"The script defines {len(scenes)} scenes; pass sceneName to choose one.",
        error_type="SeveralScenesFound",
        scenes=scenes,
    )
