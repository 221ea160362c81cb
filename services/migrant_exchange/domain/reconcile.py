"""Comparing the two sides of a jurisdiction pair: pure functions over digests and records.

不重、不漏、不错: every record one side holds and the other does not is *missing*; a record both
hold with different values is a *field conflict*; a record one side holds twice (two records
with the same identity, e.g. one birth under two certificate numbers) is a *duplicate*.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Digest = tuple[int, str]  # (record count, sum of record hashes)


def differing_buckets(a: dict[int, Digest], b: dict[int, Digest]) -> list[int]:
    """Buckets whose count or digest differs between the two sides (absent = empty)."""
    empty: Digest = (0, "0")
    return sorted(k for k in a.keys() | b.keys() if a.get(k, empty) != b.get(k, empty))


@dataclass(frozen=True)
class Record:
    """One record as a registry describes it on drill-down: only keys and keyed hashes."""

    subject: str
    kind: str
    key: str
    hash: str
    identity: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    owner: str | None = None  # where the record was registered, as this side's copy says
    record_id: str | None = None  # its exchange key (a person's: None), which the exchange's holders go by

    @property
    def held(self) -> tuple[str, str]:
        """The record as the exchange keeps its holders: (kind, exchange key)."""
        return self.kind, self.record_id or self.key

    @classmethod
    def of(cls, d: dict[str, Any]) -> Record:
        return cls(
            d["subject"],
            d["kind"],
            d["key"],
            d["hash"],
            d.get("identity"),
            dict(d.get("fields") or {}),
            d.get("owner"),
            d.get("record_id"),
        )


def held_by(
    pair: tuple[str, str], records: list[Record], holders: dict[tuple[str, str], set[str]]
) -> list[Record]:
    """Of one side's records, those the pair is meant to share: every record whose holders the
    exchange does not know, and of the others those it sent to both of the pair (or took from).

    The exchange sends a birth, a marriage or a certificate where she and her family live at the
    time (``routing.counterparts``), and keeps where it went (``holders``): after A -> B -> C her
    hukou A holds a certificate it issued her at B and the birth B registered, which C was never
    sent. Counted for C, they would be "missing at C", a case no repair may close without sending
    C what the routing keeps from it. Both sides' records pass the same test (both of the pair
    among the holders), so the two agree: a copy a side holds though it was never sent one is
    left out on both, not reported "missing" at the side that owns it.
    """
    return [r for r in records if _shared(pair, r.held, holders)]


def set_aside(
    pair: tuple[str, str], held: Iterable[tuple[str, str]], holders: dict[tuple[str, str], set[str]]
) -> set[tuple[str, str]]:
    """Of these records (kind, exchange key), those ``held_by`` leaves out for the pair: their
    holders known, and not both of the pair among them.

    A run remembers them, and the next asks the registry of the pair that holds each to leave it
    out of its digests (``held_at``): her hukou A's copy of the birth B registered would otherwise
    make the A-C digests differ at every run, and every run drill into her bucket to find nothing.
    The other side holds no copy, so the digests agree where nothing else differs. Judged again at every run (a pregnancy's holders go at its closure: it is compared
    again, as ``held_by`` would)."""
    return {h for h in held if not _shared(pair, h, holders)}


def held_at(
    side: str, held: Iterable[tuple[str, str]], holders: dict[tuple[str, str], set[str]]
) -> list[tuple[str, str]]:
    """Of these records set aside (``set_aside``), those ``side`` holds, as the holders say: what
    its digests leave out. The other side of the pair was never sent them, and is not told their
    kinds and keys either (a birth's id, a certificate's number: it was given each of them, the
    whole A-C list, the birth B registered before she came). A copy it holds though never sent
    one still counts in its digests, and the drill-down sets it aside (``held_by``)."""
    return [h for h in held if side in holders.get(h, set())]


def _shared(pair: tuple[str, str], held: tuple[str, str], holders: dict[tuple[str, str], set[str]]) -> bool:
    return held not in holders or set(pair) <= holders[held]


@dataclass(frozen=True)
class Difference:
    kind: str  # missing | field_conflict | duplicate
    subject: str
    record_kind: str
    record_key: str
    missing_at: str | None = None
    duplicated_at: str | None = None
    fields: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)


def differences(a: str, b: str, left: list[Record], right: list[Record]) -> list[Difference]:
    """Every difference between side ``a`` (``left``) and side ``b`` (``right``)."""
    by_subject: dict[str, tuple[list[Record], list[Record]]] = defaultdict(lambda: ([], []))
    for r in left:
        by_subject[r.subject][0].append(r)
    for r in right:
        by_subject[r.subject][1].append(r)
    out: list[Difference] = []
    for subject in sorted(by_subject):
        ls, rs = by_subject[subject]
        out += _subject_differences(a, b, subject, ls, rs)
    return out


def _subject_differences(
    a: str, b: str, subject: str, ls: list[Record], rs: list[Record]
) -> list[Difference]:
    lk = {(r.kind, r.key): r for r in ls}
    rk = {(r.kind, r.key): r for r in rs}
    out = [
        _conflict(a, b, subject, lk[k], rk[k])
        for k in sorted(lk.keys() & rk.keys())
        if lk[k].hash != rk[k].hash
    ]
    only_left = [lk[k] for k in sorted(lk.keys() - rk.keys())]
    only_right = [rk[k] for k in sorted(rk.keys() - lk.keys())]
    paired: set[tuple[str, str]] = set()
    for side, other_side, mine, theirs, only, other_only in (
        (a, b, ls, rs, only_left, only_right),
        (b, a, rs, ls, only_right, only_left),
    ):
        for r in only:
            if (r.kind, r.key) in paired:
                continue
            twin = _same_identity(r, [m for m in mine if m.key != r.key])
            if twin is not None and any(t.key == twin.key for t in theirs):
                # Held here twice (once under the key both sides share): a duplicate at this side.
                out.append(
                    Difference(
                        "duplicate",
                        subject,
                        r.kind,
                        r.key,
                        duplicated_at=side,
                        detail={"duplicate_of": twin.key, "owner": r.owner},
                    )
                )
                continue
            match = _same_identity(r, [o for o in other_only if (o.kind, o.key) not in paired])
            if match is not None:
                # The same fact under different keys on each side (e.g. two certificate numbers).
                paired |= {(r.kind, r.key), (match.kind, match.key)}
                out.append(
                    Difference(
                        "field_conflict",
                        subject,
                        r.kind,
                        r.key,
                        fields=("key",),
                        detail={
                            f"key_at_{side}": r.key,
                            f"key_at_{other_side}": match.key,
                            "owner_at": {side: r.owner, other_side: match.owner},
                        },
                    )
                )
                continue
            out.append(
                Difference(
                    "missing", subject, r.kind, r.key, missing_at=other_side, detail={"owner": r.owner}
                )
            )
    return out


def _conflict(a: str, b: str, subject: str, x: Record, y: Record) -> Difference:
    """The same record held with other values: which fields differ, and where each side says it came from."""
    changed = tuple(
        sorted(f for f in x.fields.keys() | y.fields.keys() if x.fields.get(f) != y.fields.get(f))
    )
    detail = {"owner_at": {a: x.owner, b: y.owner}}
    return Difference("field_conflict", subject, x.kind, x.key, fields=changed, detail=detail)


def _same_identity(r: Record, candidates: list[Record]) -> Record | None:
    if r.identity is None:
        return None
    return next((c for c in candidates if c.kind == r.kind and c.identity == r.identity), None)


def held_twice(
    a: str, b: str, dups_a: list[list[str]], dups_b: list[list[str]], found: list[Difference]
) -> list[Difference]:
    """Duplicates each side reports of itself ([subject, kind, key, duplicate_of, owner]) not found already.

    A duplicate held at one side shows in the comparison; one held at both sides does not (the
    digests agree), so it comes from here, as one case naming both sides.
    """
    known = {
        (d.subject, frozenset({d.record_key, d.detail.get("duplicate_of")}))
        for d in found
        if d.kind == "duplicate"
    }
    sides: dict[tuple[str, str, str, str], list[str]] = {}
    owners: dict[tuple[str, str, str, str], str | None] = {}
    for side, dups in ((a, dups_a), (b, dups_b)):
        for subject, kind, key, first, *owner in dups:
            if (subject, frozenset({key, first})) not in known:
                sides.setdefault((subject, kind, key, first), []).append(side)
                owners.setdefault((subject, kind, key, first), owner[0] if owner else None)
    return [
        Difference(
            "duplicate",
            subject,
            kind,
            key,
            duplicated_at=held[0] if len(held) == 1 else None,
            detail={
                "duplicate_of": first,
                "duplicated_at": held,
                "owner": owners[(subject, kind, key, first)],
            },
        )
        for (subject, kind, key, first), held in sorted(sides.items())
    ]
