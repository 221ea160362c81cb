"""Versioned event payloads (the ``data`` of each CloudEvent).

Names are past tense and carry their version: a breaking change is a new class and a new
type string, never an edit of an existing one.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.identity import DivisionCode, IdNumber
from shared.inputs import FieldName, FieldValue
from shared.jsontypes import JsonObject
from shared.sensitivity import withheld_reason

Name = Field(min_length=1, max_length=64)
Sex = Literal["F", "M"]
MaritalStatus = Literal["unmarried", "married", "divorced", "widowed"]
# 出生医学证明 numbers: one letter and nine digits.
MEDICAL_CERTIFICATE_PATTERN = r"^[A-Z]\d{9}$"


def _publish_withholdable(schema: JsonObject, model: type[BaseModel]) -> None:
    """The published JSON Schema names the fields an agreement may withhold (``x-withholdable``)."""
    fields = sorted(getattr(model, "withholdable", ()))
    if fields:
        schema["x-withholdable"] = fields


class Payload(BaseModel):
    """Base of every payload: immutable and strict about unknown fields.

    ``withholdable`` is part of the contract: the fields an agreement (双向协议) may withhold
    from a counterpart, because the receiver can apply the event without them. A notification
    names the fields withheld from it, and the receiver validates against the payload with just
    those fields absent (``shared.events.restriction``); any other missing field is an error.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_publish_withholdable)
    withholdable: ClassVar[frozenset[str]] = frozenset()


class PersonRegisteredV1(Payload):
    # the receiver reads both from the identity number (GB 11643)
    withholdable: ClassVar[frozenset[str]] = frozenset({"sex", "birth_date"})
    id_number: IdNumber
    name: str = Name
    sex: Sex
    birth_date: dt.date
    hukou_division: DivisionCode = Field(description="place of household registration (origin)")
    residence_division: DivisionCode = Field(description="place of current residence")


class MarriageRegisteredV1(Payload):
    # the receiver keeps marriages by identity numbers
    withholdable: ClassVar[frozenset[str]] = frozenset({"spouse_a_name", "spouse_b_name"})
    marriage_id: uuid.UUID
    spouse_a_id_number: IdNumber
    spouse_a_name: str = Name
    spouse_b_id_number: IdNumber
    spouse_b_name: str = Name
    marriage_date: dt.date
    registered_in: DivisionCode


class MarriageDissolvedV1(Payload):
    marriage_id: uuid.UUID
    spouse_a_id_number: IdNumber
    spouse_b_id_number: IdNumber
    dissolution_date: dt.date
    reason: Literal["divorce", "death", "annulment"]


class _MigrationV1(Payload):
    """A move. Name and household registration travel with it so the new place can serve the person."""

    migration_id: uuid.UUID
    id_number: IdNumber
    name: str = Name
    hukou_division: DivisionCode
    from_division: DivisionCode
    to_division: DivisionCode
    migration_date: dt.date

    @model_validator(mode="after")
    def _moves_somewhere(self) -> _MigrationV1:
        if self.from_division == self.to_division:
            raise ValueError("to_division must differ from from_division")
        return self


class MigrationDepartedV1(_MigrationV1):
    """The person left ``from_division`` to live in ``to_division``."""


class MigrationArrivedV1(_MigrationV1):
    """The person took up residence in ``to_division``, coming from ``from_division``."""


class MigrationReturnedV1(_MigrationV1):
    """The person came back to live at the place of household registration (``to_division``)."""


class PregnancyRegisteredV1(Payload):
    # optional at the source too
    withholdable: ClassVar[frozenset[str]] = frozenset({"expected_delivery"})
    pregnancy_id: uuid.UUID
    mother_id_number: IdNumber
    registered_in: DivisionCode
    registered_on: dt.date
    expected_delivery: dt.date | None = None


class PregnancyClosedV1(Payload):
    pregnancy_id: uuid.UUID
    mother_id_number: IdNumber
    closed_on: dt.date
    outcome: Literal["birth", "ended", "transferred"]


