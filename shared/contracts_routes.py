"""The published event contracts, served by every service (see ``shared.events.contracts``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from shared.errors import NotFound
from shared.events.catalog import CATALOG
from shared.events.contracts import ENVELOPE_ID, asyncapi_document, envelope_schema, payload_schema
from shared.events.upcasting import UPCASTERS, current_type
from shared.jsontypes import JsonObject
from shared.openapi import problems

EventTypePath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=100,
        pattern=r"^[a-z_.0-9]+$",
        description="an event type with its version (e.g. birth.registered.v2), or `cloudevent` for "
        "the envelope",
        examples=["birth.registered.v2"],
    ),
]
JsonDocument = JsonObject


class SchemaEntry(BaseModel):
    type: str = Field(examples=["birth.registered.v1"])
    topic: str = Field(examples=["vital.birth.v1"])
    dataschema: str = Field(description="the events' dataschema: the schema's $id")
    url: str = Field(
        description="where this service serves the schema", examples=["/v1/schemas/birth.registered.v1"]
    )
    current: bool = Field(description="false for an older version consumers upcast")
    upcast_to: str | None = Field(description="the version an event of this type is applied as")


def contracts_router() -> APIRouter:
    router = APIRouter(tags=["contracts"])

    @router.get("/asyncapi.json", summary="The AsyncAPI 3 document of every event channel")
    async def asyncapi() -> JsonDocument:
        return asyncapi_document()

    @router.get("/v1/schemas", summary="Every payload schema version, with the dataschema it answers to")
    async def schemas() -> list[SchemaEntry]:
        return [
            SchemaEntry(
                type=t,
                topic=s.topic,
                dataschema=s.dataschema,
                url=f"/v1/schemas/{t}",
                current=t not in UPCASTERS,
                upcast_to=current_type(t) if t in UPCASTERS else None,
            )
            for t, s in CATALOG.items()
        ]

    @router.get(
        "/v1/schemas/{event_type}",
        summary="The JSON Schema (2020-12) of one payload version; its $id is the events' dataschema",
        responses=problems(404),
    )
    async def schema(event_type: EventTypePath) -> JsonDocument:
        if event_type == "cloudevent":
            return envelope_schema()
        if event_type not in CATALOG:
            raise NotFound(
                f"no such event type in the catalog (GET /v1/schemas lists them; the envelope is "
                f"{ENVELOPE_ID})",
                field="event_type",
                rule="known-event-type",
            )
        return payload_schema(event_type)

    return router
