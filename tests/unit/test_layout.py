"""The layering a newcomer relies on: handler/ above render/, reaching it only through its front."""

import ast
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_handler_imports_render_only_through_its_front():
    reaching_in = {
        f"{path.name}: {module}"
        for path in (PROJECT / "handler").glob("*.py")
        for module in imported_modules(path)
        if module.startswith("render.")
    }
    assert reaching_in == set()


def test_render_knows_nothing_of_handler_or_aws():
    above = ("handler", "boto3", "botocore", "aws_lambda_powertools")
    for path in (PROJECT / "render").glob("*.py"):
        assert not {module for module in imported_modules(path) if module.split(".")[0] in above}, path


def test_the_client_needs_nothing_of_the_worker():
    # Its wheel holds manim_lambda/ alone: an import of the worker's code would fail where it is installed.
    for path in (PROJECT / "manim_lambda").glob("*.py"):
        assert not {module for module in imported_modules(path) if module.split(".")[0] in ("handler", "render", "tests")}, path
