"""Property-based fuzzing of the server's own OpenAPI schema (schemathesis + hypothesis): no input, valid or
not, produces a 5xx, and the server is still ready afterwards.

(schemathesis' pytest plugin does not support pytest 9 yet, so the test drives each operation's hypothesis
strategy itself.)"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_fuzzed_requests_never_get_a_server_error(tiny_hf_server, api_key, mode):
    schema = schemathesis.openapi.from_url(tiny_hf_server.url + "/openapi.json")
    operations = [op.ok() for op in schema.get_all_operations()]
    assert {"/v1/completions", "/v1/chat/completions"} <= {op.path for op in operations}
    statuses: list[int] = []
    for op in operations:
        if mode == GenerationMode.NEGATIVE and op.method.upper() != "POST":
            continue  # a GET without parameters has no invalid form
        @FUZZ
        @given(case=op.as_strategy(generation_mode=mode))
        def run(case) -> None:
            response = case.call(headers={"Authorization": f"Bearer {api_key}"}, timeout=120)
            statuses.append(response.status_code)
            case.validate_response(response, checks=[not_a_server_error])

        run()
    assert statuses and all(s < 500 for s in statuses)


def test_server_ready_after_fuzzing(tiny_hf_server):
    assert httpx.get(tiny_hf_server.url + "/ready").status_code == 200
