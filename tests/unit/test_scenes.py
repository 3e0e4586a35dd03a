"""Scene discovery reads the script's syntax tree: no regex, no execution."""

import inspect

import manim
import pytest

from render import ScriptError, choose_scene, find_scenes
from render.scenes import MANIM_SCENE_CLASSES
from tests.support import scripts


def test_known_scene_classes_are_exactly_manims():
    installed = {
        name for name, value in vars(manim).items() if inspect.isclass(value) and issubclass(value, manim.Scene)
    }
    assert installed == MANIM_SCENE_CLASSES


def test_direct_and_indirect_subclasses_in_source_order():
    assert find_scenes(scripts.TWO_SCENES) == ["Short", "Long"]
    assert find_scenes(scripts.INDIRECT_SCENE) == ["Base", "Zoom"]


def test_all_manim_scene_bases_count():
    code = "\n".join(f"class S{i}({base}):\n    pass" for i, base in enumerate(sorted(MANIM_SCENE_CLASSES)))
    assert len(find_scenes(code)) == len(MANIM_SCENE_CLASSES)


def test_a_regex_would_be_fooled_but_the_tree_is_not():
    code = 'text = """\nclass Fake(Scene):\n"""\n# class Commented(Scene):\nclass Real(Scene):\n    pass\n'
    assert find_scenes(code) == ["Real"]


def test_the_only_scene_is_chosen_and_a_named_one_is_honoured():
    assert choose_scene(scripts.CIRCLE) == "DrawCircle"
    assert choose_scene(scripts.TWO_SCENES, "Long") == "Long"


def test_several_scenes_without_a_name_list_them():
    with pytest.raises(ScriptError) as caught:
        choose_scene(scripts.TWO_SCENES)
    assert caught.value.error_type == "SeveralScenesFound"
    assert caught.value.scenes == ["Short", "Long"]


def test_a_missing_named_scene_lists_those_there_are():
    with pytest.raises(ScriptError) as caught:
        choose_scene(scripts.TWO_SCENES, "Medium")
    assert caught.value.error_type == "SceneNotFound"
    assert caught.value.scenes == ["Short", "Long"]


def test_no_scene():
    with pytest.raises(ScriptError) as caught:
        choose_scene(scripts.NO_SCENE)
    assert caught.value.error_type == "NoSceneFound"


def test_syntax_error_names_its_line():
    with pytest.raises(ScriptError) as caught:
        choose_scene(scripts.SYNTAX_ERROR)
    error = caught.value
    assert (error.error_type, error.line) == ("SyntaxError", 5)
    assert error.traceback is not None and 'File "scene.py", line 5' in error.traceback


def test_a_scene_derived_from_a_class_manim_removed_is_the_name_error_running_it_would_be():
    code = "from manim import *\n\n\nclass Plot(GraphScene):\n    def construct(self):\n        pass\n"
    with pytest.raises(ScriptError) as caught:
        choose_scene(code)
    assert (caught.value.error_type, caught.value.line) == ("NameError", 4)
    assert caught.value.message.startswith("NameError: name 'GraphScene' is not defined")
    # A base the script imports or defines is its own business: still no scene, as before.
    for defined in ("from mylib import GraphScene\n", "GraphScene = object\n"):
        with pytest.raises(ScriptError) as caught:
            choose_scene(defined + code)
        assert caught.value.error_type == "NoSceneFound"
