"""Checks on the deployment files (Dockerfile, template.yaml, samconfig.toml), all offline.

No Docker engine is needed: the linters and SAM's own validator run as subprocesses, and the
rest reads the files the way a deployer would.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
TEMPLATE = ROOT / "template.yaml"
SAMCONFIG = ROOT / "samconfig.toml"
# The tools come with the dev dependencies, next to the interpreter running the tests.
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} not found in {BIN}; run `uv sync` (it is a dev dependency)"
    return str(path)


def _offline_env() -> dict[str, str]:
    """No credentials, profile or metadata service: the checks must not depend on an account."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        SAM_CLI_TELEMETRY="0",
    )
    return env


def _run(*args: str) -> None:
    result = subprocess.run(
        args, cwd=ROOT, env=_offline_env(), capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, (
        f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )


def _instructions(keyword: str) -> list[str]:
    """Arguments of every Dockerfile instruction with this keyword, continuation lines joined."""
    logical, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    found = []
    for instruction in logical:
        name, _, arguments = instruction.partition(" ")
        if name.upper() == keyword:
            found.append(" ".join(arguments.split()))
    return found


@pytest.fixture(scope="module")
def template() -> dict:
    return yaml_parse(TEMPLATE.read_text())


@pytest.fixture(scope="module")
def function(template: dict) -> dict:
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    assert len(functions) == 1, "expected exactly one AWS::Serverless::Function"
    return functions[0]


# The linters and validators, as CI and a deployer run them.


@pytest.mark.parametrize(
    "dockerfile", [DOCKERFILE, *sorted((ROOT / "tests" / "image").glob("*.Dockerfile"))], ids=lambda path: path.name
)
def test_hadolint_passes_at_warning_threshold(dockerfile: Path) -> None:
    _run(_tool("hadolint"), "--failure-threshold", "warning", str(dockerfile))


def test_sam_validate_plain_passes() -> None:
    # samconfig.toml turns lint on for `sam validate`; the `plain` environment runs SAM's own
    # translator check, which catches SAM errors that cfn-lint does not.
    _run(_tool("sam"), "validate", "--config-env", "plain", "--template-file", str(TEMPLATE))


def test_sam_validate_lint_passes() -> None:
    _run(_tool("sam"), "validate", "--lint", "--template-file", str(TEMPLATE))


def test_cfn_lint_passes() -> None:
    _run(_tool("cfn-lint"), str(TEMPLATE))


# The Dockerfile.


def test_cmd_names_an_existing_handler_in_exec_form() -> None:
    cmds = _instructions("CMD")
    assert len(cmds) == 1, f"expected one CMD, found {cmds}"
    command = json.loads(cmds[0])
    assert isinstance(command, list) and len(command) == 1, f"CMD must be exec form with one handler: {cmds[0]}"
    module_name, _, attribute = command[0].rpartition(".")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attribute, None)), f"{command[0]} is not a callable"


def test_entrypoint_runs_awslambdaric() -> None:
    entrypoints = _instructions("ENTRYPOINT")
    assert len(entrypoints) == 1, f"expected one ENTRYPOINT, found {entrypoints}"
    assert json.loads(entrypoints[0]) == ["python", "-m", "awslambdaric"]


def test_both_stages_build_on_the_manim_image_at_the_locked_version() -> None:
    from tests.image.base import dockerfile_base_tag, locked_manim_version

    stages = _instructions("FROM")
    assert stages == ["manimcommunity/manim:${MANIM_IMAGE_TAG} AS builder", "manimcommunity/manim:${MANIM_IMAGE_TAG} AS runtime"]
    assert dockerfile_base_tag() == f"v{locked_manim_version()}", "the base image's tag must be the locked Manim"


def test_no_user_but_root_so_sam_local_can_layer_its_emulator() -> None:
    # SAM builds its emulator layer as the image's USER; Lambda ignores USER anyway.
    assert _instructions("USER") and all(user in ("0", "root") for user in _instructions("USER"))


def test_image_installs_from_the_lock_and_copies_the_packages() -> None:
    text = DOCKERFILE.read_text()
    assert "uv export" in text and "--frozen" in text and "--no-dev" in text
    copies = " ".join(_instructions("COPY"))
    for source in ("uv.lock", "handler/", "render/"):
        assert source in copies, f"the image does not COPY {source}"


def test_writable_paths_point_at_tmp() -> None:
    env = " ".join(_instructions("ENV"))
    for variable in ("HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR", "TEXMFVAR"):
        assert f"{variable}=/tmp" in env, f"{variable} must live under /tmp on Lambda"


