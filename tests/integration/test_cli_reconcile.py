"""``exchangectl reconcile`` speaks the exchange's reconciliation contract (DESIGN §7).

The exchange of this build may not offer the endpoint yet (the stack test covers that case), so
here a small HTTP server on loopback answers as the contract says: POST /v1/reconciliations
returns the run with a count, GET /v1/discrepancies?reconciliation_id= the cases.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Header, HTTPException
from typer.testing import CliRunner

from cli.main import app
from devstack.embedded import free_port

RUN = str(uuid.uuid4())
# As an operator reads them: no subject key, no record key (DESIGN section 10).
CASES = [
    {"id": str(uuid.uuid4()), "kind": "missing", "record_kind": "birth", "record_key": None,
     "subject": None, "missing_at": "440703", "duplicated_at": None, "fields": [], "state": "open"},
    {"id": str(uuid.uuid4()), "kind": "field_conflict", "record_kind": "person", "record_key": None,
     "subject": None, "missing_at": None, "duplicated_at": None, "fields": ["name"], "state": "open"},
]  # fmt: skip
seen: list[dict[str, Any]] = []


def _exchange() -> FastAPI:
    api = FastAPI()

    @api.post("/v1/reconciliations", status_code=201)
    def start(body: dict[str, Any], authorization: str = Header()) -> dict[str, Any]:
        if authorization != "Bearer operator.secret":
            raise HTTPException(401)
        seen.append(body)
        return {"reconciliation_id": RUN, **body, "state": "finished", "discrepancies": len(CASES)}

    @api.get("/v1/discrepancies")
    def cases(reconciliation_id: str) -> list[dict[str, Any]]:
        return CASES if reconciliation_id == RUN else []

    return api


@pytest.fixture(scope="module")
def exchange_url() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_exchange(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def test_reconcile_posts_the_pair_and_prints_the_runs_discrepancies(exchange_url: str) -> None:
    args = ["reconcile", "320412", "440703", "--url", exchange_url, "--token", "operator.secret"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert seen[-1] == {"division_a": "320412", "division_b": "440703"}
    assert out["reconciliation"]["discrepancies"] == 2
    assert [d["kind"] for d in out["discrepancies"]] == ["missing", "field_conflict"]

    table = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "2 discrepancies between 320412 and 440703" in table.output
    assert "field_conflict" in table.output and CASES[0]["id"] in table.output


def test_a_refused_credential_is_reported(exchange_url: str) -> None:
    result = CliRunner().invoke(
        app, ["reconcile", "320412", "440703", "--url", exchange_url, "--token", "x.y"]
    )
    assert result.exit_code == 1 and "HTTP 401" in result.output
