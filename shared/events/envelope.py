"""The CloudEvents 1.0 envelope (structured JSON mode) shared by every topic."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Generic, Literal, TypeVar

import uuid_utils
from pydantic import BaseModel, ConfigDict, Field

P = TypeVar("P", bound=BaseModel)

SOURCE_PATTERN = r"^(/(registry|exchange)(/\d{6})?|/verification)$"


def new_event_id() -> uuid.UUID:
    """A UUIDv7: time-ordered, so ids sort in the order events were made."""
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


class Envelope(BaseModel, Generic[P]):
    """CloudEvents 1.0 attributes plus the exchange's extensions.

    ``subject`` is the pseudonymous subject key, never a raw identity number.
    ``sequence`` counts events per subject and producing jurisdiction (``source``).
    ``origin``/``destination`` are the subject's household-registration and current-residence
    jurisdictions as the producer knows them (for a notification: sender and addressee).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: uuid.UUID
    source: str = Field(pattern=SOURCE_PATTERN, examples=["/registry/320412"])
    type: str = Field(pattern=r"^[a-z]+\.[a-z_]+\.v\d+$", examples=["birth.registered.v1"])
    subject: str = Field(pattern=r"^[0-9a-f]{32}$", description="pseudonymous subject key (keyed HMAC)")
    time: dt.datetime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str
    sequence: int = Field(ge=1)
    origin: str | None = Field(default=None, pattern=r"^\d{6}$")
    destination: str | None = Field(default=None, pattern=r"^\d{6}$")
    traceparent: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
    )
    # Event signature (shared.events.signature): the signing key's id and the Ed25519 signature
    # over the canonical envelope. Set by the outbox relay as it publishes; checked by consumers.
    signer: str | None = Field(default=None, max_length=100)
    signature: str | None = Field(default=None, max_length=200)
    # Set only when the signature covers a batch: the event's path to the batch's Merkle root.
    sigproof: str | None = Field(default=None, max_length=1200)
    data: P

    @property
    def producer(self) -> str | None:
        """The division code of the producing jurisdiction, from ``source``."""
        return self.source.rsplit("/", 1)[-1] if self.source.count("/") == 2 else None


# An event as read off the wire or out of the outbox: which payload class ``data`` holds follows
# from ``type`` at run time only (``shared.events.catalog``), beyond what a static checker can
# follow; receivers narrow it by type through their handler table. The event path's one Any.
AnyEnvelope = Envelope[Any]
