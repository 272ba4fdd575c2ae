"""GET /openapi.json: the API description, complete, and true to what the app answers."""

import json
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from app import create_app
from capgo_stats import protocol
from capgo_stats.web.ops import OPENAPI

DOCUMENT = json.loads(OPENAPI.read_text())
IGNORED_METHODS = {"HEAD", "OPTIONS"}  # Werkzeug answers these for every route by itself


def openapi_path(rule: str) -> str:
    """A Werkzeug rule as an OpenAPI path: /stats/devices/<id> is /stats/devices/{id}."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def app_operations(app) -> set[tuple[str, str]]:
    """Every (method, path) the app routes, static files aside."""
    return {
        (method.lower(), openapi_path(rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - IGNORED_METHODS
    }


def documented_operations() -> set[tuple[str, str]]:
    """Every (method, path) that openapi.json describes."""
    return {(method, path) for path, item in DOCUMENT["paths"].items() for method in item}


def test_every_route_of_the_app_is_in_openapi_json(app):
    missing = app_operations(app) - documented_operations()
    assert not missing, f"add these routes to openapi.json: {sorted(missing)}"


def test_openapi_json_describes_no_route_the_app_lacks(app):
    assert documented_operations() - app_operations(app) == set()


def test_every_get_route_without_parameters_answers_head(app, client):
    paths = [r.rule for r in app.url_map.iter_rules() if "GET" in r.methods and "<" not in r.rule]
    assert "/metrics" in paths
    for path in paths:
        response = client.head(path)
        assert response.status_code == 200, path
        assert response.data == b"", path


def test_openapi_json_is_served_as_kept_in_the_repository(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.data == OPENAPI.read_bytes()
    assert response.json["openapi"].startswith("3.1.")


def test_the_documented_actions_are_the_known_actions():
    documented = DOCUMENT["components"]["schemas"]["Event"]["properties"]["action"]["enum"]
    assert sorted(documented) == sorted(protocol.KNOWN_ACTIONS)


def test_the_documented_field_limits_are_the_enforced_limits():
    fields = DOCUMENT["components"]["schemas"]["Event"]["properties"]
    enforced = {**protocol.REQUIRED, **protocol.OPTIONAL}
    del enforced["action"]  # an enum: the test above
    assert {name: fields[name]["maxLength"] for name in enforced} == enforced
    metadata = fields["metadata"]
    assert metadata["maxProperties"] == protocol.METADATA_MAX_KEYS
    assert metadata["propertyNames"]["maxLength"] == protocol.METADATA_MAX_KEY
    assert metadata["additionalProperties"]["maxLength"] == protocol.METADATA_MAX_VALUE


schema = schemathesis.openapi.from_path(OPENAPI)


# One fresh database per operation, shared by its examples; a few dozen examples per operation
# (with schemathesis' coverage phase: wrong methods, boundary and invalid values) keep the run
# to seconds.
@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(case, app):
    case.call_and_validate(app=app)


@pytest.fixture
def locked(tmp_path):
    """An app with a read token and an ingest key, called without either."""
    return create_app(
        {
            "TESTING": True,
            "STATS_DB": str(tmp_path / "locked.db"),
            "STATS_READ_TOKEN": "r3ad",
            "STATS_INGEST_KEY": "k3y",
        }
    )


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_schemathesis_finds_the_401_and_403_answers_documented_too(case, locked):
    case.call_and_validate(app=locked)
