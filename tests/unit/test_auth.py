"""The optional bearer token: every route but /health needs it once it is configured."""

import json

import boto3
import pytest
from moto import mock_aws

from handler.app import lambda_handler
from handler.local import LocalContext, function_url_event

TOKEN = "s3cret-token-for-tests"


def call(method: str, path: str, body: object = None, token: str | None = None) -> tuple[int, dict, dict]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    result = lambda_handler(function_url_event(method, path, headers, raw), LocalContext())
    return result["statusCode"], json.loads(result["body"]), result["headers"]


# A request that passes authentication is then judged on its own: a bad quality answers 400.
INVALID = {"codeContent": "x", "quality": "-q?"}


@pytest.mark.parametrize("token", [None, "wrong", "", TOKEN + "x", TOKEN[:-1]])
def test_missing_or_wrong_tokens_are_401(configure, token):
    configure(API_TOKEN=TOKEN)
    status, body, headers = call("POST", "/api/render", INVALID, token)
    assert status == 401
    assert body == {"message": "Missing or invalid bearer token.", "errors": {"type": "Unauthorized"}}
    assert headers["WWW-Authenticate"] == "Bearer"


def test_authentication_comes_before_validation(configure):
    configure(API_TOKEN=TOKEN)
    assert call("POST", "/api/render", b"{not json")[0] == 401


def test_the_right_token_passes(configure):
    configure(API_TOKEN=TOKEN)
    assert call("POST", "/api/render", INVALID, TOKEN)[0] == 400


def test_health_stays_open(configure):
    configure(API_TOKEN=TOKEN)
    assert call("GET", "/health")[0] == 200


def test_no_token_configured_means_no_token_needed():
    assert call("POST", "/api/render", INVALID)[0] == 400


def test_direct_invokes_are_authorised_by_iam_alone(configure):
    configure(API_TOKEN=TOKEN)
    assert lambda_handler(INVALID, LocalContext())["statusCode"] == 400


def test_the_token_can_come_from_an_ssm_secure_string(configure, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        boto3.client("ssm").put_parameter(Name="/manim-worker/api-token", Value=TOKEN, Type="SecureString")
        configure(API_TOKEN_PARAMETER="/manim-worker/api-token")
        assert call("POST", "/api/render", INVALID, TOKEN)[0] == 400
        assert call("POST", "/api/render", INVALID, "wrong")[0] == 401
