"""The client's console script, `manim-lambda`, as a user runs it: the one `uv sync` installed
beside this interpreter, in a folder of the user's, with only the environment given."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI = Path(sys.executable).parent / "manim-lambda"
# Nothing of this machine's AWS configuration reaches the client: only what a test gives it.
_NO_AWS_FILES = {"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true"}


def client_env(**extra: str) -> dict[str, str]:
    """This process's environment without any AWS or API_TOKEN setting, plus `extra`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_") and name != "API_TOKEN"}
    return env | _NO_AWS_FILES | extra


def manim_lambda(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `manim-lambda ARGS` in `cwd` to its end; its exit status and output."""
    return subprocess.run(
        [str(CLI), *args], cwd=cwd, env=env or client_env(), capture_output=True, text=True, timeout=300, check=False
    )
