"""The handler's edge: what a script can make the handler's own code do (parse it), how big
an answer can get, what an unexpected exception becomes, and which SDK configuration the
handler reads. tests/security/test_edge.py runs the same attacks through the Lambda runtime."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import cast

import boto3
import botocore.session
import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext
from moto import mock_aws

from handler import app
from handler.app import lambda_handler
from handler.errors import MAX_ANSWER_BYTES, AnswerTooLarge, problem
from handler.local import LocalContext, function_url_event
from render import ScriptError, choose_scene
from render.scenes import MAX_LISTED_SCENES

PROJECT = Path(__file__).resolve().parents[2]
# The API's own 500 body: all a caller learns of a fault of ours.
INTERNAL = {"message": "The worker failed; this is our fault.", "errors": {"type": "InternalError", "class": "internal"}}

# About 16 KB each, far under MAX_CODE_BYTES. Which ones overflow Python's parser depends on
# the version: all but the last on 3.11 (RecursionError, MemoryError), the unary minus on 3.14
# too (MemoryError); its tokenizer refuses the last (SyntaxError).
NESTED = {
    "attribute-chain": "x = a" + ".b" * 8000,
    "sum": "x = " + "+".join(["1"] * 8000),
    "unary-minus": "x = " + "-" * 16000 + "1",
    "parentheses": "x = " + "(" * 5000 + ")" * 5000,
}


def overflows_the_parser(code: str) -> bool:
    """Whether this Python's `ast.parse` gives up on `code` with RecursionError or MemoryError."""
    try:
        ast.parse(code)
    except (RecursionError, MemoryError):
        return True
    except SyntaxError:
        return False
    return False


def http(method: str, path: str, body: object = None, **headers: str) -> tuple[int, dict, dict]:
    raw = b"" if body is None else json.dumps(body).encode()
    event = function_url_event(method, path, {"Content-Type": "application/json", **headers}, raw)
    result = lambda_handler(event, LocalContext())
    return result["statusCode"], json.loads(result["body"]), result


def many_scenes(count: int) -> str:
    return "from manim import *\n" + "".join(f"class Scene{index}(Scene):\n    pass\n" for index in range(count))


# Class 5: the handler's own parsing.


def test_some_nesting_overflows_the_parser_of_this_python():
    assert overflows_the_parser(NESTED["unary-minus"])


@pytest.mark.parametrize("code", NESTED.values(), ids=NESTED.keys())
def test_a_script_nested_too_deeply_to_parse_is_the_scripts_error(code):
    with pytest.raises(ScriptError) as caught:
        choose_scene(code)
    assert (caught.value.error_type == "TooDeeplyNested") == overflows_the_parser(code)


@pytest.mark.parametrize("code", NESTED.values(), ids=NESTED.keys())
def test_nesting_answers_422_over_http_and_on_a_direct_invoke(code, local_store):
    status, body, _ = http("POST", "/api/render", {"codeContent": code, "quality": "-ql"})
    assert status == 422, body
    assert body["errors"]["class"] == "script_error"
    direct = lambda_handler({"codeContent": code, "quality": "-ql"}, LocalContext())
    assert direct["statusCode"] == 422 and direct["errors"] == body["errors"]


def test_an_unexpected_exception_in_a_route_is_the_apis_500(monkeypatch, local_store):
    def broken(*_args, **_kwargs):
        raise KeyError("/var/task/handler/secret-path.py")

    monkeypatch.setattr(app, "render_and_store", broken)
    status, body, result = http("POST", "/api/render", {"codeContent": "x = 1"})
    assert (status, body) == (500, INTERNAL)
    assert "secret-path" not in result["body"] and "Traceback" not in result["body"]
    # The resolver answers it itself (its exception handler), not only the edge around it.
    event = function_url_event("POST", "/api/render", {}, json.dumps({"codeContent": "x = 1"}).encode())
    resolved = app.app.resolve(event, cast(LambdaContext, LocalContext()))
    assert (resolved["statusCode"], json.loads(resolved["body"])) == (500, INTERNAL)


def test_an_exception_before_the_resolver_is_the_apis_500_too(configure, monkeypatch):
    environment = configure(API_TOKEN="t")

    def unreadable() -> str:
        raise RuntimeError("SSM is down")

    monkeypatch.setattr(environment.token, "value", unreadable)
    assert http("GET", "/api/render/status/some-job", Authorization="Bearer t")[:2] == (500, INTERNAL)
    assert http("GET", "/health")[0] == 200  # the open route reads no token


def test_on_a_direct_invoke_a_fault_of_ours_still_raises(monkeypatch, local_store):
    def broken(*_args, **_kwargs):
        raise KeyError("ours")

    monkeypatch.setattr(app, "render_and_store", broken)
    with pytest.raises(KeyError):
        lambda_handler({"codeContent": "x = 1"}, LocalContext())


# Class 3: every answer bounded.


class _Huge:
    def body(self) -> dict:
        return {"message": "x" * (MAX_ANSWER_BYTES + 1)}


def test_an_answer_over_the_limit_is_replaced_by_the_500_body(monkeypatch, local_store):
    monkeypatch.setattr(app, "render_and_store", lambda *_args, **_kwargs: _Huge())
    status, body, result = http("POST", "/api/render", {"codeContent": "x = 1"})
    assert (status, body) == (500, INTERNAL)
    assert len(result["body"]) < 1000


