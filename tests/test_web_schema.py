"""Schemathesis against the OpenAPI schema the server publishes: for inputs made from the
schema (and inputs that break it), no server error, and every answer, errors included,
matches the schema (its status code, content type and body are the ones published).

A schema-valid request may still be refused (a formula that does not parse is a string the
schema allows), so the checks that expect every such request to succeed are left out."""
import warnings

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (content_type_conformance,  # noqa: E402
                                               response_schema_conformance,
                                               status_code_conformance)

from gradfit.web.app import create_app  # noqa: E402

LOOPBACK = {"host": "127.0.0.1"}          # the Guard answers loopback Hosts only
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(), headers=LOOPBACK)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_answers_match_the_schema(case):
    case.call_and_validate(headers=LOOPBACK, checks=[
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_schema_conformance])
