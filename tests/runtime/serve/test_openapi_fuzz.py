"""schemathesis against the served workbook's /openapi.json: no input earns a 5xx.

Each operation's strategy (valid and invalid bodies generated from the workbook's own input
schema) runs under Hypothesis against the live app.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.runtime.serve.conftest import Served

pytestmark = pytest.mark.slow


def test_no_generated_input_is_a_server_error(support: Served) -> None:
    schema = schemathesis.openapi.from_url(f"{support.url}/openapi.json")
    schema.config.update(base_url=support.url,
                         headers={"Authorization": f"Bearer {support.key}"})
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/run", "/v1/run/stream", "/v1/feedback",
                                               "/healthz", "/metrics"}
    calls = 0
    for operation in operations:
        @settings(max_examples=30, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(checks=[not_a_server_error])

        check()
    assert calls >= 5 * len(operations)
