"""The contract: the checked-in OpenAPI document and direct-invoke schema match the code, and
the contract's routes are served where (and only where) they should be."""

import base64
import gzip
import json
import re
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]  # no stubs in the venv
import pytest

from handler import contract
from handler.app import lambda_handler
from handler.local import LocalContext, function_url_event
from handler.models import DIRECT_INVOKE
from handler.settings import Settings

EVENTS = Path(__file__).parents[2] / "events"
DIRECT_EVENTS = sorted(EVENTS.glob("direct-*.json"))
REGENERATE = "run `make openapi` (python -m handler.contract) and commit the result"


def get(path: str, headers: dict[str, str] | None = None) -> dict:
    return lambda_handler(function_url_event("GET", path, headers or {}, b""), LocalContext())


def body_of(answer: dict) -> bytes:
    raw = answer["body"]
    return base64.b64decode(raw) if answer.get("isBase64Encoded") else raw.encode()


def test_checked_in_openapi_matches_the_resolver():
    assert json.loads(contract.OPENAPI_FILE.read_text()) == contract.openapi_document(), REGENERATE
    assert contract.OPENAPI_FILE.read_text() == contract.dumps(contract.openapi_document()), REGENERATE


def test_checked_in_direct_invoke_schema_matches_the_type_adapter():
    schema = json.loads(contract.DIRECT_INVOKE_FILE.read_text())
    assert schema == contract.direct_invoke_schema(), REGENERATE
    assert {key: value for key, value in schema.items() if key not in ("$schema", "title")} == DIRECT_INVOKE.json_schema(
        by_alias=True
    )


def test_every_route_documents_each_status_it_answers():
    paths = contract.openapi_document()["paths"]
    statuses = {(method, path): set(operation["responses"]) for path, item in paths.items() for method, operation in item.items()}
    assert statuses == {
        ("get", "/health"): {"200", "500"},
        ("post", "/api/render"): {"200", "202", "400", "401", "408", "413", "422", "500", "502"},
        ("get", "/api/render/status/{job_id}"): {"200", "400", "401", "404", "500", "502"},
        ("post", "/api/render/cancel/{job_id}"): {"200", "202", "400", "401", "404", "409", "500", "502"},
    }


def test_validation_is_the_apis_400_not_powertools_422():
    document = contract.openapi_document()
    text = json.dumps(document)
    assert "HTTPValidationError" not in text and "ResponseValidationError" not in text
    schemas = document["components"]["schemas"]
    render = document["paths"]["/api/render"]["post"]["responses"]
    assert render["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/InvalidRequestBody"}
    invalid = schemas["InvalidRequestBody"]
    assert set(invalid["required"]) == {"message", "errors"}
    problems = invalid["properties"]["errors"]["anyOf"][0]
    assert problems == {"type": "array", "items": {"$ref": "#/components/schemas/FieldProblem"}}
    assert set(schemas["FieldProblem"]["required"]) == {"loc", "msg", "type"}
    assert render["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ScriptErrorBody"}
    # Every reference resolves.
    assert set(re.findall(r'"#/components/schemas/(\w+)"', text)) <= set(schemas)


def test_bearer_scheme_request_body_and_examples():
    document = contract.openapi_document()
    assert document["info"]["title"] == contract.TITLE and "SigV4" in document["info"]["description"]
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": contract.BEARER_DESCRIPTION,
    }
    assert document["security"] == [{"bearerAuth": []}, {}]
    assert document["paths"]["/health"]["get"]["security"] == []  # open, as it is
    body = document["paths"]["/api/render"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/RenderRequest"}
    assert body["examples"]["render"]["value"] == contract.RENDER_EXAMPLE
    assert "codeContent" in document["components"]["schemas"]["RenderRequest"]["required"]


def test_documented_bodies_describe_real_answers(configure, local_store):
    configure(LOCAL_STORE_DIR=str(local_store))
    validator = ResponseChecker(contract.openapi_document())
    invalid = function_url_event("POST", "/api/render", {}, b'{"codeContent": "x", "quality": "-qz"}')
    answer = lambda_handler(invalid, LocalContext())
    validator.check("/api/render", "post", answer)
    missing = function_url_event("GET", "/api/render/status/nope", {}, b"")
    validator.check("/api/render/status/{job_id}", "get", lambda_handler(missing, LocalContext()))
    bad_id = function_url_event("GET", "/api/render/status/no%20pe", {}, b"")
    validator.check("/api/render/status/{job_id}", "get", lambda_handler(bad_id, LocalContext()))
    from handler.errors import problem
    from render import ScriptError

    body = problem(ScriptError("NameError: name 'x' is not defined", error_type="NameError", line=3)).body
    validator.check_body("/api/render", "post", 422, body)


class ResponseChecker:
    """Validates an answer's body against the document's schema for its route and status."""

    def __init__(self, document: dict) -> None:
        self.document = document

    def check_body(self, path: str, method: str, status: int, body: object) -> None:
        media = self.document["paths"][path][method]["responses"][str(status)]["content"]["application/json"]
        schema = {**media["schema"], "components": self.document["components"]}
        jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)

    def check(self, path: str, method: str, answer: dict) -> None:
        self.check_body(path, method, answer["statusCode"], json.loads(answer["body"]))


