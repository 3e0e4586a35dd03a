"""The render tools (latex, dvisvgm) missing, as on an image without TeX: our fault, never the
script's. Every test here runs with the warm worker restarted on a PATH that holds neither."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler.app import lambda_handler
from handler.local import LocalContext, function_url_event
from render import Deadline, RenderLimits, ToolMissing, WorkerClient, choose_scene
from render.latex import missing_tool
from render.messages import TexRequest
from tests.support import scripts

EVENTS = Path(__file__).parents[2] / "events"

pytestmark = pytest.mark.usefixtures("worker_without_tex")


@pytest.fixture(scope="module")
def worker_without_tex(worker: WorkerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerClient]:
    """The session's worker restarted with an empty PATH (and so an empty LaTeX cache), then
    restarted as it was. The worker reads PATH when it starts; the tests' process keeps its own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", str(tmp_path_factory.mktemp("empty-path")))
        worker.close()
        worker.start()
    yield worker
    worker.close()
    worker.start()


def call(event: dict) -> tuple[int, dict]:
    result = lambda_handler(event, LocalContext())
    return result["statusCode"], json.loads(result["body"])


def post_render(body: dict) -> tuple[int, dict]:
    return call(function_url_event("POST", "/api/render", {"Content-Type": "application/json"}, json.dumps(body).encode()))


def test_health_says_which_tools_are_missing():
    status, body = call(json.loads((EVENTS / "http-api-health.json").read_text()))
    assert (status, body["message"]) == (200, "Health is OK")
    assert body["worker"]["tools"] == {"latex": False, "dvisvgm": False}


def test_a_latex_scene_is_a_500_naming_the_missing_tool(local_store):
    status, body = post_render({"codeContent": scripts.LATEX, "quality": "-ql"})
    assert status == 500, body
    assert body["errors"] == {"type": "ToolMissing", "tool": "latex", "class": "internal"}
    assert "latex" in body["message"] and "our fault" in body["message"]
    assert "Traceback" not in json.dumps(body)


def test_a_latex_scene_raises_on_a_direct_invoke(local_store):
    with pytest.raises(ToolMissing) as caught:
        lambda_handler({"codeContent": scripts.LATEX, "quality": "-ql"}, LocalContext())
    assert caught.value.tool == "latex"


def test_the_worker_raises_it_for_a_chunk_plan_too(worker_without_tex, tmp_path):
    with pytest.raises(ToolMissing):
        worker_without_tex.plan(
            scripts.LATEX,
            scene=choose_scene(scripts.LATEX),
            quality="-ql",
            limits=RenderLimits(),
            deadline=Deadline.after(60),
            scratch=tmp_path,
        )


def test_a_scene_without_latex_still_renders(local_store):
    status, body = post_render({"codeContent": scripts.CIRCLE, "quality": "-ql"})
    assert status == 200, body


def test_the_first_missing_tool_a_compile_would_run_is_named(tmp_path, monkeypatch):
    (tmp_path / "latex").symlink_to("/bin/true")
    monkeypatch.setenv("PATH", str(tmp_path))
    request = TexRequest(source="", compilers=["latex"], format=".dvi")
    assert missing_tool(request) == "dvisvgm"
    # A compiler the script chose that is not ours to provide is left to fail as the script's.
    xelatex = request.model_copy(update={"compilers": ["xelatex"]})
    assert missing_tool(xelatex) == "dvisvgm"
    (tmp_path / "dvisvgm").symlink_to("/bin/true")
    assert missing_tool(xelatex) is None