def test_on_a_direct_invoke_an_answer_over_the_limit_raises_as_ours_do(monkeypatch, local_store):
    monkeypatch.setattr(app, "render_and_store", lambda *_args, **_kwargs: _Huge())
    with pytest.raises(AnswerTooLarge):
        lambda_handler({"codeContent": "x = 1"}, LocalContext())


def test_a_failure_body_over_the_limit_is_ours_wherever_it_goes():
    """problem() is what HTTP errors, direct invokes, job records and chunk markers answer."""
    huge = ScriptError("x" * (MAX_ANSWER_BYTES + 1), error_type="NameError")
    found = problem(huge)
    assert (found.status, found.body) == (500, INTERNAL)


def test_thousands_of_scenes_give_a_bounded_answer(local_store):
    code = many_scenes(3000)
    status, body, result = http("POST", "/api/render", {"codeContent": code, "quality": "-ql"})
    assert status == 422 and body["errors"]["type"] == "SeveralScenesFound"
    assert body["errors"]["scenes"] == [f"Scene{index}" for index in range(MAX_LISTED_SCENES)]
    assert "3000 scenes" in body["message"] and f"first {MAX_LISTED_SCENES} of 3000" in body["message"]
    assert len(result["body"]) < 4096


def test_a_missing_scene_among_thousands_lists_the_first_and_echoes_little(local_store):
    name = "Missing" * 100_000  # 700 KB: a class name as long as the request allows
    status, body, result = http("POST", "/api/render", {"codeContent": many_scenes(3000), "sceneName": name})
    assert status == 422 and body["errors"]["type"] == "SceneNotFound"
    assert len(body["errors"]["scenes"]) == MAX_LISTED_SCENES
    assert "(700000 characters)" in body["message"]
    assert len(result["body"]) < 4096


def test_a_few_scenes_are_all_listed():
    with pytest.raises(ScriptError) as caught:
        choose_scene(many_scenes(MAX_LISTED_SCENES))
    assert len(caught.value.scenes or []) == MAX_LISTED_SCENES
    assert "first" not in caught.value.message


# Class 6: the SDK's configuration.


def test_the_ssm_client_is_made_when_the_environment_is_assembled(configure, monkeypatch):
    """No SDK client is made after assembly: one made later would read the SDK's
    configuration files as a script may have left them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        boto3.client("ssm").put_parameter(Name="/manim-worker/api-token", Value="t0ken", Type="SecureString")
        configure(API_TOKEN_PARAMETER="/manim-worker/api-token")

        def refused(*_args, **_kwargs):
            raise AssertionError("an SDK client was made after the environment was assembled")

        monkeypatch.setattr(botocore.session.Session, "create_client", refused)
        assert http("GET", "/api/render/status/some-job", Authorization="Bearer t0ken")[0] == 404
        assert http("GET", "/api/render/status/some-job", Authorization="Bearer wrong")[0] == 401


PLANTED_ENDPOINT = "http://planted.invalid"
PROBE = """
import json
{first}
import handler  # as awslambdaric imports handler.app: the package first
import boto3, botocore.loaders
client = boto3.client("ssm", region_name="us-east-1")
print(json.dumps({{"endpoint": client.meta.endpoint_url, "models": botocore.loaders.Loader.CUSTOMER_DATA_PATH}}))
"""


def _probe(home: Path, first: str = "", **env: str) -> dict:
    """What a fresh handler process's SDK sees, with HOME=`home`, after running `first`."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "HOME"))}
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(first=first)],
        env={**clean, "HOME": str(home), "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", **env},
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture
def planted_home(tmp_path: Path) -> Path:
    """A HOME whose ~/.aws a script has written, as it can write /tmp (everyone's HOME)."""
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws/config").write_text(f"[default]\nendpoint_url = {PLANTED_ENDPOINT}\n")
    return tmp_path


@pytest.mark.parametrize("first", ["", "import botocore.session"], ids=["handler-first", "botocore-first"])
def test_on_lambda_the_handler_reads_no_sdk_file_under_its_home(planted_home, first):
    """Also when something (a wrapper, a layer) imported botocore before the handler."""
    seen = _probe(planted_home, first, AWS_LAMBDA_RUNTIME_API="127.0.0.1:9001")
    assert seen["endpoint"] == "https://ssm.us-east-1.amazonaws.com"
    assert not seen["models"].startswith(str(planted_home))


def test_off_lambda_a_developers_sdk_files_keep_working(planted_home):
    seen = _probe(planted_home)
    assert seen["endpoint"] == PLANTED_ENDPOINT
    assert seen["models"] == str(planted_home / ".aws/models")


def test_on_lambda_a_deployments_own_config_file_is_kept(planted_home, tmp_path_factory):
    own = tmp_path_factory.mktemp("deployment") / "config"
    own.write_text("[default]\nendpoint_url = http://deployment.invalid\n")
    seen = _probe(planted_home, AWS_LAMBDA_RUNTIME_API="127.0.0.1:9001", AWS_CONFIG_FILE=str(own))
    assert seen["endpoint"] == "http://deployment.invalid"
