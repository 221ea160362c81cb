"""The cached identity-number check (fast enough for bulk imports) agrees with stdnum's own validate."""

from __future__ import annotations

import datetime as dt
import random

from faker import Faker
from stdnum.cn import ric

from shared.identity import check_id_number


def _stdnum(number: str) -> str | None:
    try:
        compact = ric.validate(number)
    except Exception:  # stdnum raises KeyError for some place codes: invalid too
        return None
    return None if ric.get_birth_date(compact) > dt.date.today() else str(compact)


def _ours(number: str) -> str | None:
    try:
        return check_id_number(number)
    except ValueError:
        return None


def test_the_cached_check_accepts_and_refuses_exactly_what_stdnum_does() -> None:
    faker, rnd = Faker("zh_CN"), random.Random(11)
    faker.seed_instance(11)
    numbers = [faker.ssn() for _ in range(4000)]
    numbers += [n[:-1] + rnd.choice("0123456789X") for n in numbers[:1000]]  # check digits
    numbers += [f"{rnd.randrange(110000, 660000)}{n[6:]}" for n in numbers[:1000]]  # places, any code
    numbers += [n[:10] + "1399" + n[14:] for n in numbers[:100]]  # impossible dates
    numbers += ["12345", "A" * 18, numbers[0].lower(), f" {numbers[1]} ", numbers[2][:-1] + "x"]
    assert sum(_stdnum(n) is not None for n in numbers) > 1000  # both kinds are well represented
    assert [_ours(n) for n in numbers] == [_stdnum(n) for n in numbers]
