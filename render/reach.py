"""How a chunk reaches the first animation of its range exactly, without drawing what comes
before it.

A whole render updates the scene at every frame time of every animation. Manim's own skipping
(`-n`) updates it once per animation, at its end, which lets anything that depends on the path
taken (an updater integrating `dt`, a `TracedPath`, a function called each frame) drift.

Here each earlier animation is either *stepped* (updated at every frame time, as a whole render
does, drawing and encoding nothing) or *jumped* (updated once, at its last frame time, then
finished as a whole render finishes it). A jump is exact only when every frame's update is a
pure function of the animation's progress, which `must_step` decides, conservatively: anything
it cannot vouch for is stepped. Either way `renderer.time` gets the same additions, frame by
frame, as in a whole render.
"""

from __future__ import annotations

import contextlib
import functools
import types
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

# Names a class of the script's own may define without changing how Manim updates an
# instance: set once at construction, or bookkeeping of Python's.
_HARMLESS_NAMES = frozenset(
    {
        "__init__",
        "__module__",
        "__qualname__",
        "__doc__",
        "__dict__",
        "__weakref__",
        "__firstlineno__",
        "__static_attributes__",
        "__annotations__",
        "__orig_bases__",
        "__parameters__",
    }
)
# And what a scene's class of the script's own may define: what Manim calls once.
_HARMLESS_SCENE_NAMES = _HARMLESS_NAMES | {"construct", "setup", "tear_down"}


@contextlib.contextmanager
def without_drawing(renderer: Any) -> Iterator[None]:
    """Play animations on `renderer` through all their frame times, drawing and writing nothing.

    Everything that changes state (updaters, `renderer.time`, animation counters) happens as
    in a whole render; what only produces pixels or file data (drawing, static-frame capture,
    encoding) is skipped.
    """
    writer = renderer.file_writer
    saved = {
        (renderer, "update_frame"): renderer.update_frame,
        (renderer, "add_frame"): renderer.add_frame,
        (renderer, "get_frame"): renderer.get_frame,
        (renderer, "save_static_frame_data"): renderer.save_static_frame_data,
        (writer, "begin_animation"): writer.begin_animation,
        (writer, "end_animation"): writer.end_animation,
        (writer, "add_partial_movie_file"): writer.add_partial_movie_file,
    }

    def add_frame(_frame: Any, num_frames: int = 1) -> None:
        renderer.time += num_frames * (1 / renderer.camera.frame_rate)

    renderer.update_frame = lambda *args, **kwargs: None
    renderer.add_frame = add_frame
    renderer.get_frame = lambda: None
    renderer.save_static_frame_data = lambda *args, **kwargs: None
    writer.begin_animation = lambda *args, **kwargs: saved[(writer, "begin_animation")](False, **kwargs)
    writer.end_animation = lambda *args, **kwargs: saved[(writer, "end_animation")](False)
    writer.add_partial_movie_file = lambda _hash: saved[(writer, "add_partial_movie_file")](None)
    try:
        yield
    finally:
        for (owner, name), original in saved.items():
            setattr(owner, name, original)


@contextlib.contextmanager
def jumping_where_exact(scene: Any) -> Iterator[None]:
    """While reaching a range without drawing: jump each animation `must_step` allows, step
    the others.

    A jumped animation's frame times are all added to `renderer.time`, as drawing them would
    add them, but the scene is updated only at the last one; then Manim finishes the animation
    (each at its end, in order) exactly as after a whole render's last frame."""
    original = scene.get_time_progression

    def last_time_only(run_time: float, *args: Any, **kwargs: Any) -> Any:
        progression = original(run_time, *args, **kwargs)
        if must_step(scene):
            return progression
        times = list(progression.iterable)
        for _ in times[:-1]:
            scene.renderer.add_frame(None)  # the time of each frame jumped over
        progression.iterable = times[-1:]
        return progression

    scene.get_time_progression = last_time_only
    try:
        yield
    finally:
        del scene.get_time_progression  # the class's own again


def must_step(scene: Any) -> bool:
    """Whether the play being run (its animations compiled and begun) must be updated at every
    frame time for the scene to end it as a whole render does.

    It may be jumped only when nothing can depend on the path: no updater on any mobject the
    scene holds or the play touches (which covers `always_redraw`, `TracedPath` and trackers a
    redraw reads), no scene updater, no stop condition; only Manim's own animations, mobject
    classes and functions, except those that integrate over time, and a scene class that
    redefines only what Manim calls once (`construct`, `setup`); and no animation that begins
    mid-play (inside a `Succession`) on a mobject another animation of the play moves.
    """
    if scene.updaters or scene.always_update_mobjects or scene.stop_condition is not None:
        return True
    if _overrides_manim(type(scene), _HARMLESS_SCENE_NAMES):
        return True
    animations = list(_tree(scene.animations or ()))
    if any(_path_dependent(animation) for animation in animations):
        return True
    mobjects = _families([*scene.mobjects, *scene.foreground_mobjects, *_camera_mobjects(scene.renderer.camera)])
    for animation in animations:
        mobjects.extend(_families(_held_mobjects(animation)))
    if any(getattr(mobject, "updaters", None) for mobject in mobjects):
        return True
    if any(_overrides_manim(cls) for cls in {type(mobject) for mobject in mobjects}):
        return True
    return _begins_mid_play_on_shared_mobjects(scene.animations or ())


