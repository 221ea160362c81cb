"""HTTP client of the registries' internal reconciliation endpoints."""

from __future__ import annotations

from typing import Any

import httpx

from services.migrant_exchange.settings import ExchangeSettings
from shared.errors import Conflict, RuleViolation, ServiceUnavailable


class MethodNotAllowed(ServiceUnavailable):
    """The registry has no such route for this method (one not upgraded yet)."""


class RegistryClient:
    """Talks to whichever registry keeps a jurisdiction's records."""

    def __init__(self, settings: ExchangeSettings):
        self.urls = settings.registries
        token = settings.registry_token.get_secret_value() if settings.registry_token else ""
        self.http = httpx.AsyncClient(
            timeout=settings.reconciliation_timeout_seconds, headers={"Authorization": f"Bearer {token}"}
        )

    async def close(self) -> None:
        await self.http.aclose()

    def _url(self, jurisdiction: str) -> str:
        try:
            return self.urls[jurisdiction]
        except KeyError:
            raise RuleViolation(
                f"no registry is configured for {jurisdiction}",
                field="division_a",
                rule="registry-configured",
            ) from None

    async def _call(self, method: str, jurisdiction: str, path: str, **kw: Any) -> dict[str, Any]:
        try:
            r = await self.http.request(method, self._url(jurisdiction) + path, **kw)
        except httpx.HTTPError as e:
            raise ServiceUnavailable(
                f"the registry of {jurisdiction} is unreachable: {type(e).__name__}"
            ) from e
        if r.status_code == 405:
            raise MethodNotAllowed(f"the registry of {jurisdiction} has no {method} {path}")
        if r.status_code in (404, 409, 422):
            raise Conflict(
                f"the registry of {jurisdiction} refused: {_detail(r)}",
                field="owner",
                rule="registry-refused",
            )
        if r.status_code >= 400:
            raise ServiceUnavailable(f"the registry of {jurisdiction} answered {r.status_code}")
        return r.json()  # type: ignore[no-any-return]

    async def digests(
        self, jurisdiction: str, counterpart: str, buckets: int, left_out: list[tuple[str, str]]
    ) -> dict[str, Any]:
        """Counts and digests per bucket, without the records ``left_out`` (kind, exchange key).

        With nothing to leave out, or from a registry not upgraded yet (its digests answer ``GET``
        alone: 405), the ``GET`` form: every record counts, and the drill-down's ``held_by`` sets
        aside what the digests could not, as before."""
        path = "/v1/internal/reconciliation/digests"
        query = {"jurisdiction": jurisdiction, "counterpart": counterpart, "buckets": buckets}
        if left_out:
            body = {**query, "left_out": [list(held) for held in left_out]}
            try:
                return await self._call("POST", jurisdiction, path, json=body)
            except MethodNotAllowed:
                pass
        return await self._call("GET", jurisdiction, path, params=query)

    async def records(
        self, jurisdiction: str, counterpart: str, buckets: int, selected: list[int]
    ) -> list[dict[str, Any]]:
        body = {
            "jurisdiction": jurisdiction,
            "counterpart": counterpart,
            "buckets": buckets,
            "selected": selected,
        }
        doc = await self._call("POST", jurisdiction, "/v1/internal/reconciliation/records", json=body)
        return list(doc["records"])

    async def correct(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(
            "POST", body["jurisdiction"], "/v1/internal/reconciliation/corrections", json=body
        )


def _detail(r: httpx.Response) -> str:
    """A registry's problem detail (its rules never echo a value), bounded."""
    try:
        return str(r.json().get("detail") or r.status_code)[:300]
    except ValueError:
        return str(r.status_code)
