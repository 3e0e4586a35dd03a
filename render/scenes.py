"""Find the scenes a script defines, by reading its syntax tree, never by running it."""

from __future__ import annotations

import ast
import traceback

from render.errors import ScriptError
from render.messages import MAX_TEXT

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
# At most this many scene names are listed in an error (a 100 KiB script can define thousands
# of classes); the message says how many there are in all.
MAX_LISTED_SCENES = 50
# A name the caller sent is echoed in a message cut to this many characters.
MAX_ECHOED_NAME = 100


def _base_name(base: ast.expr) -> str | None:
    """`Scene`, `manim.Scene` and `mn.Scene` all name the class `Scene`."""
    if isinstance(base, ast.Name):
        return base.id
    if isinstance(base, ast.Attribute):
        return base.attr
    return None


def parse_script(code: str) -> ast.Module:
    """Parse the script, turning a syntax error into a ScriptError that names its line.

    A script nested too deeply for Python's parser (e.g. `a.b.b.b...` or `1+1+1...` some
    thousands of times, well within the size limit) makes `ast.parse` raise RecursionError
    or MemoryError in the caller's process: that is the script's fault too, and a ScriptError.
    """
    try:
        return ast.parse(code, filename="scene.py")
    except (RecursionError, MemoryError):
        raise ScriptError(
            "The script is nested too deeply for Python to parse (an expression with thousands "
            "of nested or chained parts); split it into smaller expressions.",
            error_type="TooDeeplyNested",
        ) from None
    except SyntaxError as error:
        raise ScriptError(
            f"The script has a syntax error on line {error.lineno}: {error.msg}.",
            error_type=type(error).__name__,
            line=error.lineno,
            traceback="".join(_format_syntax_error(error))[-MAX_TEXT:],  # as the runner trims its own
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
            f"The script has no scene named {_echoed(scene_name)}{_first(scenes)}.",
            error_type="SceneNotFound",
            scenes=scenes[:MAX_LISTED_SCENES],
        )
    if len(scenes) == 1:
        return scenes[0]
    if not scenes:
        _raise_undefined_scene_base(code)
        raise ScriptError(
            "The script defines no scene: no class derives from Scene or another Manim scene class.",
            error_type="NoSceneFound",
            scenes=[],
        )
    raise ScriptError(
        f"The script defines {len(scenes)} scenes; pass sceneName to choose one{_first(scenes)}.",
        error_type="SeveralScenesFound",
        scenes=scenes[:MAX_LISTED_SCENES],
    )


def _raise_undefined_scene_base(code: str) -> None:
    """Raise the NameError running the script would raise, if a top-level class derives from a
    scene class the script never defines: a name ending in `Scene` that is neither Manim's
    (MANIM_SCENE_CLASSES is all of them) nor bound anywhere in the script, such as
    `GraphScene`, which Manim removed. That tells whoever fixes the script more than "no scene"."""
    tree = parse_script(code)
    bound = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            bound.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((alias.asname or alias.name).partition(".")[0] for alias in node.names)
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for base in node.bases:
            name = base.id if isinstance(base, ast.Name) else None
            if name and name.endswith("Scene") and name not in MANIM_SCENE_CLASSES and name not in bound:
                raise ScriptError(
                    f"NameError: name {_echoed(name)} is not defined (line {node.lineno}); it is not one of "
                    f"Manim's scene classes ({', '.join(sorted(MANIM_SCENE_CLASSES))}).",
                    error_type="NameError",
                    line=node.lineno,
                )


def _echoed(name: str) -> str:
    """`name` quoted, cut short if it is long (it came from the caller)."""
    if len(name) <= MAX_ECHOED_NAME:
        return repr(name)
    return f"{name[:MAX_ECHOED_NAME]!r}... ({len(name)} characters)"


def _first(scenes: list[str]) -> str:
    """What a message adds when the error lists only the first of `scenes`."""
    if len(scenes) <= MAX_LISTED_SCENES:
        return ""
    return f" (`scenes` lists the first {MAX_LISTED_SCENES} of {len(scenes)})"