def test_build_context_holds_every_copy_source() -> None:
    # The same .dockerignore matcher that `sam build` uses through docker-py.
    build = pytest.importorskip("docker.utils.build")
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    context = build.exclude_paths(str(ROOT), patterns, dockerfile="Dockerfile")
    for source in ("pyproject.toml", "uv.lock", "handler/app.py", "render/__init__.py"):
        assert source in context, f"{source} is excluded from the build context"
    assert not any(path.startswith((".venv/", ".git/", "tests/")) for path in context)


# The SAM template.


def test_function_is_an_image_built_from_the_dockerfile(function: dict) -> None:
    assert function["Properties"]["PackageType"] == "Image"
    metadata = function["Metadata"]
    assert (ROOT / metadata["DockerContext"] / metadata["Dockerfile"]).resolve() == DOCKERFILE
    assert metadata["DockerTag"]


def test_function_url_is_aws_iam_by_default(template: dict, function: dict) -> None:
    auth = function["Properties"]["FunctionUrlConfig"]["AuthType"]
    assert auth == {"Ref": "FunctionUrlAuthType"}
    parameter = template["Parameters"]["FunctionUrlAuthType"]
    assert parameter["Default"] == "AWS_IAM"
    assert set(parameter["AllowedValues"]) == {"AWS_IAM", "NONE"}


def test_timeout_default_and_max_fit_lambda(template: dict, function: dict) -> None:
    assert function["Properties"]["Timeout"] == {"Ref": "Timeout"}
    parameter = template["Parameters"]["Timeout"]
    assert int(parameter["Default"]) <= 900
    assert int(parameter["MaxValue"]) <= 900


def test_bucket_expires_videos(template: dict) -> None:
    buckets = [r for r in template["Resources"].values() if r["Type"] == "AWS::S3::Bucket"]
    assert len(buckets) == 1
    rules = buckets[0]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert any(
        rule["Status"] == "Enabled" and rule.get("Prefix") == "videos/" and "ExpirationInDays" in rule
        for rule in rules
    ), f"no enabled expiration rule on videos/: {rules}"


def test_s3_access_is_limited_to_videos_and_jobs(template: dict) -> None:
    role = template["Resources"]["RenderFunctionRole"]["Properties"]
    # A conditional policy (Fn::If) counts with its "true" branch.
    policies = [policy["Fn::If"][1] if "Fn::If" in policy else policy for policy in role["Policies"]]
    statements = [s for policy in policies for s in policy["PolicyDocument"]["Statement"]]
    s3_statements = [s for s in statements if str(s["Action"]).startswith(("s3:", "['s3:"))]
    assert s3_statements
    for statement in s3_statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all(action.startswith("s3:") and "*" not in action for action in actions)
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        arns = [resource["Fn::Sub"][0] for resource in resources]
        if actions == ["s3:ListBucket"]:
            assert statement["Condition"]["StringLike"]["s3:prefix"] == ["videos/*", "jobs/*"]
        else:
            assert all(arn.endswith(("/videos/*", "/jobs/*")) for arn in arns), f"{actions} granted beyond: {arns}"


def test_outputs_name_every_way_in(template: dict) -> None:
    assert {"FunctionUrl", "ApiUrl", "BucketName", "FunctionName", "FunctionArn"} <= set(template["Outputs"])


# samconfig.toml.


def test_samconfig_is_ready_for_guided_deploy() -> None:
    config = tomllib.loads(SAMCONFIG.read_text())
    deploy = config["default"]["deploy"]["parameters"]
    assert deploy["stack_name"] == "manim-worker"
    assert deploy["resolve_image_repos"] is True
    assert "CAPABILITY_IAM" in deploy["capabilities"]
    assert config["default"]["validate"]["parameters"]["lint"] is True


