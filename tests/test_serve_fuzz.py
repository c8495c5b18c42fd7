"""Fuzz the judge service's OpenAPI contract with Schemathesis, against a live server on
loopback: whatever a client sends, valid or not, the answer is never a 5xx, and its
status code, content type and body are ones the schema documents."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis (the OpenAPI fuzzer) is not installed"
)

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from test_serve import live_url, model, model_dir  # noqa: E402,F401  (fixtures)

EXAMPLES = 40
"""Examples per operation and mode: bounded so the file runs in well under a minute."""
OPERATIONS = [("GET", "/health"), ("GET", "/v1/model"), ("POST", "/v1/judge")]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def api_schema(live_url):  # noqa: F811
    return schemathesis.openapi.from_url(f"{live_url}/openapi.json")


def test_every_operation_is_fuzzed(api_schema):
    found = {
        (result.ok().method.upper(), result.ok().path) for result in api_schema.get_all_operations()
    }
    assert found == set(OPERATIONS)


# A GET without parameters has no invalid request to generate.
FUZZED = [(method, path, GenerationMode.POSITIVE) for method, path in OPERATIONS] + [
    ("POST", "/v1/judge", GenerationMode.NEGATIVE)
]


@pytest.mark.parametrize(
    "method, path, mode",
    FUZZED,
    ids=[f"{method} {path} {mode.value}" for method, path, mode in FUZZED],
)
def test_no_server_error_and_every_answer_is_documented(api_schema, method, path, mode):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case) -> None:
        case.call_and_validate(checks=CHECKS)

    fuzz()
