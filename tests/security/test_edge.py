"""Attacks on the handler itself, through the Lambda runtime: a script the handler's own
parser cannot take, an answer too big for Lambda to return, and SDK configuration planted
where the handler's SDK would read it."""

import json
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler.local import function_url_event
from render.scenes import MAX_LISTED_SCENES
from tests.security import conftest as hostile
from tests.support import scripts
from tests.support.lambda_function import dockerfile_handler, event, function_env
from tests.support.lambda_runtime import LambdaRuntime, lambda_runtime
from tests.support.processes import LOOPBACK, alive
from tests.support.seaweedfs import S3Server

# About 16 KB of code each. The first overflows the parser of Python 3.11 (RecursionError), the
# second that of 3.11 and 3.14 (MemoryError); Python's tokenizer refuses the last (SyntaxError).
NESTED = {
    "attribute-chain": "x = a" + ".b" * 8000,
    "unary-minus": "x = " + "-" * 16000 + "1",
    "parentheses": "x = " + "(" * 5000 + ")" * 5000,
}


def nested_scene(expression: str) -> str:
    return f"from manim import *\n{expression}\n\nclass Nested(Scene):\n    pass\n"


def http_render(body: dict) -> dict:
    """A function URL event posting `body` to /api/render with the suite's token."""
    request = event("function-url-render.json")
    request["body"] = json.dumps(body)
    request["headers"]["authorization"] = f"Bearer {hostile.API_TOKEN}"
    return request


# Class 5: the handler parses every script before the worker sees it.


@pytest.mark.parametrize("expression", NESTED.values(), ids=NESTED.keys())
def test_a_script_nested_too_deeply_to_parse_is_a_422_not_a_lambda_error(function, render, expression):
    code = nested_scene(expression)
    assert len(code) > 10_000

    answer = render(code)
    assert answer.get("statusCode") == 422, answer  # not {"errorType": "RecursionError", "stackTrace": ...}
    assert answer["errors"]["class"] == "script_error"  # TooDeeplyNested where the parser gave up

    result = function.invoke(http_render({"codeContent": code, "quality": "-ql"}))
    assert result.get("statusCode") == 422, result
    assert json.loads(result["body"])["errors"]["type"] == answer["errors"]["type"]
    assert "handler/" not in result["body"] and "ast.py" not in result["body"]


# Class 3: every answer well under Lambda's 6 MB.


def test_thousands_of_scenes_give_a_bounded_answer(render, next_render_is_correct):
    code = "from manim import *\n" + "".join(f"class Scene{index}(Scene):\n    pass\n" for index in range(3000))
    answer = render(code)
    assert answer["statusCode"] == 422 and answer["errors"]["type"] == "SeveralScenesFound", answer
    assert len(answer["errors"]["scenes"]) == MAX_LISTED_SCENES
    assert "3000 scenes" in answer["message"]
    assert len(json.dumps(answer)) < 4096

    name = "Absent" * 500_000  # a 3 MB class name: the answer used to carry it twice
    answer = render(code, sceneName=name)
    assert answer.get("statusCode") == 422 and answer["errors"]["type"] == "SceneNotFound", str(answer)[:300]
    assert len(json.dumps(answer)) < 4096
    next_render_is_correct()


# Class 6: the SDK's configuration.
#
# Scripts run as the handler's user and can write anywhere it can, /tmp included, which is the
# function's HOME. botocore reads ~/.aws/config whenever a client is made, and service models
# and endpoint rules from ~/.aws/models before its own. So a script can plant files that send
# the requests of every client made afterwards (signed with the function's credentials, or
# answered by the attacker: a token it chooses) wherever it likes. Both are planted here, each
# pointing at a listener that records whoever connects.

