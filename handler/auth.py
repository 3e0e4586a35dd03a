"""Secrets the deployment sets, and the optional bearer token callers present.

IAM (the function URL's `AWS_IAM` auth, or `lambda:InvokeFunction` for direct invokes) stays
the first gate; the token is a second one, for a function URL opened with auth `NONE`. The
webhook secret (handler/callbacks.py) is the other way round: it lets a callback's receiver
tell that the callback came from this deployment.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import cast

import boto3
from aws_lambda_powertools.utilities.parameters import SSMProvider
from botocore.config import Config

# How long a secret read from SSM is reused before it is read again (so a rotation takes effect).
SECRET_CACHE_SECONDS = 300


class SecretSetting:
    """A secret the deployment sets: given in the environment (`value`, e.g. `API_TOKEN`), or
    kept in the SSM SecureString the environment names (`parameter`, e.g.
    `API_TOKEN_PARAMETER`; read through Powertools' SSM provider, cached); none when neither
    is set.

    The SSM client is made here, when the execution environment is assembled, before any
    script has run: an SDK client reads its configuration when it is made, and one made
    later (Powertools' `get_parameter` makes its own on first use) could read files a script
    left behind. Made now, it reads only what the deployment set.
    """

    def __init__(self, value: str | None, parameter: str | None) -> None:
        self._value = value
        self._parameter = parameter
        self._ssm: SSMProvider | None = None
        if not value and parameter:
            client = boto3.client("ssm", config=Config(retries={"mode": "standard"}))
            self._ssm = SSMProvider(boto3_client=client)

    def value(self) -> str | None:
        """The secret, or None when the deployment set none."""
        if self._value:
            return self._value
        if self._ssm is not None and self._parameter:
            return cast(str, self._ssm.get(self._parameter, decrypt=True, max_age=SECRET_CACHE_SECONDS))
        return None


def presents_token(headers: Mapping[str, str], expected: str) -> bool:
    """Whether `Authorization: Bearer <token>` carries the expected token (constant time)."""
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())
