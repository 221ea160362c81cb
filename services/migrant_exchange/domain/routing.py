"""Who must hear of an event: pure routing rules over household registration and residence."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from shared import agreements
from shared.events import upcasting


@dataclass(frozen=True)
class Whereabouts:
    """A subject's place of household registration (origin) and current residence (destination).

    ``as_of`` is the time of the event that last set the residence: events arrive on several
    topics with no order between them, so an older event must not undo a newer move.
    """

    hukou: str | None
    residence: str | None
    as_of: dt.datetime | None = None


def after_event(
    current: Whereabouts, event_type: str, data: dict[str, object], hint: Whereabouts, at: dt.datetime
) -> Whereabouts:
    """The subject's whereabouts once this event (made at ``at``) is taken into account."""
    hukou = current.hukou or hint.hukou
    residence, as_of = current.residence or hint.residence, current.as_of
    newer = as_of is None or at >= as_of
    if event_type == "person.registered.v1":
        hukou = str(data["hukou_division"])
        if newer:
            residence, as_of = str(data["residence_division"]), at
    elif event_type.startswith("migration."):
        hukou = str(data.get("hukou_division") or hukou)
        if newer:
            residence, as_of = str(data["to_division"]), at
    return Whereabouts(hukou, residence, as_of)


def related_people(event_type: str, data: dict[str, object]) -> list[str]:
    """Identity numbers of other people whose origin and residence must hear of this event too.

    A marriage concerns both spouses; a birth concerns the father as well as the mother (the
    event's subject). A pregnancy concerns the mother alone: it is shared only between her own
    two registries. A correction names nobody (it carries the record's key and the changes, never
    a spouse's or a father's number): it reaches the registries that hold the record it corrects,
    theirs among them (``counterparts``' ``holders``).
    """
    if event_type.startswith("marriage."):
        return [str(data[k]) for k in ("spouse_a_id_number", "spouse_b_id_number") if data.get(k)]
    if event_type == "birth.registered.v2" and data.get("father_id_number"):
        return [str(data["father_id_number"])]
    return []


def counterparts(
    producer: str,
    event_type: str,
    data: dict[str, object],
    after: Whereabouts,
    related: tuple[Whereabouts, ...] = (),
    holders: Iterable[str] = (),
) -> set[str]:
    """Jurisdictions other than the producer that keep this subject's records.

    Origin (hukou) and destination (residence) always hear; for a move, the place left and the
    place arrived at hear too. A person who moved on (A -> B -> C) is no longer B's business, and
    a returnee's later events stay at the origin. Related people (a spouse, a father) bring their
    own origin and residence. ``holders``: the registries that hold the record this event ends
    or corrects (``named_record``), wherever the subject lives by then: a certificate's revocation
    reaches the place she left that keeps its copy. A pregnancy's closure or correction reaches its
    holders alone (``held_only``), and so does every end or correction of a record whose holders
    are known (``ends_or_corrects_held``): a spouse's and a father's registries as the record did,
    and not her residence of now, which was never given the record.
    """
    held = set(holders)
    if held_only(event_type, data) or ends_or_corrects_held(event_type, held):
        return {t for t in held if t != producer}
    targets = {after.hukou, after.residence, *held}
    for other in related:
        targets |= {other.hukou, other.residence}
    if event_type.startswith("migration."):
        targets |= {str(data["from_division"]), str(data["to_division"])}
    if event_type == "marriage.registered.v1":
        targets.add(str(data.get("registered_in")))
    return {t for t in targets if t and t != producer and t != "None"}


# The events only one of the subject's own two registries may say: a pregnancy is shared between
# her hukou and her residence alone (DESIGN section 8), and the registry registers one only for a
# woman registered or resident there (``registered-at-hukou-or-residence``). The envelope check
# ties the producer to the event's ``registered_in`` only; the roster ties it to her.
HER_REGISTRIES_ONLY = frozenset({"pregnancy.registered.v1"})


def by_her_registry(producer: str, event_type: str, before: Whereabouts) -> bool:
    """Whether ``producer`` may say this event of a subject the roster has at ``before`` (as it was
    before the event): one of ``HER_REGISTRIES_ONLY`` only from her hukou or her residence. A
    subject the roster does not know (nothing of hers routed yet) has nothing to hold the producer
    to, and goes as it comes; the envelope's hints are the producer's word, never taken here."""
    if event_type not in HER_REGISTRIES_ONLY:
        return True
    hers = {d for d in (before.hukou, before.residence) if d}
    return not hers or producer in hers


# The records whose holders the exchange keeps, by the events that make or end them (current
# types) and the payload field holding the key a correction names them by (``record_id``). A
# certificate is held by its issuer and the registries sent its issuance (the holder's residence
# of the moment keeps a copy): its revocation and corrections reach them after she moved on.
HELD_RECORDS = {
    "marriage.registered.v1": ("marriage", "marriage_id"),
    "marriage.dissolved.v1": ("marriage", "marriage_id"),
    "birth.registered.v2": ("birth", "birth_id"),
    "pregnancy.registered.v1": ("pregnancy", "pregnancy_id"),
    "certificate.issued.v1": ("certificate", "certificate_number"),
}
CORRECTION = "record.corrected.v1"