# The API's own 500 body.
INTERNAL = {"message": "The worker failed; this is our fault.", "errors": {"type": "InternalError", "class": "internal"}}
# The function users' shared ~/.aws under the RIE (HOME=/tmp): only a plant makes it.
PLANTED = Path("/tmp/.aws")
TOKEN_PARAMETER = "/manim-worker/api-token"
# This file's own functions are environments of their own, so each its own sandbox user (a
# bare uid, as on Lambda): an environment removes whatever else its user runs or leaves.
FUNCTION_USER = hostile.FUNCTION_UID + 1

PLANT = """\
import json, os
from manim import *

RULES = {{
    "version": "1.0",
    "parameters": {{"Region": {{"type": "String", "builtIn": "AWS::Region"}}}},
    "rules": [{{"type": "endpoint", "conditions": [], "endpoint": {{"url": "{trap}"}}}}],
}}
MODELS = {{"ssm": "2014-11-06", "s3": "2006-03-01", "lambda": "2015-03-31"}}


class Plant(Scene):
    def construct(self):
        planted = []
        if "{what}" == "config":
            os.makedirs("/tmp/.aws", exist_ok=True)
            with open("/tmp/.aws/config", "w") as config:
                config.write("[default]\\nendpoint_url = {trap}\\n")
            planted.append("config")
        else:
            for service, version in MODELS.items():
                folder = f"/tmp/.aws/models/{{service}}/{{version}}"
                os.makedirs(folder, exist_ok=True)
                with open(f"{{folder}}/endpoint-rule-set-1.json", "w") as rules:
                    json.dump(RULES, rules)
                planted.append(service)
        raise RuntimeError("planted " + " ".join(planted))
"""


def _rules(url: str) -> dict:
    """Endpoint rules that send every request to `url`."""
    return {
        "version": "1.0",
        "parameters": {"Region": {"type": "String", "builtIn": "AWS::Region"}},
        "rules": [{"type": "endpoint", "conditions": [], "endpoint": {"url": url}}],
    }


class Listener:
    """A TCP listener on loopback that records the first bytes of every connection and
    answers `reply` (nothing: it closes)."""

    def __init__(self, reply: bytes = b"") -> None:
        self._server = socket.create_server((LOOPBACK, 0))
        self.port = self._server.getsockname()[1]
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.received: list[bytes] = []
        self._reply = reply
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return  # closed
            with connection:
                connection.settimeout(2)
                try:
                    self.received.append(connection.recv(4096))
                    connection.sendall(self._reply)
                except OSError:
                    self.received.append(b"")

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def trap() -> Iterator[Listener]:
    """Where planted SDK configuration points: nothing of the function may ever connect."""
    listener = Listener()
    yield listener
    listener.close()


