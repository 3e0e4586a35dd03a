"""The optional bearer token, for callers that cannot sign requests with SigV4.

IAM (the function URL's `AWS_IAM` auth, or `lambda:InvokeFunction` for direct invokes) stays
the first gate; the token is a second one, for a function URL opened with auth `NONE`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from aws_lambda_powertools.utilities import parameters

from handler.settings import Settings

# How long a token read from SSM is reused before it is read again (so a rotation takes effect).
TOKEN_CACHE_SECONDS = 300


def expected_token(settings: Settings) -> str | None:
    """The token callers must present: `API_TOKEN`, or the SSM SecureString named by
    `API_TOKEN_PARAMETER` (read through Powertools, cached); None when neither is set."""
    if settings.api_token:
        return settings.api_token
    if settings.api_token_parameter:
        return parameters.get_parameter(settings.api_token_parameter, decrypt=True, max_age=TOKEN_CACHE_SECONDS)
    return None


def presents_token(headers: Mapping[str, str], expected: str) -> bool:
    """Whether `Authorization: Bearer <token>` carries the expected token (constant time)."""
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())
