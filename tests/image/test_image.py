"""The image users deploy, built (`make image`) and run here as Lambda and `sam local` run it.

- `sam local invoke` of the bundled events, unchanged, through the engine DOCKER_HOST names,
  storing to SeaweedFS on the host through the bundled env-vars file;
- the image read-only, as an arbitrary uid with a tmpfs /tmp, under the RIE;
- what the image holds: exactly the lock's packages for its Python, and no build tools;
- the test suite on the image's own Python and package set.
(The security suite runs against the same container too: `make image-test` passes --image.)
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from samtranslator.yaml_helper import yaml_parse

from tests.image.base import build_image, locked_manim_version
from tests.support.container_runtime import LAMBDA_TMPFS, container_runtime
from tests.support.lambda_function import assert_stored_video, event, function_env
from tests.support.seaweedfs import S3Server, seaweed_s3

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
BUILT_TEMPLATE = ROOT / ".aws-sam" / "build" / "template.yaml"
SAM = Path(sys.executable).parent / "sam"
TEST_IMAGE = "renderfunction-tests:latest"
# What the in-image suite needs to build its image: the tests and what they read.
TEST_CONTEXT = (
    *("pyproject.toml", "uv.lock", "Dockerfile", "template.yaml", "samconfig.toml", ".dockerignore", ".ci", "events", "tests"),
    *("openapi.json", "direct-invoke.schema.json"),  # the contract, which tests/unit/test_openapi.py checks
    *("README.md", "manim_lambda"),  # the client, which the test image installs
)


def run_in_image(engine: Any, image: str, *command: str, **options: Any) -> tuple[int, str]:
    """Run `command` in a fresh container of `image` (its entrypoint replaced); exit code and output."""
    container = engine.containers.run(image, entrypoint=list(command), detach=True, **options)
    try:
        code = container.wait()["StatusCode"]
        return code, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


# --- sam local invoke --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bridge_s3(engine: Any, image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS on the engine's bridge gateway, this machine's own address on the bridge that
    `sam local invoke` puts its containers on (SAM 1.170 ignores `--docker-network host`)."""
    gateway = engine.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]
    with socket.socket() as probe:
        try:
            probe.bind((gateway, 0))
        except OSError:  # the bridge is made with its first container
            run_in_image(engine, image, "true")
    with seaweed_s3(tmp_path_factory.mktemp("bridge-seaweed"), ip=gateway) as server:
        yield server


@pytest.fixture(scope="module")
def sam_bucket(bridge_s3: S3Server) -> str:
    return bridge_s3.new_bucket("sam")


