"""A property run over the OpenAPI document: generated requests for every operation, no 5xx, answers as documented.

schemathesis reads the app's own /openapi.json and, for each operation, generates requests from
its schema (derandomized: the same requests every run). Each answer must be no server error, have a status the
operation documents, and a body matching the schema documented for that status (errors included:
``{"detail": "..."}`` as server/api/openapi.py says). The app runs in-process with its real
lifespan, store and scheduler.

Left out: ``POST /api/searches``, whose valid requests start training runs (its own tests drive it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from server.app import create_app
from server.config import Settings

# The host the in-process client sends; the app is told it is one of its own (server/security.py).
HOST = "testserver"
ORIGIN = f"http://{HOST}"
# Hypothesis examples per operation; with schemathesis's coverage phase (boundary and invalid values
# of each parameter) about 1,300 requests in all, some 30 s on 2 busy cores, warm-up included.
EXAMPLES_PER_OPERATION = 20
MIN_CALLS = 500  # requests to documented operations: the run must not collapse to a handful

EXCLUDED = {"method": "POST", "path": "/api/searches"}


# The app is built when the module is collected (cheap: its lifespan, the warm-up and the scheduler, starts
# with the first request), and its document read from it directly.
_DATA = tempfile.TemporaryDirectory(prefix="dlplay-openapi-")  # removed when the test process ends
_DATA_DIR = Path(_DATA.name)
APP = create_app(Settings(data_dir=_DATA_DIR, static_dir=_DATA_DIR / "no-static", allowed_hosts=HOST,
                          max_sessions_per_ip_per_hour=10_000))
FULL_SCHEMA = schemathesis.openapi.from_dict(APP.openapi())
FULL_SCHEMA.app = APP  # requests go to the app in-process (schemathesis's ASGI transport)
SCHEMA = FULL_SCHEMA.exclude(**EXCLUDED)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Requests made, per "METHOD path": the last test checks the run was not a handful.
CALLS: dict[str, int] = {}


@SCHEMA.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case):
    name = f"{case.method} {case.path}"
    CALLS[name] = CALLS.get(name, 0) + 1
    case.call_and_validate(headers={"origin": ORIGIN}, checks=CHECKS)


def test_the_run_covered_every_operation_with_a_few_hundred_requests():
    """(schemathesis also tries methods an operation does not have; those count as extra.)"""
    operations = {f"{op.method.upper()} {op.path}" for op in (result.ok() for result in FULL_SCHEMA.get_all_operations())}
    operations.discard(f"{EXCLUDED['method']} {EXCLUDED['path']}")
    assert operations <= set(CALLS), f"never called: {sorted(operations - set(CALLS))}"
    assert sum(CALLS[name] for name in operations) >= MIN_CALLS, CALLS
