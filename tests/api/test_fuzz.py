"""Property-based fuzzing of every endpoint from the served OpenAPI document (schemathesis).

Each operation gets a bounded number of generated requests, derandomised so that CI runs the
same cases every time (set ATW_FUZZ_EXAMPLES higher to search further locally). A 500, an
undocumented status code or content type, or a body that violates its documented schema fails.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from django.core.asgi import get_asgi_application
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from django_atw.api.openapi import build_document
from django_atw.tokens import create_token
from tests.api.conftest import ALL_PERMS, _make_user, bearer

EXAMPLES = int(os.environ.get("ATW_FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def fuzz_headers(transactional_db: Any) -> dict[str, str]:
    """A bearer token of a user holding every task permission, and one task of theirs to find."""
    _make_user("fuzzer", ALL_PERMS, staff=False, active=True)
    token, _row = create_token("fuzzer")
    return bearer(token)


# The document the API serves at /atw/openapi.json (test_meta checks they are the same), loaded
# at import because schemathesis generates one test per operation while collecting.
schema = schemathesis.openapi.from_dict(build_document("/atw/"))
schema.app = get_asgi_application()
# A schema-valid body may still name an unknown task type or params its function does not take
# (400), or a taken task id (409): what it must never get is a 422 (validation stricter than the
# document). 404 and 409 are in schemathesis's default list already.
schema.config.checks.positive_data_acceptance.expected_statuses = ["2xx", "400", "401", "403", "404", "409"]


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_endpoint_answers_500_or_breaks_its_schema(case: Any, fuzz_headers: dict[str, str]) -> None:
    # A cursor is opaque: a schema-valid string that this API never issued is rightly refused.
    excluded = [positive_data_acceptance] if (case.query or {}).get("cursor") else []
    case.call_and_validate(headers=fuzz_headers, checks=CHECKS, excluded_checks=excluded)
