"""An error as operators read it (a dead letter's reason, a failed reconciliation run): by its
class, SQLSTATE and constraint, never by its text, which quotes the row a constraint refused."""

from __future__ import annotations

import asyncpg

from services.migrant_exchange.service_layer.reconciliation import failure_text
from shared.dead_letters import describe_error
from shared.errors import ServiceUnavailable, fault_text

ID_NUMBER = "11010119900307001X"


def _refused_row() -> asyncpg.UniqueViolationError:
    error = asyncpg.UniqueViolationError(
        f'duplicate key value violates unique constraint "discrepancies_open"'
        f"\nDETAIL:  Key (subject_key, id_number)=(ab12, {ID_NUMBER}) already exists."
    )
    error.constraint_name = "discrepancies_open"
    return error


def test_a_driver_error_is_told_by_class_sqlstate_and_constraint() -> None:
    said = fault_text(_refused_row())
    assert said == "UniqueViolationError: sqlstate 23505, constraint discrepancies_open"
    assert describe_error(_refused_row()) == said
    assert fault_text(KeyError(ID_NUMBER)) == "KeyError"


def test_a_failed_reconciliation_run_keeps_no_row_of_anyone() -> None:
    assert ID_NUMBER not in failure_text(_refused_row())
    assert failure_text(RuntimeError(f"records of {ID_NUMBER} differ")) == "RuntimeError"
    unreachable = ServiceUnavailable("the registry of 440703 is unreachable: ConnectError")
    assert failure_text(unreachable) == "the registry of 440703 is unreachable: ConnectError"
