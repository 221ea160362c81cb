"""``exchangectl keys``: a jurisdiction's certificate-signing keys (Ed25519), in its registry's database.

``keys revoke`` withdraws a compromised key: the registry stops signing with it and lists it as
revoked in its JWKS, and the verification service (its database, when the stack names it)
refuses tokens under it at once; offline kiosks learn it from the next status list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cli.common import (
    JsonOption,
    StackInfo,
    StackOption,
    connection,
    console,
    emit,
    emit_json,
    run,
    unit_of_work_at,
)
from services.registry.service_layer import keys as signing_keys
from services.registry.settings import RegistrySettings
from services.verification.service_layer import publication as verification

app = typer.Typer(
    help="Create, rotate and list a jurisdiction's certificate-signing keys.", no_args_is_help=True
)

Jurisdiction = typer.Option(..., "--jurisdiction", "-j", help="division code whose keys these are")
Dsn = typer.Option(None, "--dsn", envvar="REGISTRY_DATABASE_URL", help="registry database URL")


def _settings(jurisdiction: str) -> RegistrySettings:
    # KEY_ENCRYPTION_KEY and KEY_ROTATION_OVERLAP_DAYS come from the environment, as for the registry.
    return RegistrySettings(jurisdictions=jurisdiction)


async def _published(dsn: str, jurisdiction: str) -> list[dict[str, Any]]:
    async with connection(dsn) as conn:
        found = await signing_keys.listed(conn, jurisdiction)
    fields = ("kid", "jurisdiction", "state", "created_at", "retired_at", "revoked_at", "expires_at")
    return [{**{f: k[f] for f in fields}, "public_key": bytes(k["public_key"]).hex()} for k in found]


async def _create(dsn: str, jurisdiction: str, rotate: bool) -> str | None:
    async with unit_of_work_at(dsn, wake=False) as conn:
        return await signing_keys.new_key(conn, _settings(jurisdiction), jurisdiction, rotate=rotate)


def _dsn(dsn: str | None, stack: Path | None, jurisdiction: str) -> str:
    return dsn or StackInfo(stack).registry_dsn(jurisdiction)


@app.command("list")
def list_keys(
    jurisdiction: str = Jurisdiction,
    dsn: str | None = Dsn,
    stack: Path | None = StackOption,
    as_json: bool = JsonOption,
) -> None:
    """List the published keys: the active one and retired ones still inside their overlap window."""
    found = run(_published(_dsn(dsn, stack, jurisdiction), jurisdiction))
    emit(found, as_json, f"signing keys of {jurisdiction}", ["kid", "state", "created_at", "expires_at"])


@app.command("create")
def create(
    jurisdiction: str = Jurisdiction,
    dsn: str | None = Dsn,
    stack: Path | None = StackOption,
    as_json: bool = JsonOption,
) -> None:
    """Create the jurisdiction's first signing key (refused if one is active: use rotate)."""
    kid = run(_create(_dsn(dsn, stack, jurisdiction), jurisdiction, rotate=False))
    if kid is None:
        console.print(f"[red]{jurisdiction} already has an active key; use `exchangectl keys rotate`")
        raise typer.Exit(1)
    emit_json({"kid": kid, "jurisdiction": jurisdiction}) if as_json else console.print(f"created {kid}")


@app.command("rotate")
def rotate(
    jurisdiction: str = Jurisdiction,
    dsn: str | None = Dsn,
    stack: Path | None = StackOption,
    as_json: bool = JsonOption,
) -> None:
    """Make a new active key; the old one signs no more but stays published for the overlap period."""
    kid = run(_create(_dsn(dsn, stack, jurisdiction), jurisdiction, rotate=True))
    emit_json({"kid": kid, "jurisdiction": jurisdiction}) if as_json else console.print(
        f"rotated: {kid} is active"
    )


async def _revoke(
    dsn: str, verification_dsn: str | None, jurisdiction: str, kid: str
) -> dict[str, Any] | None:
    async with unit_of_work_at(dsn, wake=False) as conn:
        public = await signing_keys.revoke(conn, jurisdiction, kid)
    if public is None:
        return None
    outcome = "at its next key refresh (KEY_REFRESH_SECONDS)"
    if verification_dsn:
        async with unit_of_work_at(verification_dsn, wake=False) as conn:
            recorded = await verification.refuse_key(
                conn, kid=kid, issuer=jurisdiction, public_key=public, source="revocation"
            )
        outcome = "now" if recorded == "revoked" else "refused: it holds another key under this kid"
    return {"kid": kid, "jurisdiction": jurisdiction, "state": "revoked", "verification": outcome}


@app.command("revoke")
def revoke(
    kid: str = typer.Option(..., "--kid", help="the key id to withdraw"),
    jurisdiction: str = Jurisdiction,
    dsn: str | None = Dsn,
    verification_dsn: str | None = typer.Option(
        None,
        "--verification-dsn",
        envvar="VERIFICATION_DATABASE_URL",
        help="verification's database, to refuse the key at once (default: the stack's)",
    ),
    stack: Path | None = StackOption,
    as_json: bool = JsonOption,
) -> None:
    """Withdraw a compromised signing key for good: online verification refuses tokens under it at
    once, offline kiosks with their next status list; the next certificate gets a new key."""
    info = StackInfo(stack)
    if verification_dsn is None and "verification" in info.services_with_databases():
        verification_dsn = info.dsn("verification")
    done = run(_revoke(_dsn(dsn, stack, jurisdiction), verification_dsn, jurisdiction, kid))
    if done is None:
        console.print(f"[red]{jurisdiction} has no key {kid}")
        raise typer.Exit(1)
    if as_json:
        emit_json(done)
    else:
        console.print(f"revoked {kid}; verification refuses it {done['verification']}")
