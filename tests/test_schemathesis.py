"""schemathesis against /api/v1/openapi.json on a running server: no 500, and no answer outside the document.

The server is the real ``companion serve --demo`` on 127.0.0.1. Checks that judge
our semantics rather than our contract are left out: a well-formed string that is
not a cursor we issued is rightly refused with 422, which "positive data
acceptance" would count against us.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from server.services.demo import demo_token
from store.models import KeyKind, Plan, Workspace
from tests.conftest import COMPANION, TEST_SECRET, free_port

pytestmark = pytest.mark.anyio

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "missing_required_header",
        "unsupported_method",
    ]
)


async def test_the_api_keeps_to_its_openapi_document(env, companion):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [COMPANION, "serve", "--demo", "--port", str(port)],
        env={**env, "COMPANION_BASE_URL": base, "COMPANION_RUN_WORKERS": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                try:
                    if (await http.get(f"{base}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
        # The fuzzer sends far more than a plan allows in a minute; an Enterprise rate keeps 429 out of its way.
        async with companion.db.transaction() as session:
            await session.execute(update(Workspace).values(plan=Plan.ENTERPRISE, rate_limit_per_minute=1_000_000))
        key = demo_token(TEST_SECRET.encode(), "admin@acme.test", KeyKind.USER)
        run = subprocess.run(
            [
                SCHEMATHESIS, "run", f"{base}/api/v1/openapi.json", "--header", f"Authorization: Bearer {key}",
                "--checks", CHECKS, "--max-examples", "15", "--seed", "20261122", "--no-color",
            ],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