@pytest.mark.parametrize("event", DIRECT_EVENTS, ids=[path.name for path in DIRECT_EVENTS])
def test_every_direct_event_validates_against_the_schema(event: Path):
    payload = json.loads(event.read_text())
    jsonschema.validate(payload, json.loads(contract.DIRECT_INVOKE_FILE.read_text()), cls=jsonschema.Draft202012Validator)
    DIRECT_INVOKE.validate_python(payload, context={"limits": Settings.from_env().request_limits})


def test_direct_schema_refuses_what_the_function_refuses():
    schema = json.loads(contract.DIRECT_INVOKE_FILE.read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"action": "status", "jobId": "no spaces"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"quality": "-ql"}, schema)  # no codeContent


def test_contract_routes_are_off_by_default(configure):
    configure()
    for path in ("/openapi.json", "/swagger", "/swagger/swagger-ui.min.css"):
        answer = get(path)
        assert answer["statusCode"] == 404, path
        assert json.loads(answer["body"])["message"] == f"No route for GET {path}."


def test_contract_routes_need_the_token_unless_enabled(configure):
    configure(API_TOKEN="secret")
    assert get("/openapi.json")["statusCode"] == 401
    configure(API_TOKEN="secret", OPENAPI_ROUTES="true")
    assert get("/openapi.json")["statusCode"] == 200  # open, as /health is
    assert get("/api/render/status/abc")["statusCode"] == 401  # the rest still is not


def test_openapi_json_is_served_when_enabled(configure):
    configure(OPENAPI_ROUTES="true")
    answer = get("/openapi.json")
    assert answer["statusCode"] == 200 and answer["headers"]["Content-Type"] == "application/json"
    document = json.loads(body_of(answer))
    assert document == json.loads(contract.OPENAPI_FILE.read_text())
    assert set(document["components"]["schemas"]["InvalidRequestBody"]["properties"]) == {"message", "errors"}


def test_swagger_ui_uses_only_assets_the_server_serves(configure):
    configure(OPENAPI_ROUTES="true")
    answer = get("/swagger")
    assert answer["statusCode"] == 200 and answer["headers"]["Content-Type"] == "text/html"
    page = body_of(answer).decode()
    urls = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page)
    assert sorted(urls) == ["/swagger/swagger-ui-bundle.min.js", "/swagger/swagger-ui.min.css"]
    assert "//" not in "".join(urls) and "cdn" not in page.lower()
    assert '"InvalidRequestBody"' in page  # the document, embedded
    for url in urls:
        asset = get(url)
        assert asset["statusCode"] == 200 and asset["headers"]["Content-Encoding"] == "gzip"
        data = gzip.decompress(body_of(asset))
        assert data == (contract_assets() / url.rsplit("/", 1)[1]).read_bytes()
    spec = get("/swagger?format=json")  # what Swagger UI's page asks for
    assert json.loads(body_of(spec)) == contract.openapi_document()
    assert get("/swagger/other.js")["statusCode"] == 404


def contract_assets() -> Path:
    from handler.app import SWAGGER_ASSETS

    return SWAGGER_ASSETS


def test_the_local_server_always_serves_the_contract(monkeypatch):
    import handler.local as local

    seen = {}

    class Stop(Exception):
        pass

    def assemble(settings, serving=False):
        seen["settings"] = settings
        raise Stop

    monkeypatch.setattr("handler.environment.Environment.assemble", assemble)
    with pytest.raises(Stop):
        local.serve(Settings.from_env(), 0)
    assert seen["settings"].openapi_routes is True
