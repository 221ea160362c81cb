"""Identity numbers, division codes and pseudonymous subject keys.

Resident identity numbers (GB 11643-1999) and division codes (GB/T 2260) are validated
with python-stdnum. The pseudonymous subject key is what travels as the Kafka key and the
CloudEvents ``subject``: a keyed HMAC of the identity number, so the raw number never leaves
a registry outside an event's ``data``.
"""

from __future__ import annotations

import datetime as dt
import hmac
from functools import lru_cache
from typing import Annotated

from pydantic import AfterValidator, Field
from stdnum import numdb
from stdnum.cn import ric
from stdnum.util import isdigits

MAX_ID_NUMBER_INPUT = 64


def _division_db() -> numdb.NumDB:
    return numdb.get("cn/loc")


@lru_cache(maxsize=8192)
def division_name(code: str) -> str | None:
    """The province and county name of a 6-digit division code, or None if the code is unknown."""
    if len(code) != 6 or not code.isdigit():
        return None
    parts = _division_db().info(code)
    province = next((p[1].get("province") for p in parts if p[1].get("province")), None)
    county = next((p[1].get("county") for p in parts if p[1].get("county")), None)
    if not province or not county:
        return None
    return f"{province}{county.split(']')[-1]}"


def check_division(code: str) -> str:
    """Return the code if it is a known GB/T 2260 division, else raise ValueError naming the rule."""
    if len(code) != 6 or not code.isdigit():
        raise ValueError("division code must be 6 digits (GB/T 2260)")
    if division_name(code) is None:
        raise ValueError("unknown division code (GB/T 2260)")
    return code


@lru_cache(maxsize=8192)
def _counties(place: str) -> tuple[str, ...]:
    """stdnum's table entries for a 6-digit place code (its lookup scans the table: cached)."""
    info = {k: v for _, props in _division_db().info(place) for k, v in props.items()}
    return tuple(info.get("county", "").split(",")) if info else ()


def _birth_place_known(place: str, year: int) -> bool:
    """The test of stdnum's ``ric.get_birth_place``: some county of the code existed in the birth year.

    Entries read ``[start-end]name`` (either bound may be empty) or a bare name (always valid).
    """
    for county in _counties(place):
        if not county.startswith("["):
            return bool(county)
        start, end = county[1:].split("]")[0].split("-")
        if (not start or year >= int(start)) and (not end or year <= int(end)):
            return True
    return False


def check_id_number(number: str) -> str:
    """Return the compact, upper-case identity number if valid, else raise ValueError naming the rule.

    The checks are stdnum's ``ric.validate``, in its order, with the place table lookup cached
    (a bulk import validates a hundred thousand numbers; the uncached lookup was most of the work).
    The messages never repeat the number itself: errors end up in logs and responses.
    """
    # stdnum's compact maps Unicode look-alikes to ASCII character by character; ASCII input only
    # needs the case and the surrounding space normalised (the same result, a tenth of the time)
    if len(number) > MAX_ID_NUMBER_INPUT:  # spaces and look-alikes aside, it cannot be one
        raise ValueError("identity number must have 18 characters (GB 11643-1999)")
    compact = number.strip().upper() if number.isascii() else ric.compact(number)
    if len(compact) != 18:
        raise ValueError("identity number must have 18 characters (GB 11643-1999)")
    if not isdigits(compact[:-1]) or compact[-1] not in "0123456789X":
        raise ValueError("identity number must be 17 digits and a check character")
    if compact[-1] != ric.calc_check_digit(compact):
        raise ValueError("identity number check digit is wrong (ISO 7064 MOD 11-2)")
    try:  # ric.get_birth_date on the compact form, without compacting it once more
        born = dt.date(int(compact[6:10]), int(compact[10:12]), int(compact[12:14]))
    except ValueError:
        born = None
    if born is None or not _birth_place_known(compact[:6], born.year):
        raise ValueError("identity number has an impossible birth date or an unknown birth-place code")
    if born > dt.date.today():
        raise ValueError("identity number has a birth date in the future")
    return str(compact)


def birth_date_of(number: str) -> dt.date:
    """The birth date embedded in a (valid) identity number."""
    if len(number) == 18 and number.isascii() and number[:14].isdigit():
        # the compact form check_id_number returns: read the digits (stdnum compacts it again,
        # which was most of the registration rule's cost in a bulk import)
        return dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    born: dt.date = ric.get_birth_date(number)
    return born


# The documented bounds are what the validators enforce (with their own messages and rules).
IdNumber = Annotated[
    str,
    AfterValidator(check_id_number),
    Field(json_schema_extra={"maxLength": MAX_ID_NUMBER_INPUT, "examples": ["11010119940517004X"]}),
]
DivisionCode = Annotated[
    str,
    AfterValidator(check_division),
    Field(json_schema_extra={"pattern": "^[0-9]{6}$", "examples": ["320412"]}),
]


def subject_key(id_number: str, secret: bytes) -> str:
    """The pseudonymous subject key: HMAC-SHA256 of the identity number, hex, 32 characters."""
    return hmac.digest(secret, id_number.upper().encode(), "sha256").hex()[:32]  # one call into OpenSSL


def mask(id_number: str) -> str:
    """A display form for people (never for logs): first 6 and last 4 characters."""
    return f"{id_number[:6]}********{id_number[-4:]}"


def check_not_future(value: dt.date) -> dt.date:
    if value > dt.date.today():
        raise ValueError("date is in the future")
    return value


PastDate = Annotated[dt.date, AfterValidator(check_not_future)]


def compose_id_number(birth_place: str, birth_date: dt.date, serial: int, sex: str) -> str:
    """Build a valid identity number (for test data and demos): place, date, serial, sex digit, check."""
    sex_digit = (serial % 5) * 2 + (1 if sex == "M" else 0)
    body = f"{birth_place}{birth_date:%Y%m%d}{serial // 5 % 100:02d}{sex_digit}"
    return body + str(ric.calc_check_digit(body + "0"))  # stdnum expects a placeholder check digit