def members_to_begin(animations: Iterable[Any]) -> int:
    """How many mobjects beginning these animations copies or aligns, the bulk of what a play
    costs when it is jumped: a transform aligns its mobject's family with its target's, pair by
    pair, padding the shorter side with copies; others copy their mobject's family."""
    count = 0
    for leaf, _ in (pair for animation in animations for pair in _leaves(animation, ())):
        target = getattr(leaf, "target_mobject", None)
        count += _aligned(leaf.mobject, target) if target is not None else len(leaf.mobject.get_family())
    return count


def _aligned(mobject: Any, target: Any) -> int:
    """The pairs Manim's `align_data` makes of two families: submobjects matched index by
    index, the shorter list's repeated (and a mobject without any standing in for its own)."""
    ours, theirs = mobject.submobjects, target.submobjects
    widest = max(len(ours), len(theirs))
    pairs = 1
    for index in range(widest):
        pairs += _aligned(
            ours[index * len(ours) // widest] if ours else mobject,
            theirs[index * len(theirs) // widest] if theirs else target,
        )
    return pairs


def runs_script_code(animations: Iterable[Any]) -> bool:
    """Whether a play may run the script's own code (or integrate over time) while it plays."""
    return any(_path_dependent(animation) for animation in _tree(animations))


def _tree(animations: Iterable[Any]) -> Iterator[Any]:
    """Every animation of a play, groups and what they hold alike."""
    for animation in animations:
        yield animation
        yield from _tree(getattr(animation, "animations", ()))


def _path_dependent(animation: Any) -> bool:
    """An animation whose updates may depend on the ones before: one that integrates over time
    by design, a class of the script's own that changes how Manim updates it, or one that
    holds a function that is not Manim's (a rate function, an update or path function)."""
    from manim import ChangeSpeed, MaintainPositionRelativeTo, Mobject, PhaseFlow, UpdateFromFunc

    if isinstance(animation, ChangeSpeed | MaintainPositionRelativeTo | PhaseFlow | UpdateFromFunc):
        return True
    if _overrides_manim(type(animation)):
        return True
    held = (value for value in vars(animation).values() if callable(value) and not isinstance(value, type | Mobject))
    return not all(_is_manims(function, set()) for function in held)


def _is_manims(function: Any, seen: set[int]) -> bool:
    """Whether `function` is Manim's own code (or NumPy's), and so is everything it closes over."""
    if id(function) in seen:
        return True
    seen.add(id(function))
    if isinstance(function, np.ufunc):
        return True
    if isinstance(function, types.MethodType):
        function = function.__func__
    if not isinstance(function, types.FunctionType) or not _from_manim(function):
        return False
    for cell in function.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # a cell not filled yet
            continue
        if callable(value) and not isinstance(value, type) and not _is_manims(value, seen):
            return False
    return True


def _from_manim(thing: Any) -> bool:
    return str(getattr(thing, "__module__", "")).partition(".")[0] == "manim"


def _overrides_manim(cls: type, harmless: frozenset[str] = _HARMLESS_NAMES) -> bool:
    """Whether a class of the script's own (or another library's) redefines anything that
    Manim's classes it derives from define, beyond `harmless` (its constructor)."""
    return _class_overrides_manim(cls.__mro__, harmless)


@functools.cache
def _class_overrides_manim(mro: tuple[type, ...], harmless: frozenset[str]) -> bool:
    ours = [base for base in mro if base is not object and not _from_manim(base)]
    manims = set().union(*(vars(base) for base in mro if _from_manim(base)))
    return any((set(vars(base)) - harmless) & manims for base in ours)


def _held_mobjects(animation: Any) -> Iterable[Any]:
    """The mobjects an animation moves or copies (only its own mobject before it has begun)."""
    try:
        return animation.get_all_mobjects()
    except AttributeError:  # not begun: no starting copy yet
        return [animation.mobject]


def _families(mobjects: Iterable[Any]) -> list[Any]:
    return [member for mobject in mobjects if mobject is not None for member in mobject.get_family()]


def _camera_mobjects(camera: Any) -> list[Any]:
    """What a camera holds that a scene may animate or give updaters: a moving camera's frame,
    a 3D camera's angle trackers."""
    held = [getattr(camera, "frame", None)]
    if hasattr(camera, "get_value_trackers"):
        held.extend(camera.get_value_trackers())
    return [mobject for mobject in held if mobject is not None]


def _begins_mid_play_on_shared_mobjects(animations: Iterable[Any]) -> bool:
    """Whether an animation inside a `Succession` (which begins it mid-play, copying its
    mobject as it is then) touches a mobject that an animation outside that succession moves."""
    from manim import Succession

    leaves = [leaf for animation in animations for leaf in _leaves(animation, ())]
    for succession in {id(s): s for _, path in leaves for s in path if isinstance(s, Succession)}.values():
        inside = {id(m) for leaf, path in leaves if succession in path for m in _families([leaf.mobject])}
        outside = {id(m) for leaf, path in leaves if succession not in path for m in _families([leaf.mobject])}
        if inside & outside:
            return True
    return False


def _leaves(animation: Any, path: tuple[Any, ...]) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    """The animations that are not groups, each with the groups it is in."""
    inner = getattr(animation, "animations", None)
    if not inner:
        yield animation, path
        return
    for child in inner:
        yield from _leaves(child, (*path, animation))