@pytest.fixture
def proxy() -> Iterator[Listener]:
    """The function's HTTPS proxy: it records where the SDK meant to go (the CONNECT line) and
    refuses, so that nothing leaves this machine for AWS."""
    listener = Listener(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    yield listener
    listener.close()


@pytest.fixture
def clean_home() -> Iterator[None]:
    """No ~/.aws in the function users' HOME before or after (a plant would stay in /tmp)."""
    shutil.rmtree(PLANTED, ignore_errors=True)
    yield
    shutil.rmtree(PLANTED, ignore_errors=True)


@pytest.fixture
def token_function(
    clean_home: None, s3_server: S3Server, hostile_bucket: str, lambda_task_root: Path, proxy: Listener
) -> Iterator[LambdaRuntime]:
    """The function with its token in SSM (`API_TOKEN_PARAMETER`): its first authenticated
    request reads it through the SDK. SSM is AWS's own endpoint, reached through `proxy`.

    Run under the RIE on this machine even with --image: the planted files must outlive the
    runtime, as /tmp does when the emulator restarts it, and a container's tmpfs does not."""
    env = function_env(
        s3_server,
        hostile_bucket,
        API_TOKEN_PARAMETER=TOKEN_PARAMETER,
        HTTPS_PROXY=proxy.url,
        RENDER_TIMEOUT_SECONDS=str(hostile.TIMEOUT_SECONDS),
    )
    with lambda_runtime(dockerfile_handler(), lambda_task_root, env, user=FUNCTION_USER) as runtime:
        yield runtime


def plant(function: LambdaRuntime, what: str, trap: Listener) -> None:
    """A script plants SDK configuration for `trap` in /tmp/.aws (a direct invoke: no token).

    The function removes what a job leaves outside its folder (test_leftovers.py), so the
    plant is gone after the job; to test the SDK's own defence alone, the same files are then
    put back as the function's user would have left them, had that removal failed."""
    answer = function.invoke({"codeContent": PLANT.format(what=what, trap=trap.url), "quality": "-ql"})
    assert answer.get("statusCode") == 422 and "planted" in answer["message"], answer
    assert not PLANTED.exists(), "the job's files outlived it"
    if what == "config":
        (PLANTED / "config").parent.mkdir(parents=True)
        (PLANTED / "config").write_text(f"[default]\nendpoint_url = {trap.url}\n")
    else:
        for service, version in {"ssm": "2014-11-06", "s3": "2006-03-01", "lambda": "2015-03-31"}.items():
            rules = PLANTED / "models" / service / version / "endpoint-rule-set-1.json"
            rules.parent.mkdir(parents=True)
            rules.write_text(json.dumps(_rules(trap.url)))
    for folder, _, names in os.walk(PLANTED):
        for name in (folder, *(os.path.join(folder, entry) for entry in names)):
            os.chown(name, FUNCTION_USER, FUNCTION_USER)
    assert PLANTED.is_dir() and PLANTED.stat().st_uid == FUNCTION_USER


def restart_runtime(function: LambdaRuntime) -> None:
    """End the function's runtime process, as a crash or a timeout does (and a script can: it
    runs as the same user). The emulator, as Lambda does, starts a new runtime for the next
    invoke, whose init runs again, in the same environment: /tmp is kept."""
    assert function.process is not None
    runtimes = [pid for pid in _children(function.process.pid) if b"awslambdaric" in _cmdline(pid)]
    assert runtimes, function.log_tail()
    for pid in runtimes:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in runtimes) and time.monotonic() < deadline:
        time.sleep(0.05)
    # The emulator reports the exit to the next invoke, and starts the runtime for the one after.
    assert function.invoke(event("function-url-health.json"))["errorType"] == "Runtime.ExitError"
    assert function.invoke(event("function-url-health.json"))["statusCode"] == 200
    assert not set(runtimes) & set(_children(function.process.pid))


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def authenticated(function: LambdaRuntime) -> tuple[int, dict]:
    """The first authenticated request: the function reads its token from SSM."""
    request = function_url_event("GET", "/api/render/status/any-job", {"Authorization": "Bearer some-token"}, b"")
    result = function.invoke(request)
    assert "errorType" not in result, result
    return result["statusCode"], json.loads(result["body"])


@pytest.mark.parametrize("what", ["config", "models"])
@pytest.mark.parametrize("when", ["running", "restarted"])
def test_planted_sdk_configuration_is_never_read(
    token_function: LambdaRuntime, trap: Listener, proxy: Listener, what: str, when: str
):
    """`running`: planted while the environment serves, before the first request that needs a
    client; `restarted`: planted, then the runtime restarts and its init makes every client
    anew. Either way the token is read from AWS's own SSM endpoint, and nothing reaches the
    planted one."""
    plant(token_function, what, trap)
    if when == "restarted":
        restart_runtime(token_function)

    status, body = authenticated(token_function)

    assert trap.received == [], f"the SDK followed the planted {what}: {trap.received[:1]}"
    assert any(seen.startswith(b"CONNECT ssm.") for seen in proxy.received), proxy.received
    # AWS's endpoint cannot be reached from here: the token is unreadable, a fault of ours.
    assert (status, body) == (500, INTERNAL)
    answer = token_function.invoke({"codeContent": scripts.CIRCLE, "quality": "-ql", "cache": False})
    assert "s3Key" in answer, answer  # and S3 is still the deployment's
    assert trap.received == []
