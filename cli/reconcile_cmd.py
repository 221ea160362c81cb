"""``exchangectl reconcile``: ask the exchange to reconcile two jurisdictions and print the discrepancies.

The exchange owns reconciliation (``POST /v1/reconciliations``); the command is its operator's
front end, authenticated as the stack's operator client or with ``--token``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import typer

from cli.common import JsonOption, StackInfo, StackOption, console, emit_json, emit_table, err_console

# The exchange's discrepancy case (GET /v1/discrepancies): what an operator scans first. A case
# names no subject and no record key to an operator (DESIGN section 10); its id is what a resolution takes.
PREFERRED_COLUMNS = [
    "kind",
    "record_kind",
    "division_a",
    "division_b",
    "missing_at",
    "duplicated_at",
    "fields",
    "state",
]


def _discrepancies(client: httpx.Client, answer: dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(answer.get("discrepancies"), list):
        return list(answer["discrepancies"])
    rid = answer.get("reconciliation_id") or answer.get("id")
    if rid is None:
        return []
    r = client.get("/v1/discrepancies", params={"reconciliation_id": str(rid), "limit": 1000})
    r.raise_for_status()
    body = r.json()
    return list(body if isinstance(body, list) else body.get("items", body.get("discrepancies", [])))


def reconcile(
    division_a: str = typer.Argument(..., help="one jurisdiction of the pair, e.g. 320412"),
    division_b: str = typer.Argument(..., help="the other, e.g. 440703"),
    url: str | None = typer.Option(None, "--url", envvar="EXCHANGE_URL", help="the exchange's base URL"),
    token: str | None = typer.Option(
        None, "--token", envvar="EXCHANGECTL_TOKEN", help="operator bearer credential"
    ),
    timeout: float = typer.Option(120.0, help="seconds to wait for the exchange"),
    stack: Path | None = StackOption,
    as_json: bool = JsonOption,
) -> None:
    """Run a reconciliation (清理清查) for a jurisdiction pair on the exchange and print the discrepancies."""
    info = StackInfo(stack)
    base = url or info.url("migrant_exchange")
    credential = token or info.token("operator")
    if not credential:
        raise typer.BadParameter("no operator credential: pass --token", param_hint="--token")
    headers = {
        "Authorization": f"Bearer {credential}",
        "Idempotency-Key": f"exchangectl-{division_a}-{division_b}-{_now()}",
    }
    with httpx.Client(base_url=base, timeout=timeout, headers=headers) as client:
        try:
            r = client.post("/v1/reconciliations", json={"division_a": division_a, "division_b": division_b})
        except httpx.HTTPError as e:
            err_console.print(f"[red]the exchange at {base} did not answer: {type(e).__name__}")
            raise typer.Exit(2) from None
        if r.status_code in (404, 405):
            err_console.print(
                f"[red]the exchange at {base} offers no reconciliation endpoint (HTTP {r.status_code})"
            )
            raise typer.Exit(2)
        if r.status_code >= 400:
            err_console.print(f"[red]reconciliation refused (HTTP {r.status_code}): {r.text[:500]}")
            raise typer.Exit(1)
        answer = r.json()
        found = _discrepancies(client, answer)
    if as_json:
        emit_json({"reconciliation": answer, "discrepancies": found})
        return
    summary = {k: v for k, v in answer.items() if not isinstance(v, list | dict)}
    console.print(", ".join(f"{k}: {v}" for k, v in summary.items()))
    columns = sorted({k for d in found for k, v in d.items() if not isinstance(v, list | dict)})[:8]
    emit_table(
        f"{len(found)} discrepancies between {division_a} and {division_b}", found, columns or ["kind"]
    )


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