def made_record(event_type: str, data: dict[str, object]) -> tuple[str, str] | None:
    """The record (kind, key) this event makes (a marriage, a birth, a pregnancy registered): its
    producer mints the key, so once the record is held, only its holders speak of it again (a
    second spouse's announcement, a re-send). Anyone else naming that key plants itself among
    the holders of a record made elsewhere, to end it later (``ENDS``)."""
    return None if event_type in ENDS else held_record(event_type, data)


def held_record(event_type: str, data: dict[str, object]) -> tuple[str, str] | None:
    """The record (kind, key) this event makes or ends: the registry that recorded it and those it
    is sent to hold it from then on."""
    kind = HELD_RECORDS.get(event_type)
    return None if kind is None else (kind[0], str(data[kind[1]]))


# The events that end a held record, by the payload field naming it. A registry ends only a record
# in its own records (the registry's write rule: ``no such marriage in this jurisdiction's
# records``), so the exchange takes an end only from a registry that holds the record: one that
# recorded it or was sent it (DESIGN section 10: no jurisdiction speaks of another's records).
ENDS = {
    "marriage.dissolved.v1": ("marriage", "marriage_id"),
    "pregnancy.closed.v1": ("pregnancy", "pregnancy_id"),
    "certificate.revoked.v1": ("certificate", "certificate_number"),
}
# The types whose routing reads the holders of the record they name (``named_record``).
NAMES_HELD = frozenset({*ENDS, CORRECTION})


def named_record(event_type: str, data: dict[str, object]) -> tuple[str, str] | None:
    """The held record (kind, key) whose holders must hear of this event: the marriage, the
    pregnancy or the certificate it ends (``ENDS``), the record a correction (or a reconciliation
    repair) changes."""
    if event_type in ENDS:
        kind, field = ENDS[event_type]
        return kind, str(data[field])
    kinds = {kind for kind, _ in HELD_RECORDS.values()}
    if event_type == CORRECTION and data.get("record_type") in kinds:
        return str(data["record_type"]), str(data["record_id"])
    return None


def held_only(event_type: str, data: dict[str, object]) -> bool:
    """Whether the event reaches the registries that hold its record and nobody else: a
    pregnancy's closure or correction.

    Pregnancy data is shared only between the mother's own origin and destination registries
    (DESIGN section 8): those that registered or were told of the pregnancy, her two places when
    it was registered. Where she lives by the time it ends was never given it (her new residence
    after A -> B -> C, say), so it is not told of it now: a closure is for closing out a record,
    and it has none.
    """
    return event_type == "pregnancy.closed.v1" or (
        event_type == CORRECTION and data.get("record_type") == "pregnancy"
    )


def ends_or_corrects_held(event_type: str, holders: set[str]) -> bool:
    """Whether the event ends or corrects a record whose holders are known (a dissolution, a
    revocation, a correction: ``NAMES_HELD``), and so reaches them alone.

    Only a registry holding the record can apply its end or its correction (the registry's "not
    in our records"): after A -> B -> C, C was never sent the birth B registered while she lived at
    B, nor the marriage or the certificate made then; sending C the corrected birth, the divorce or
    the revocation would disclose them to a registry with no record to change (DESIGN section 8:
    the minimum) and leave a rejected notification where nothing is wrong. A record routed before
    the exchange kept holders (``record_holders``, ``certificate_holders``) has none known, and its
    end or correction goes to her places as before; a person and a move hold nothing here
    (``named_record``), and so do theirs.
    """
    return event_type in NAMES_HELD and bool(holders)


def covers(event_types: list[str], event_type: str) -> bool:
    """Whether an agreement's list of event types lets this type flow (any version of it)."""
    return agreements.covers(event_types, event_type)


# The event that carries each kind of record a repair (record.corrected.v1) may send: what an
# agreement withholds of that event, it withholds of the repair too.
RECORD_EVENTS = {
    "person": "person.registered.v1",
    "birth": "birth.registered.v1",
    "marriage": "marriage.registered.v1",
    "pregnancy": "pregnancy.registered.v1",
    "migration": "migration.departed.v1",
}


def agreed_correction(
    data: dict[str, Any], withheld_of: Callable[[str], frozenset[str]]
) -> dict[str, Any] | None:
    """A correction without the changes its receiver may not see (``withheld_of``: event type ->
    withheld fields, named as the type's current version names them); None when nothing is left
    to send. A change is judged under its field's current name: the registries name a birth's
    place of birth ``birth_division`` as v1 did, which v2 keeps as ``birth_place``."""
    event_type = RECORD_EVENTS.get(str(data.get("record_type")))
    hidden = withheld_of(event_type) if event_type else frozenset()
    changes = {
        k: v
        for k, v in dict(data["changes"]).items()
        if (upcasting.current_field(event_type, k) if event_type else k) not in hidden
    }
    return {**data, "changes": changes} if changes else None


def retry_delay(base_seconds: float, attempts: int, cap_seconds: float) -> float:
    """Exponential backoff for re-sending a notification that got no feedback."""
    return float(min(cap_seconds, base_seconds * 2 ** max(0, attempts - 1)))