class _Birth(Payload):
    """What every version of a birth carries; each version adds its place of birth."""

    # a birth is kept by certificate and mother: an agreement may withhold these two
    withholdable: ClassVar[frozenset[str]] = frozenset({"child_id_number", "father_id_number"})

    birth_id: uuid.UUID
    medical_certificate_number: str = Field(pattern=MEDICAL_CERTIFICATE_PATTERN)
    child_name: str = Name
    child_sex: Sex
    child_birth_date: dt.date
    child_id_number: IdNumber | None = None
    mother_id_number: IdNumber
    father_id_number: IdNumber | None = None
    birth_order: int = Field(ge=1, le=20)


class BirthRegisteredV1(_Birth):
    """A birth (superseded by v2: the place of birth as a bare county code)."""

    birth_division: DivisionCode


BirthPlaceKind = Literal[
    "hospital", "maternal_child_health_centre", "township_health_centre", "home", "in_transit", "other"
]


class BirthPlace(Payload):
    """出生地点 as the birth medical certificate records it: where, and in what kind of place."""

    division: DivisionCode = Field(description="the county-level division the child was born in")
    kind: BirthPlaceKind | None = Field(
        default=None, description="the kind of place; null when not recorded (a birth upcast from v1)"
    )
    institution: str | None = Field(
        default=None, min_length=1, max_length=100, description="the delivering institution's name"
    )


class BirthRegisteredV2(_Birth):
    """A birth, with a structured place of birth (``birth_place``) instead of v1's ``birth_division``.

    Why a v2: the hospital-delivery rate (住院分娩率) is a maternal and child health indicator both
    registries report, and v1 carried only the county code, so a destination could not tell a
    hospital birth from a home birth. The division moved into ``birth_place``: a removed field is
    a breaking change, hence a new version (docs/contracts.md).
    """

    birth_place: BirthPlace


class RecordCorrectedV1(Payload):
    correction_id: uuid.UUID
    corrected_event_id: uuid.UUID
    record_type: Literal["person", "marriage", "migration", "pregnancy", "birth", "certificate"]
    record_id: str = Field(min_length=1, max_length=64)
    changes: dict[FieldName, FieldValue] = Field(min_length=1)
    reason: str = Field(min_length=3, max_length=500)


class PublicKeyJwk(BaseModel):
    """An Ed25519 public key as a JWK (RFC 8037); extra members (status, expires_at...) are kept."""

    model_config = ConfigDict(frozen=True, extra="allow")

    kty: Literal["OKP"] = "OKP"
    crv: Literal["Ed25519"] = "Ed25519"
    kid: str = Field(min_length=1, max_length=64)
    x: str = Field(pattern=r"^[A-Za-z0-9_-]{43}$", description="base64url of the 32-byte public key")


class CertificateIssuedV1(Payload):
    certificate_number: str = Field(pattern=r"^[0-9]{6}-[0-9]{4}-[0-9A-Z]{8}$")
    holder_id_number: IdNumber
    holder_name: str = Name
    marital_status: MaritalStatus
    children_birth_dates: list[dt.date] = Field(default_factory=list, max_length=20)
    issuer: DivisionCode
    issued_on: dt.date
    valid_until: dt.date
    key_id: str = Field(min_length=1, max_length=64)
    status_index: int = Field(ge=0)
    token: str = Field(description="compact JWS (EdDSA) of the certificate claims, as printed in the QR code")
    public_key_jwk: PublicKeyJwk | None = Field(
        default=None,
        description="the issuer's public key of key_id, so verifiers learn it with the certificate",
    )


class CertificateRevokedV1(Payload):
    certificate_number: str
    issuer: DivisionCode
    revoked_on: dt.date
    reason: str = Field(min_length=3, max_length=200)
    status_index: int = Field(ge=0)


