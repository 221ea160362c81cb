"""Who sends what to whom when an operator has a discrepancy corrected. Pure functions.

The owner of a record is the jurisdiction where it was registered (each registry reports, per
record, where its copy came from). A repair always carries the owner's word:

* **missing**: the side that holds the record sends it whole to the side that lacks it. When the
  holder is the owner, the lacking side takes it as the owner's; when the lacking side is the
  owner (it lost its own record), it takes the copy back only if it agrees with its own log.
* **field_conflict**: the owner sends its values; the other side brings its copy in line.
* **duplicate** (one birth registered twice): the owner of the second copy retires it at home
  and tells the other side, which retires its copy too if it holds one.

A record registered by a third jurisdiction is not repaired between these two: neither may speak
for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import RuleViolation

RETIRED = "retired_as_duplicate_of"  # the changes of a duplicate retired (docs/repair.md, step 3)


@dataclass(frozen=True)
class RepairPlan:
    sender: str  # the side whose registry sends the repair
    target: str  # the side whose feedback closes the case
    action: str  # send | retire
    owner: str  # where the record was registered
    key: str  # the record's reconciliation key at the sender
    kept_key: str | None = None  # retire: the copy that stays

    def as_resolution(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "sender": self.sender,
            "target": self.target,
            "registry_action": self.action,
        }


def plan(case: Mapping[str, Any], owner: str | None) -> RepairPlan:
    """The repair that resolves ``case``; ``owner``, when the operator names it, must be the record's."""
    kind = case["kind"]
    if kind == "sequence_gap":
        raise RuleViolation(
            "a sequence gap is dismissed, not corrected", field="action", rule="gap-dismiss-only"
        )
    a, b = case["division_a"], case["division_b"]
    detail = case["detail"] or {}
    if kind == "missing":
        holder = b if case["missing_at"] == a else a
        found = _owner(detail.get("owner"), owner, holder, (a, b))
        return RepairPlan(holder, case["missing_at"], "send", found, case["record_key"])
    if kind == "duplicate":
        held = detail.get("duplicated_at") or [case["duplicated_at"]]
        found = _owner(detail.get("owner"), owner, held[0], (a, b))
        if found not in held:
            raise RuleViolation(
                "the duplicate is retired by its owner, which must hold it",
                field="owner",
                rule="owner-holds-duplicate",
            )
        target = b if found == a else a
        return RepairPlan(found, target, "retire", found, case["record_key"], detail.get("duplicate_of"))
    claims = detail.get("owner_at") or {}
    agreed = claims.get(a) if claims.get(a) == claims.get(b) else None
    if agreed is None and owner is not None and claims and claims.get(owner) != owner:
        raise RuleViolation(
            "the named owner's own copy says it was registered elsewhere",
            field="owner",
            rule="owner-registered",
        )
    found = _owner(agreed, owner, None, (a, b))
    key = detail.get(f"key_at_{found}", case["record_key"])
    return RepairPlan(found, b if found == a else a, "send", found, key)


def _owner(known: str | None, named: str | None, default: str | None, pair: tuple[str, str]) -> str:
    if known is not None and named is not None and named != known:
        raise RuleViolation(
            f"the record was registered at {known}: its owner speaks for it",
            field="owner",
            rule="owner-registered",
        )
    found = known or named or default
    if found is None:
        raise RuleViolation(
            "the sides disagree on where the record was registered: name the owner",
            field="owner",
            rule="owner-required",
        )
    if found not in pair:
        raise RuleViolation(
            f"the record was registered at {found}, not at either side of the pair",
            field="owner",
            rule="owner-in-pair",
        )
    return found


def names_case_record(
    case: Mapping[str, Any], data: Mapping[str, Any], person_key: Callable[[str], str]
) -> bool:
    """Whether a correction (``record.corrected.v1`` data) is about the record of ``case``, as the
    reconciliation keyed it at the sender: a person by her identity number (``person_key``: its
    subject key, which must be the case's), a birth by its medical certificate number (sent in the
    whole record; a retirement names the copy that stays), any other record by its exchange key.
    Another record's answer would resolve the case while its own record stays wrong."""
    kind, rid = case["record_kind"], str(data.get("record_id"))
    changes = dict(data.get("changes") or {})
    detail = case["detail"] or {}
    key = str(detail.get(f"key_at_{case['resolution']['sender']}", case["record_key"]))
    if kind == "person":
        return bool(person_key(rid) == case["subject"])
    if RETIRED in changes:
        return bool(case["kind"] == "duplicate" and changes[RETIRED] == detail.get("duplicate_of"))
    if kind == "birth":
        return bool(changes.get("medical_certificate_number") == key)
    return rid == key