@pytest.fixture(scope="module")
def env_vars(bridge_s3: S3Server, sam_bucket: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled events/sam-local-env.json, pointed at this module's SeaweedFS and bucket."""
    variables = json.loads((EVENTS / "sam-local-env.json").read_text())
    variables["RenderFunction"] |= {"S3_ENDPOINT": bridge_s3.endpoint_url, "S3_BUCKET_NAME": sam_bucket}
    path = tmp_path_factory.mktemp("sam") / "env.json"
    path.write_text(json.dumps(variables))
    return path


@pytest.fixture(scope="module")
def sam_local(image: str, bridge_s3: S3Server, env_vars: Path):
    """`sam local invoke RenderFunction` of a bundled event; the function's result."""
    resources = yaml_parse(BUILT_TEMPLATE.read_text())["Resources"]
    image_uri = resources["RenderFunction"]["Properties"]["ImageUri"]
    assert image_uri == image, f"{BUILT_TEMPLATE} names {image_uri}, not the image under test"
    credentials = {
        "AWS_ACCESS_KEY_ID": bridge_s3.access_key,
        "AWS_SECRET_ACCESS_KEY": bridge_s3.secret_key,
        "AWS_DEFAULT_REGION": bridge_s3.region,
        "SAM_CLI_TELEMETRY": "0",
    }

    def invoke(name: str) -> dict:
        command = [
            str(SAM), "local", "invoke", "RenderFunction",
            "--template", str(BUILT_TEMPLATE),
            "--event", str(EVENTS / name),
            "--env-vars", str(env_vars),
            "--skip-pull-image",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | credentials
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
        assert result.returncode == 0, f"sam local invoke exited {result.returncode}\n{result.stderr[-3000:]}"
        lines = result.stdout.strip().splitlines()
        assert lines, f"sam local invoke printed no result\n{result.stderr[-3000:]}"
        return json.loads(lines[-1])

    return invoke


def test_sam_local_health_reports_the_latex_tools(sam_local):
    result = sam_local("function-url-health.json")
    assert result["statusCode"] == 200
    body = json.loads(result["body"])
    assert body["message"] == "Health is OK"
    assert body["worker"]["tools"] == {"latex": True, "dvisvgm": True}


def test_sam_local_renders_the_latex_example_into_the_bucket(sam_local, bridge_s3, sam_bucket, tmp_path):
    """The bundled example ends on a MathTex formula: LaTeX and dvisvgm run inside the image."""
    result = sam_local("function-url-render.json")
    body = json.loads(result["body"])
    assert result["statusCode"] == 200, body
    assert re.fullmatch(r"videos/[0-9a-f]{32}/SquareToCircle\.mp4", body["s3Key"])
    assert_stored_video(bridge_s3, sam_bucket, body, tmp_path, seconds=3.5)


def test_sam_local_direct_invoke_returns_the_body(sam_local, bridge_s3, sam_bucket, tmp_path):
    body = sam_local("direct-render.json")
    assert body["s3Key"].endswith("/SquareToCircle.mp4"), body
    assert_stored_video(bridge_s3, sam_bucket, body, tmp_path, seconds=3.5)


def test_sam_local_script_error_is_a_422(sam_local):
    result = sam_local("bad-script-error.json")
    assert result["statusCode"] == 422
    assert (result["errors"]["type"], result["errors"]["line"]) == ("NameError", 8)


# --- read-only, arbitrary uid, under the RIE ------------------------------------------------------


@pytest.fixture(scope="module")
def function(image: str, s3_server: S3Server, bucket: str):
    with container_runtime(image, function_env(s3_server, bucket)) as runtime:
        yield runtime


def test_read_only_as_an_arbitrary_uid_it_renders(function, s3_server, bucket, tmp_path):
    body = function.invoke(event("direct-render.json") | {"cache": False})
    assert "s3Key" in body, body
    assert_stored_video(s3_server, bucket, body, tmp_path, seconds=3.5)
    logs = function.log_path.read_text(errors="replace")
    assert "Render worker ready" in logs


def test_nothing_outside_tmp_is_writable(function):
    """The root filesystem is read-only as on Lambda, so a script's write there fails: the
    image must not need one either (the render above wrote only under /tmp)."""
    code = (
        "from manim import *\n\nclass Writes(Scene):\n    def construct(self):\n"
        "        open('/var/task/planted.py', 'w').write('x')\n"
    )
    result = function.invoke({"codeContent": code, "quality": "-ql", "cache": False})
    assert result["statusCode"] == 422, result
    assert "Read-only file system" in result["message"] + json.dumps(result["errors"]), result


# --- what the image holds ---------------------------------------------------------------------------

_INSTALLED = """
import importlib.metadata, json, os, platform, sys
def name(n): return n.lower().replace("_", "-").replace(".", "-")
print(json.dumps({
    "installed": {name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()},
    "environment": {
        "implementation_name": sys.implementation.name,
        "implementation_version": platform.python_version(),
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_python_implementation": platform.python_implementation(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    },
}))
"""


def _locked_runtime_packages(environment: dict[str, str]) -> dict[str, str]:
    """The lock's runtime packages (no dev group) whose markers hold in `environment`."""
    uv = ROOT / ".tools" / "bin" / "uv"
    exported = subprocess.run(
        [str(uv), "export", "--quiet", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    wanted = {}
    for raw in exported.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        requirement, _, marker = line.partition(";")
        package, _, version = requirement.strip().partition("==")
        if not marker.strip() or Marker(marker).evaluate(environment):
            wanted[re.sub(r"[-_.]+", "-", package.split("[")[0].lower())] = version
    return wanted


def test_the_image_holds_exactly_the_locked_packages(engine, image):
    code, output = run_in_image(engine, image, "python", "-c", _INSTALLED)
    assert code == 0, output
    found = json.loads(output.strip().splitlines()[-1])
    assert found["environment"]["python_version"] == "3.14", "the base image's Python changed"
    assert found["installed"] == _locked_runtime_packages(found["environment"])
    assert found["installed"]["manim"] == locked_manim_version()


def test_the_image_has_no_build_tools(engine, image):
    tools = ("gcc", "cc", "c++", "make", "pkg-config", "uv", "pip")
    # One name per `command -v`: dash's looks up only the first of several.
    code, output = run_in_image(engine, image, "sh", "-c", f"for tool in {' '.join(tools)}; do command -v $tool; done; true")
    assert code == 0 and output.strip() == "", f"build tools left in the image: {output}"


def test_no_user_is_set_so_sam_local_can_layer_the_emulator(engine, image):
    assert engine.images.get(image).attrs["Config"].get("User") in ("", "0", "root", None)


# --- the test suite on the image's own Python ---------------------------------------------------------


def _context() -> io.BytesIO:
    """The build context of tests/image/test.Dockerfile (the project's .dockerignore keeps
    tests out of the function image, so this one is packed by hand)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in TEST_CONTEXT:
            tar.add(ROOT / name, arcname=name, filter=lambda info: None if "__pycache__" in info.name else info)
        # Podman's builder prefers .containerignore to .dockerignore: an empty one ignores nothing.
        tar.addfile(tarfile.TarInfo(".containerignore"), io.BytesIO())
    buffer.seek(0)
    return buffer


def test_the_suite_passes_on_the_images_python(engine, image, capsys):
    build_image(
        engine,
        fileobj=_context(),
        custom_context=True,
        dockerfile="tests/image/test.Dockerfile",
        tag=TEST_IMAGE,
        buildargs={"IMAGE": image},
    )
    code, output = run_in_image(
        engine,
        TEST_IMAGE,
        "python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
        network_mode="host",
        tmpfs={"/tmp": LAMBDA_TMPFS},
    )  # fmt: skip
    with capsys.disabled():
        print("\n--- the suite inside the image ---\n" + "\n".join(output.splitlines()[-15:]))
    assert code == 0, output[-6000:]
    assert re.search(r"\d+ passed", output)
