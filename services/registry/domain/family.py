"""Rules for marriages, pregnancies and births. Pure functions: no I/O."""

from __future__ import annotations

import datetime as dt

from shared.errors import Conflict, RuleViolation

# Minimum marriage age of the Marriage Law (art. 6 / Civil Code art. 1047).
MARRIAGE_AGE = {"M": 22, "F": 20}
# A pregnancy lasts at most about 44 weeks; anything later is a typing error.
MAX_PREGNANCY_DAYS = 310


def age_on(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def check_marriage(
    when: dt.date,
    spouses: list[tuple[str, str, dt.date]],
    active: dict[str, bool],
    last_dissolution: dict[str, dt.date | None],
) -> None:
    """``spouses``: (field, sex, birth date) of each; ``active``: field -> already married."""
    if when > dt.date.today():
        raise RuleViolation("marriage_date is in the future", field="marriage_date", rule="not-in-future")
    for field, sex, born in spouses:
        if age_on(born, when) < MARRIAGE_AGE[sex]:
            raise RuleViolation(
                f"{field} is below the legal marriage age ({MARRIAGE_AGE[sex]}) on the marriage date",
                field=field,
                rule="marriage-age",
            )
        if active.get(field):
            raise Conflict(
                f"{field} is already married: a marriage must be dissolved before another is registered",
                field=field,
                rule="one-active-marriage",
            )
        ended = last_dissolution.get(field)
        if ended is not None and when < ended:
            raise RuleViolation(
                f"marriage_date is before the end of {field}'s previous marriage",
                field="marriage_date",
                rule="marriages-in-date-order",
            )


def check_dissolution(marriage_date: dt.date, dissolved: dt.date | None, when: dt.date) -> None:
    if dissolved is not None:
        raise Conflict("this marriage is already dissolved", field="marriage_id", rule="already-dissolved")
    if when > dt.date.today():
        raise RuleViolation(
            "dissolution_date is in the future", field="dissolution_date", rule="not-in-future"
        )
    if when < marriage_date:
        raise RuleViolation(
            "dissolution_date is before the marriage date",
            field="dissolution_date",
            rule="dissolution-after-marriage",
        )


def check_pregnancy(
    mother_sex: str,
    mother_born: dt.date,
    registered_on: dt.date,
    expected: dt.date | None,
    has_open: bool,
) -> None:
    if mother_sex != "F":
        raise RuleViolation(
            "the identity number is not a woman's", field="mother_id_number", rule="mother-is-female"
        )
    if registered_on > dt.date.today():
        raise RuleViolation("registered_on is in the future", field="registered_on", rule="not-in-future")
    if registered_on <= mother_born:
        raise RuleViolation(
            "registered_on is before the mother's birth", field="registered_on", rule="after-mother-birth"
        )
    if expected is not None and not (
        registered_on < expected <= registered_on + dt.timedelta(days=MAX_PREGNANCY_DAYS)
    ):
        raise RuleViolation(
            f"expected_delivery must fall within {MAX_PREGNANCY_DAYS} days after registered_on",
            field="expected_delivery",
            rule="expected-delivery-plausible",
        )
    if has_open:
        raise Conflict(
            "the mother has an open pregnancy record: close it first",
            field="mother_id_number",
            rule="one-open-pregnancy",
        )


def check_pregnancy_closure(registered_on: dt.date, closed: dt.date | None, when: dt.date) -> None:
    if closed is not None:
        raise Conflict("this pregnancy is already closed", field="pregnancy_id", rule="already-closed")
    if when > dt.date.today():
        raise RuleViolation("closed_on is in the future", field="closed_on", rule="not-in-future")
    if when < registered_on:
        raise RuleViolation(
            "closed_on is before the pregnancy was registered",
            field="closed_on",
            rule="closure-after-registration",
        )


def check_parents(
    mother_sex: str, father_sex: str | None, father_born: dt.date | None, child_birth: dt.date
) -> None:
    if mother_sex != "F":
        raise RuleViolation(
            "the mother's identity number is not a woman's", field="mother_id_number", rule="mother-is-female"
        )
    if father_sex is not None and father_sex != "M":
        raise RuleViolation(
            "the father's identity number is not a man's", field="father_id_number", rule="father-is-male"
        )
    if father_born is not None and child_birth <= father_born:
        raise RuleViolation(
            "the child is born after the father", field="child_birth_date", rule="child-after-father"
        )
