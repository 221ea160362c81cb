"""Checking events against the published contracts with an independent validator (jsonschema).

The schemas are read from ``docs/contracts/`` (what is published), never regenerated here, and an
event's payload schema is found through its ``dataschema`` (each schema's ``$id``), so a
``dataschema`` that resolves to nothing fails like an invalid payload.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator, ValidationError

from shared.events.contracts import DOCS, ENVELOPE_ID
from shared.events.recording import recorded_by

RECORD_DIR_ENV = "EVENTS_RECORD_DIR"


@functools.cache
def published_validators(directory: Path = DOCS) -> dict[str, Draft202012Validator]:
    """Validators by schema ``$id``, each schema checked against its own metaschema first."""
    found: dict[str, Draft202012Validator] = {}
    for path in sorted((directory / "schemas").glob("*.json")):
        schema = orjson.loads(path.read_bytes())
        Draft202012Validator.check_schema(schema)
        found[schema["$id"]] = Draft202012Validator(
            schema, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
    return found


def _rule(error: ValidationError) -> str:
    """Where and which rule, from the schema's side: the value itself is never repeated."""
    return f"{error.json_path} breaks {error.validator} {str(error.validator_value)[:120]}"


def event_problems(doc: Any) -> list[str]:
    """Why an event breaks its contract (envelope, dataschema, payload); empty when it keeps it."""
    validators = published_validators()
    if not isinstance(doc, dict):
        return ["not a JSON object"]
    problems = [f"envelope: {_rule(e)}" for e in validators[ENVELOPE_ID].iter_errors(doc)]
    payload = validators.get(str(doc.get("dataschema")))
    if payload is None:
        return [*problems, f"dataschema {doc.get('dataschema')!r} resolves to no published schema"]
    if payload.schema.get("x-event-type") != doc.get("type"):
        problems.append(
            f"dataschema names {payload.schema.get('x-event-type')}, the event is {doc.get('type')}"
        )
    problems += [f"data: {_rule(e)}" for e in payload.iter_errors(doc.get("data"))]
    return problems


def check_recorded(directory: Path) -> tuple[Counter[str], list[str]]:
    """Every event recorded under ``directory``: counts by type, and one line per broken one
    (the type and the rule, never the values: payloads carry identity numbers).

    A run records some 300,000 events, two thirds of them the same bytes published again (an
    outbox re-sent after a broker reset, a relay that lost its lock), and jsonschema takes
    ~0.25 ms for each: each distinct event is checked once, in one process per core."""
    seen: dict[bytes, tuple[str, int]] = {}  # event bytes -> (first file, times recorded)
    for path in sorted(directory.glob("*.jsonl")):
        for value in recorded_by(path):
            name, times = seen.get(value, (path.name, 0))
            seen[value] = (name, times + 1)
    distinct = [(name, value, times) for value, (name, times) in seen.items()]
    workers = os.cpu_count() or 1
    chunks = [distinct[i :: workers * 4] for i in range(workers * 4)]
    types: Counter[str] = Counter()
    broken: list[str] = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for chunk_types, chunk_broken in pool.map(_check_events, chunks):
            types.update(chunk_types)
            broken += chunk_broken
    return types, broken


def _check_events(events: list[tuple[str, bytes, int]]) -> tuple[Counter[str], list[str]]:
    types: Counter[str] = Counter()
    broken: list[str] = []
    for name, value, times in events:
        doc = orjson.loads(value)
        kind = str(doc.get("type")) if isinstance(doc, dict) else "?"
        types[kind] += times
        for problem in event_problems(doc):
            broken.append(f"{name}: {kind} {doc.get('id') if isinstance(doc, dict) else ''}: {problem[:300]}")
    return types, broken
