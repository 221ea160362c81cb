"""Batched submission for registrar systems: up to 1,000 write items in one request and one transaction."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response

from services.registry.entrypoints import write_kinds
from services.registry.entrypoints.routes_common import Recorder, problems
from services.registry.entrypoints.schemas_batches import MAX_ITEMS, BatchIn, BatchItemIn, BatchOut
from services.registry.service_layer.batches import Outcome, record_each
from shared import inputs
from shared.errors import DomainError
from shared.limits import unstorable_refusal

BATCHES = "/v1/batches"
router = APIRouter(tags=["registry: vital events"])


class BatchTooLarge(DomainError):
    status, problem, title = 413, "max-batch-items", "The batch holds too many items"


@router.post(
    BATCHES,
    response_model=BatchOut,
    summary="Record a batch of vital events",
    response_description="one result per item, in the request's order: the record or its problem+json",
    responses={
        **problems(422),
        413: {
            **problems(413)[413],
            "description": f"the body is larger than the limit, or holds more than {MAX_ITEMS} items "
            "(rule max-batch-items)",
        },
    },
)
async def record_batch(body: BatchIn, rec: Recorder, request: Request) -> Response:
    """Up to 1,000 items of any write kind, each checked by its single route's rules and scope.

    The good items commit together with their events in one transaction (each in a savepoint, so a
    refused item leaves nothing behind), and the relay is woken once. The answer is 200 with one
    result per item: the record, or problem+json naming the field and rule. A database fault fails
    the whole batch (503, nothing written): retry it with the same ``Idempotency-Key``, which also
    makes a repeated batch answer as the first time and write nothing."""
    if len(body.items) > MAX_ITEMS:
        raise BatchTooLarge(
            f"a batch holds at most {MAX_ITEMS} items; this one holds {len(body.items)}: split it",
            field="items",
            rule="max-batch-items",
        )
    # Text PostgreSQL cannot store, found by the edge (``RequestLimitsMiddleware``) in these items.
    unstorable: dict[int, tuple[str, str]] = getattr(request.state, inputs.UNSTORABLE_ITEMS, {})
    prepared = [
        unstorable_refusal(*unstorable[n])
        if n in unstorable
        else write_kinds.prepare(i.kind, i.target, i.body, rec.client, rec.ctx, rec.here)
        for n, i in enumerate(body.items)
    ]
    outcomes = await record_each(rec.conn, prepared)
    return Response(orjson.dumps(_answer(body.items, outcomes)), media_type="application/json")


def _answer(items: list[BatchItemIn], outcomes: list[Outcome]) -> dict[str, object]:
    results = [
        _result(i, item, outcome) for i, (item, outcome) in enumerate(zip(items, outcomes, strict=True))
    ]
    accepted = sum(1 for o in outcomes if o.error is None)
    return {"accepted": accepted, "rejected": len(outcomes) - accepted, "results": results}


def _result(index: int, item: BatchItemIn, outcome: Outcome) -> dict[str, object]:
    kind = item.kind if isinstance(item.kind, str) else None
    if outcome.error is not None:
        return {"index": index, "kind": kind, "status": outcome.error.status, "problem": outcome.error.body()}
    assert kind is not None and outcome.result is not None
    return {
        "index": index,
        "kind": kind,
        "status": write_kinds.KINDS[kind].status,
        "resource": write_kinds.answer(kind, outcome.result),
    }