def test_jobs_invoke_the_function_itself_without_retries(template: dict, function: dict) -> None:
    name = function["Properties"]["FunctionName"]["Fn::Sub"]
    assert function["Properties"]["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    role = template["Resources"]["RenderFunctionRole"]["Properties"]
    (invoke,) = [p for p in role["Policies"] if isinstance(p, dict) and p.get("PolicyName") == "InvokeSelfForJobs"]
    (statement,) = invoke["PolicyDocument"]["Statement"]
    assert statement["Action"] == "lambda:InvokeFunction"
    assert statement["Resource"]["Fn::Sub"].endswith(":function:" + name)


def test_every_environment_setting_is_one_the_function_reads(function: dict) -> None:
    from handler.settings import Settings

    known = {field.alias for field in Settings.model_fields.values()}
    variables = function["Properties"]["Environment"]["Variables"]
    unknown = {name for name in variables if not name.startswith("POWERTOOLS_")} - known
    assert not unknown, f"set by the template but read by nothing: {unknown}"


def test_the_contract_routes_are_off_unless_the_deployer_turns_them_on(template: dict, function: dict) -> None:
    from handler.settings import Settings

    parameter = template["Parameters"]["OpenApiRoutes"]
    assert function["Properties"]["Environment"]["Variables"]["OPENAPI_ROUTES"] == {"Ref": "OpenApiRoutes"}
    served = {value: Settings.model_validate({"OPENAPI_ROUTES": value}).openapi_routes for value in parameter["AllowedValues"]}
    assert served == {"true": True, "false": False}
    assert served[parameter["Default"]] is False


def test_s3_endpoint_is_declared_empty_so_sam_local_can_set_it(function: dict) -> None:
    # SAM's --env-vars reaches only declared variables; empty means AWS's own S3.
    assert function["Properties"]["Environment"]["Variables"]["S3_ENDPOINT"] == ""


def test_http_api_routes_health_render_and_the_jobs_status_and_cancel(template: dict, function: dict) -> None:
    routes = {
        (event["Properties"]["Method"].upper(), event["Properties"]["Path"]): event["Properties"]
        for event in function["Properties"]["Events"].values()
        if event["Type"] == "HttpApi"
    }
    assert set(routes) == {
        ("GET", "/health"),
        ("POST", "/api/render"),
        ("GET", "/api/render/status/{jobId}"),
        ("POST", "/api/render/cancel/{jobId}"),
    }
    assert all(route["ApiId"] == {"Ref": "HttpApi"} for route in routes.values())
    # Only /health opts out of the API's default authorizer, SigV4.
    assert template["Resources"]["HttpApi"]["Properties"]["Auth"]["DefaultAuthorizer"] == "AWS_IAM"
    assert [path for (_, path), route in routes.items() if "Auth" in route] == ["/health"]


@pytest.mark.parametrize(
    ("parameter", "variable"),
    [("ApiTokenParameterName", "API_TOKEN_PARAMETER"), ("WebhookSecretParameterName", "WEBHOOK_SECRET_PARAMETER")],
)
def test_a_secrets_ssm_parameter_is_passed_and_readable_only_when_named(
    template: dict, function: dict, parameter: str, variable: str
) -> None:
    assert template["Parameters"][parameter]["Default"] == ""
    condition, value, unset = function["Properties"]["Environment"]["Variables"][variable]["Fn::If"]
    assert (value, unset) == ({"Ref": parameter}, {"Ref": "AWS::NoValue"})
    assert template["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]}
    role = template["Resources"]["RenderFunctionRole"]["Properties"]
    (policy,) = [p["Fn::If"] for p in role["Policies"] if "Fn::If" in p and p["Fn::If"][0] == condition]
    assert policy[2] == {"Ref": "AWS::NoValue"}
    (statement,) = policy[1]["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Allow", "ssm:GetParameter")
    assert statement["Resource"]["Fn::Sub"].endswith(":parameter${" + parameter + "}")


def test_chunk_parameter_bounds_match_the_setting(template: dict) -> None:
    from handler.settings import Settings

    parameter = template["Parameters"]["MaxChunks"]
    field = Settings.model_fields["max_chunks"]
    bounds = {type(rule).__name__: rule for rule in field.metadata}
    assert int(parameter["Default"]) == field.default
    assert (int(parameter["MinValue"]), int(parameter["MaxValue"])) == (bounds["Ge"].ge, bounds["Le"].le)


# The container engine for `make image`.


def test_with_no_container_engine_make_image_says_what_to_install(tmp_path: Path) -> None:
    # A PATH with the tools the script needs on this path, neither podman nor docker, no DOCKER_HOST.
    for tool in ("bash", "dirname", "id"):
        (tmp_path / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    env = {"PATH": str(tmp_path), "PODMAN_SOCKET": str(tmp_path / "none.sock")}
    result = subprocess.run(
        ["bash", str(ROOT / ".ci" / "docker-host")], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 1 and result.stdout == ""
    assert "No container engine" in result.stderr and "apt-get install podman runc" in result.stderr
