"""Migrants registered through the product, and drift planted in one registry's database.

Origin A (320412) registers each woman, her departure to B (440703), her marriages and
issues her certificates; B
registers her births and pregnancies. Each registry's copy of the other's records came through
the exchange. ``plant`` then changes one record directly in one database, as drift would.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.helpers import Api, medical_certificate, person_id, query

A, B = "320412", "440703"

# One canonical query per record kind: every value reconciliation compares, by exchange key.
CANONICAL = {
    "person": """SELECT id_number AS k, name, sex, birth_date, hukou_division, residence_division FROM persons
                 WHERE id_number = ANY($1::text[])""",
    "migration": """SELECT id::text AS k, id_number, kind, from_division, to_division, migration_date
                    FROM migrations WHERE id_number = ANY($1::text[])""",
    "marriage": """SELECT id::text AS k, spouse_a_id_number, spouse_b_id_number, marriage_date, dissolution_date,
                          dissolution_reason FROM marriages WHERE spouse_a_id_number = ANY($1::text[])""",
    "birth": """SELECT id::text AS k, medical_certificate_number, child_name, child_sex, child_birth_date,
                       child_id_number, mother_id_number, father_id_number, birth_order, birth_division
                FROM births WHERE mother_id_number = ANY($1::text[])""",
    "pregnancy": """SELECT id::text AS k, mother_id_number, registered_in, registered_on, expected_delivery,
                           closed_on, outcome FROM pregnancies WHERE mother_id_number = ANY($1::text[])""",
    # the issuer's register on one side, the copy from its notifications on the other
    "certificate": """SELECT number AS k, holder_id_number, jurisdiction AS issuer, issued_on, valid_until,
                             revoked_on FROM certificates WHERE holder_id_number = ANY($1::text[])
                      UNION ALL
                      SELECT number, holder_id_number, issuer, issued_on, valid_until, revoked_on
                      FROM counterpart_certificates WHERE holder_id_number = ANY($1::text[])""",
}
# record kind -> (table, key column, the column holding the subject's identity number)
TABLES = {
    "person": ("persons", "id_number", "id_number"),
    "migration": ("migrations", "id", "id_number"),
    "marriage": ("marriages", "id", "spouse_a_id_number"),
    "birth": ("births", "id", "mother_id_number"),
    "pregnancy": ("pregnancies", "id", "mother_id_number"),
    "certificate": ("certificates", "number", "holder_id_number"),  # the issuer's register
}
COPIES = {"certificate": ("counterpart_certificates", "number", "holder_id_number")}


@dataclass
class Migrant:
    id_number: str
    records: dict[str, str] = field(default_factory=dict)  # kind -> exchange key
    certificate: str | None = None


def _ok(r: Any) -> dict[str, Any]:
    assert r.status_code == 201, r.text
    return dict(r.json())


def _born(id_number: str) -> str:
    return f"{id_number[6:10]}-{id_number[10:12]}-{id_number[12:14]}"


def migrant(origin: Api, with_kind: str | None) -> Migrant:
    """A woman of A living at B (registered and moved by A), married at A for ``marriage``."""
    me = person_id("F")
    person = {"id_number": me, "name": "王芳", "sex": "F", "birth_date": _born(me), "hukou_division": A}
    _ok(origin.post("/v1/persons", person))
    moved = {"kind": "departed", "id_number": me, "from_division": A, "to_division": B}
    m = Migrant(me, {"person": me})
    m.records["migration"] = str(
        _ok(origin.post("/v1/migrations", {**moved, "migration_date": "2024-03-01"}))["migration_id"]
    )
    if with_kind == "marriage":
        spouse = person_id("M")
        _ok(
            origin.post(
                "/v1/persons",
                {
                    "id_number": spouse,
                    "name": "陈军",
                    "sex": "M",
                    "birth_date": _born(spouse),
                    "hukou_division": A,
                },
            )
        )
        body = {"spouse_a_id_number": me, "spouse_b_id_number": spouse, "marriage_date": "2024-05-01"}
        m.records["marriage"] = str(_ok(origin.post("/v1/marriages", body))["marriage_id"])
    if with_kind == "certificate":
        cert = _ok(origin.post("/v1/certificates", {"holder_id_number": me}))
        m.records["certificate"] = str(cert["certificate_number"])
    return m  # fmt: skip


def family_at_destination(dest: Api, m: Migrant, kind: str) -> None:
    """B registers her birth or pregnancy (once B knows her, from A's notification of the move)."""
    if kind == "birth":
        m.certificate = medical_certificate()
        body = {
            "medical_certificate_number": m.certificate,
            "child_name": "王小雨",
            "child_sex": "F",
            "child_birth_date": "2025-06-01",
            "mother_id_number": m.id_number,
        }
        m.records["birth"] = str(_ok(dest.post("/v1/births", body))["birth_id"])
    if kind == "pregnancy":
        body = {
            "mother_id_number": m.id_number,
            "registered_on": "2025-08-01",
            "expected_delivery": "2026-04-01",
        }
        m.records["pregnancy"] = str(_ok(dest.post("/v1/pregnancies", body))["pregnancy_id"])  # fmt: skip


def holdings(dsn: str, ids: list[str]) -> dict[str, set[tuple[Any, ...]]]:
    """Every record of these people a registry holds, by kind, as comparable tuples."""
    return {kind: {tuple(r.values()) for r in query(dsn, sql, ids)} for kind, sql in CANONICAL.items()}


def plant(dsn: str, kind: str, key: str, what: str, copy: bool = False) -> None:
    """One difference in one registry's database: 'missing', 'conflict' or 'spouse' (in the copy
    of a certificate, with ``copy``)."""
    table, column, _ = COPIES[kind] if copy and kind in COPIES else TABLES[kind]
    value: Any = key if kind in ("person", "certificate") else uuid.UUID(key)
    if what == "missing":
        gone = query(dsn, f"DELETE FROM {table} WHERE {column} = $1 RETURNING 1", value)
        assert gone, (kind, what)
        return
    change = {
        "person": "name = '王芬'",
        "migration": "migration_date = migration_date - 3",
        "marriage": "marriage_date = marriage_date + 2",
        "birth": "child_name = '王小云'",
        "pregnancy": "expected_delivery = expected_delivery + 5",
        "certificate": "valid_until = valid_until - 30",
    }[kind]
    if what == "spouse":
        change = f"spouse_b_id_number = '{person_id('M')}'"
    changed = query(dsn, f"UPDATE {table} SET {change} WHERE {column} = $1 RETURNING 1", value)
    assert changed, (kind, what)


def register_twice(dsn: str, certificate: str, source: str) -> str:
    """The same birth registered again under another certificate number (drift at one registry)."""
    again = "X" + certificate[1:]  # sorts after the first: the later copy is the duplicate
    rows = query(
        dsn,
        """INSERT INTO births (id, jurisdiction, medical_certificate_number, child_name, child_sex,
                               child_birth_date, mother_id_number, birth_order, birth_division, source_division)
           SELECT $3::uuid, jurisdiction, $2, child_name, child_sex, child_birth_date, mother_id_number,
                  birth_order + 1, birth_division, $4
           FROM births WHERE medical_certificate_number = $1 RETURNING medical_certificate_number""",
        certificate,
        again,
        str(uuid.uuid5(uuid.NAMESPACE_OID, again)),
        source,
    )
    assert rows
    return again


def owners_of(dsn: str, kind: str, key: str) -> list[str]:
    """Where a registry says its record came from (an issuer's own certificate: the issuer)."""
    value: Any = key if kind in ("person", "certificate") else uuid.UUID(key)
    found = []
    for table, column, _ in (TABLES[kind], COPIES.get(kind)) if kind in COPIES else (TABLES[kind],):
        source = "jurisdiction" if table == "certificates" else "source_division"
        sql = f"SELECT {source} AS owner FROM {table} WHERE {column} = $1"
        found += [r["owner"] for r in query(dsn, sql, value)]
    return found
