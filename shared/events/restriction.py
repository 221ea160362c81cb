"""Payloads cut down by an agreement: which fields may go, and the model a receiver checks against.

A field restriction is part of the event contract, not an accident of the sender: each payload
class names its ``withholdable`` fields (the receiver can apply the event without them). The
exchange removes the withheld ones and says which in the notification (``withheld_fields``);
the receiver validates against :func:`restricted_model`, in which exactly those fields are absent
(``None``) and every other field keeps its rule. A payload missing any other field, or carrying
a value for a field said to be withheld, is refused as before.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, create_model


class NotWithholdable(ValueError):
    """A restriction that would leave the receiver unable to apply the event."""


def withholdable(payload: type[BaseModel]) -> frozenset[str]:
    """The fields of this payload an agreement may withhold."""
    return frozenset(getattr(payload, "withholdable", frozenset()))


def check_withheld(payload: type[BaseModel], withheld: Iterable[str]) -> frozenset[str]:
    """The withheld fields, if the contract allows every one of them; else NotWithholdable naming them."""
    fields = frozenset(withheld)
    unknown = sorted(fields - set(payload.model_fields))
    if unknown:
        raise NotWithholdable(f"{payload.__name__} has no field {', '.join(map(repr, unknown))}")
    refused = sorted(fields - withholdable(payload))
    if refused:
        allowed = ", ".join(sorted(withholdable(payload))) or "none"
        raise NotWithholdable(
            f"{', '.join(map(repr, refused))} of {payload.__name__} cannot be withheld: the receiver "
            f"needs it to apply the event (withholdable: {allowed})"
        )
    return fields


@functools.cache
def restricted_model(payload: type[BaseModel], withheld: frozenset[str]) -> type[BaseModel]:
    """The payload model with the withheld fields absent: each may only be missing (or null)."""
    check_withheld(payload, withheld)
    if not withheld:
        return payload
    absent: dict[str, Any] = {name: (None, None) for name in sorted(withheld)}
    model: type[BaseModel] = create_model(f"{payload.__name__}Restricted", __base__=payload, **absent)
    return model


def restrict(data: Mapping[str, object], withheld: Iterable[str]) -> dict[str, object]:
    """The payload without the withheld fields (what the counterpart receives)."""
    gone = frozenset(withheld)
    return {k: v for k, v in data.items() if k not in gone}
