"""The registry's use cases, one module per use case; this module names them all in one place.

Each runs inside the caller's unit of work and never commits itself.
"""

from services.registry.service_layer.births import register_birth
from services.registry.service_layer.certificates import (
    certificate_claims,
    certificate_qr,
    issue_certificate,
    jwks,
    revoke_certificate,
    rotate_key,
)
from services.registry.service_layer.context import Context
from services.registry.service_layer.corrections import record_correction
from services.registry.service_layer.marriages import dissolve_marriage, register_marriage
from services.registry.service_layer.migrations import record_migration
from services.registry.service_layer.persons import register_person
from services.registry.service_layer.pregnancies import close_pregnancy, register_pregnancy
from services.registry.service_layer.reads import read_disclosures, read_person, read_pregnancy

__all__ = [
    "Context",
    "certificate_claims",
    "certificate_qr",
    "close_pregnancy",
    "dissolve_marriage",
    "issue_certificate",
    "jwks",
    "read_disclosures",
    "read_person",
    "read_pregnancy",
    "record_correction",
    "record_migration",
    "register_birth",
    "register_marriage",
    "register_person",
    "register_pregnancy",
    "revoke_certificate",
    "rotate_key",
]