class SealedPayload(Payload):
    """A payload only its addressee can read (shared.sealing): X25519 + HKDF-SHA256 + AES-256-GCM."""

    alg: Literal["X25519-HKDF-SHA256-A256GCM"]
    kid: str = Field(max_length=100, description="the addressee's encryption key in the trust list")
    epk: str = Field(max_length=64, description="base64url of the ephemeral X25519 public key")
    nonce: str = Field(max_length=32)
    ciphertext: str = Field(max_length=1_000_000)


class ExchangeNotificationV1(Payload):
    """A vital event addressed to a counterpart jurisdiction, awaiting its feedback.

    On Kafka the payload travels ``sealed`` to the addressee's encryption key and ``payload``
    is empty; a jurisdiction without a key (REST-only) fetches the payload over REST instead.
    A sensitive event (a pregnancy) is named on Kafka by the neutral category ``vital.restricted``
    only, with no withheld fields: its real type and withheld fields are sealed with its payload
    (``RestrictedEventV1``), so no reader of the topic but the addressee learns its kind.
    """

    notification_id: uuid.UUID
    target_division: DivisionCode
    source_division: DivisionCode
    event_id: uuid.UUID
    event_type: str = Field(
        description="the notified event's type; on Kafka a sensitive type reads as the neutral category "
        "``vital.restricted``, its real type sealed with the payload"
    )
    event_sequence: int = Field(ge=1)
    event_time: dt.datetime
    deadline: dt.datetime
    payload: dict[str, object] = Field(
        default_factory=dict, description="the source event's data, limited to the agreed fields"
    )
    sealed: SealedPayload | None = Field(
        default=None, description="the payload, readable by the addressee only"
    )
    withheld_fields: list[FieldName] = Field(
        default_factory=list,
        max_length=64,
        description="fields the agreement withholds from the addressee: absent from the payload by "
        "contract (each one of the event payload's ``withholdable`` fields)",
    )


class RestrictedEventV1(Payload):
    """What a notification of a sensitive event seals instead of its bare payload: the event's real
    type and the fields the agreement withholds from it (their names say the kind too), beside the
    payload. Only the addressee reads them; the notification itself names ``vital.restricted``."""

    event_type: str = Field(max_length=100)
    withheld_fields: list[FieldName] = Field(default_factory=list, max_length=64)
    payload: dict[str, object]


class FieldConflict(Payload):
    field: FieldName
    ours: FieldValue
    theirs: FieldValue


class ExchangeFeedbackV1(Payload):
    """The counterpart's answer to a notification."""

    notification_id: uuid.UUID
    from_division: DivisionCode
    outcome: Literal["applied", "conflict", "rejected"]
    conflicts: list[FieldConflict] = Field(default_factory=list)
    reason: str | None = None
    applied_at: dt.datetime

    def withheld(self) -> ExchangeFeedbackV1:
        """The answer to a restricted notification as it goes on the broker: no conflicting field
        or value, a neutral reason (``shared.sensitivity.withheld_reason``). Its outcome stands,
        and closes the notification as before."""
        reason = withheld_reason(self.reason, bool(self.conflicts))
        return self.model_copy(update={"conflicts": [], "reason": reason})


class FeedbackAnswerV1(Payload):
    """One answer of an ``exchange.feedback_batch.v1``: what ``ExchangeFeedbackV1`` says of it but
    the division answering, which the batch names once for all its answers."""

    notification_id: uuid.UUID
    outcome: Literal["applied", "conflict", "rejected"]
    conflicts: list[FieldConflict] = Field(default_factory=list)
    reason: str | None = None
    applied_at: dt.datetime


FEEDBACK_BATCH_ANSWERS = 1000


class ExchangeFeedbackBatchV1(Payload):
    """The counterpart's answers to the notifications it applied in one unit of work: each answer
    is what an ``ExchangeFeedbackV1`` would say, and closes its notification as that would.

    A registry applies a consumer's fetch of notifications in one transaction; one feedback event
    each cost a message, an outbox row, a signature and, at the exchange, a signature check, a
    parse and an inbox row; a batch costs them once. A lone answer still travels as
    ``exchange.feedback.v1``, under its person's key and trace. The envelope's subject is the
    batch's own id (``batch_id``), not a person's key: the people are the notifications'.
    """

    batch_id: uuid.UUID = Field(description="one batch, however often its event is re-sent")
    from_division: DivisionCode
    answers: list[FeedbackAnswerV1] = Field(min_length=1, max_length=FEEDBACK_BATCH_ANSWERS)

    def feedback(self) -> list[ExchangeFeedbackV1]:
        """Each answer as the ``ExchangeFeedbackV1`` it stands for."""
        return [
            ExchangeFeedbackV1.model_construct(from_division=self.from_division, **a.__dict__)
            for a in self.answers
        ]


