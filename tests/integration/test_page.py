"""The page to try scenes at `/` of the local server (handler/static/), in a real headless
Chromium: a scene typed, rendered as an async job with its progress shown, and its video
playing; then a broken scene, its error shown and its line marked in the editor. A screenshot
of each state is written to the test's folder and copied to SCREENSHOTS.

And the page's files as the server serves them: a fixed list, CodeMirror's missing one
answered with what to install."""

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest

from handler import local
from handler.models import FORMATS, Quality
from tests.support.chromium import CHROMIUM, Page, chromium_page
from tests.support.local_server import local_server

SCREENSHOTS = Path("/tmp/page-screenshots")

# Six seconds at -ql: long enough (about 3 s) for the job to report its progress on the way.
SCENE = """\
from manim import *


class Dots(Scene):
    def construct(self):
        dots = VGroup(*[Dot(0.3 * (RIGHT * (i % 20 - 10) + UP * (i // 20 - 5))) for i in range(200)])
        self.play(Rotate(dots, PI), run_time=6)
"""
BROKEN_LINE = 7
BROKEN = SCENE.replace("Rotate(dots, PI)", "Rotate(dots, angle)")
MARKUP = """\
from manim import *


class Markup(Scene):
    def construct(self):
        raise ValueError("<img src=x onerror=\\"document.title='injected'\\"><b>not bold</b>")
"""

EDITOR = "document.querySelector('.CodeMirror').CodeMirror"


@pytest.fixture
def page(tmp_path) -> Iterator[tuple[str, Page]]:
    """The local server's page open in Chromium: the server's URL and the tab."""
    with local_server(tmp_path / "server") as base:
        with chromium_page(tmp_path) as tab:
            tab.open(f"{base}/")
            yield base, tab


def screenshot(tab: Page, folder: Path, name: str) -> Path:
    """The tab as it looks now, in `folder` and in SCREENSHOTS."""
    path = tab.screenshot(folder / f"{name}.png")
    SCREENSHOTS.mkdir(exist_ok=True)
    shutil.copy(path, SCREENSHOTS / path.name)
    print(f"screenshot: {path} (and {SCREENSHOTS / path.name})")
    return path


def type_scene(tab: Page, code: str) -> None:
    """Replace the editor's text by typing `code` into it."""
    tab.click(".CodeMirror-lines")
    tab.select_all()
    tab.type(code)
    assert tab.evaluate(f"{EDITOR}.getValue()") == code


def ended(tab: Page, code: str) -> str:
    """Type `code`, click Render, and wait for the job to end; its status as the page says it."""
    type_scene(tab, code)
    tab.click("#render")
    return tab.wait_until("['succeeded', 'failed'].find((end) => document.getElementById('status').textContent === end)", 60)


def marked_lines(tab: Page) -> list[list[str]]:
    """The editor's lines marked as an error's: each one's number in the gutter, and its text."""
    return tab.evaluate(
        "[...document.querySelectorAll('.CodeMirror-code .error-line')].map((line) => "
        "[line.querySelector('.CodeMirror-linenumber').textContent, line.querySelector('.CodeMirror-line').textContent])"
    )


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian's chromium; make test installs it)")
def test_a_scene_renders_and_plays_then_a_broken_one_marks_its_line(page, tmp_path):
    base, tab = page
    tab.wait_until("document.getElementById('quality').options.length > 0", timeout=10)
    options = "[...document.getElementById('{}').options].map((option) => option.value)"
    assert tab.evaluate(options.format("quality")) == list(get_args(Quality))  # the API's, read from its contract
    assert tab.evaluate(options.format("format")) == ["", *FORMATS]
    assert tab.evaluate("document.getElementById('quality').value") == "-ql"

    type_scene(tab, SCENE)
    screenshot(tab, tmp_path, "1-typed")
    tab.click("#render")
    tab.wait_until("/^rendering [1-9][0-9]?%$/.test(document.getElementById('status').textContent)", timeout=60)
    assert tab.evaluate("document.getElementById('progress').value") > 0
    screenshot(tab, tmp_path, "2-progress")

    tab.wait_until("document.querySelector('#result video')?.readyState >= 2", timeout=60)
    assert tab.evaluate("document.querySelector('#result video').src").startswith(f"{base}/videos/")
    assert tab.evaluate("document.querySelector('#result video').videoWidth") == 854
    start = tab.wait_until("document.querySelector('#result video').currentTime", timeout=10)
    tab.wait_until(f"document.querySelector('#result video').currentTime > {start} + 0.3", timeout=10)
    assert tab.evaluate("document.getElementById('status').textContent") == "succeeded"
    screenshot(tab, tmp_path, "3-playing")

    assert ended(tab, BROKEN) == "failed"
    assert marked_lines(tab) == [[str(BROKEN_LINE), BROKEN.splitlines()[BROKEN_LINE - 1]]]
    error = tab.evaluate("document.getElementById('error').textContent")
    assert error.startswith("The script could not be rendered: NameError: name 'angle' is not defined")
    assert f'File "scene.py", line {BROKEN_LINE}, in construct' in error
    assert tab.evaluate("document.querySelector('#result').childElementCount") == 0
    screenshot(tab, tmp_path, "4-error")

    # What a script says is shown as text, never made HTML; the earlier line is no longer marked.
    assert ended(tab, MARKUP) == "failed"
    assert marked_lines(tab) == [["6", MARKUP.splitlines()[5]]]
    assert "ValueError: <img src=x onerror=" in tab.evaluate("document.getElementById('error').textContent")
    assert tab.evaluate("document.querySelector('#error *') === null && document.title === 'Try a scene: Manim render worker'")
    assert tab.errors == []


def test_the_page_serves_only_its_files():
    assert (page := local.page_file("/")) and page[:2] == (200, local.HTML)
    assert (script := local.page_file("/static/page.js")) and script[:2] == (200, local.JS)
    for outside in ("/static/../handler/app.py", "/static/codemirror/mode/python/test.js", "/index.html", "/static/"):
        assert local.page_file(outside) is None


def test_without_codemirror_its_files_answer_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(local, "CODEMIRROR", tmp_path / "absent")
    answer = local.page_file("/static/codemirror/codemirror.js")
    assert answer is not None
    status, content_type, body = answer
    assert (status, content_type) == (500, "text/plain; charset=utf-8")
    missing = tmp_path / "absent" / "lib" / "codemirror.js"
    assert body.decode() == f"{missing} is missing: install Debian's libjs-codemirror (make serve does).\n"