DisclosureAction = Literal["notification.sent", "notification.fetched", "certificate.verified", "person.read"]


class DisclosureRecordedV1(Payload):
    """Someone outside a person's registry received or read the person's data: an entry for the
    subject-access log of each registry named in ``record_at`` that keeps the person's records.

    Produced by the party that disclosed (``discloser``: the exchange for notifications and REST
    pick-ups, verification for certificate checks, a registry for reads of a counterpart's
    record). Sensitive event types and purposes travel under their neutral name
    (``shared.sensitivity``): the topic is read by every registry, they are for the person's own two.
    """

    disclosure_id: uuid.UUID = Field(description="one disclosure, however often its event is re-sent")
    record_at: list[DivisionCode] = Field(min_length=1, max_length=8)
    discloser: str = Field(pattern=r"^(exchange|verification|\d{6})$")
    action: DisclosureAction
    recipient: str = Field(min_length=1, max_length=100, description="client id or registry-<division>")
    recipient_division: DivisionCode | None = None
    purpose: str = Field(min_length=1, max_length=64)
    disclosed_at: dt.datetime
    event_type: str | None = Field(default=None, max_length=64, description="neutral for sensitive types")
    event_id: uuid.UUID | None = None
    notification_id: uuid.UUID | None = None
    certificate_number: str | None = Field(default=None, max_length=32)
    issuer: DivisionCode | None = None
    result: str | None = Field(default=None, max_length=32)


class DisclosureEntryV1(Payload):
    """One disclosure of a ``disclosure.batch.v1``: what ``DisclosureRecordedV1`` says of it but
    the registries and the discloser, which the batch names once for all its entries."""

    subject: str = Field(pattern=r"^[0-9a-f]{32}$", description="the person's pseudonymous subject key")
    disclosure_id: uuid.UUID = Field(description="one disclosure, however often its batch is re-sent")
    action: DisclosureAction
    recipient: str = Field(min_length=1, max_length=100, description="client id or registry-<division>")
    recipient_division: DivisionCode | None = None
    purpose: str = Field(min_length=1, max_length=64)
    disclosed_at: dt.datetime
    event_type: str | None = Field(default=None, max_length=64, description="neutral for sensitive types")
    event_id: uuid.UUID | None = None
    notification_id: uuid.UUID | None = None
    certificate_number: str | None = Field(default=None, max_length=32)
    issuer: DivisionCode | None = None
    result: str | None = Field(default=None, max_length=32)


DISCLOSURE_BATCH_ENTRIES = 1000


class DisclosureBatchV1(Payload):
    """Disclosures one party made in one unit of work, for the same registries: each entry is what
    a ``DisclosureRecordedV1`` would say, and goes to the subject-access log of each registry in
    ``record_at`` as its own entry.

    The exchange routes a consumer's batch of events in one transaction, and verification chains
    its checks in batches; one disclosure event each cost a message, an outbox row, a signature
    check and an inbox row at every registry named; a batch costs them once. The envelope's
    subject is the batch's own id (``batch_id``), not a person's key: the people are the entries'.
    """

    batch_id: uuid.UUID = Field(description="one batch, however often its event is re-sent")
    record_at: list[DivisionCode] = Field(min_length=1, max_length=8)
    discloser: str = Field(pattern=r"^(exchange|verification|\d{6})$")
    entries: list[DisclosureEntryV1] = Field(min_length=1, max_length=DISCLOSURE_BATCH_ENTRIES)
