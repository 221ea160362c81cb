"""Dependency audit: no installed package has a known vulnerability (pip-audit, PyPI advisories).

Needs PyPI's advisory service; when it cannot be reached the test is skipped with the reason,
never failed, since an offline machine says nothing about the pins.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

_UNREACHABLE = (
    "ConnectionError",
    "Max retries exceeded",
    "Name or service not known",
    "Temporary failure in name resolution",
    "timed out",
    "Connection refused",
    "Network is unreachable",
)


def test_no_installed_dependency_has_a_known_vulnerability() -> None:
    exe = shutil.which("pip-audit", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("pip-audit is not installed (it is in the dev extra: make install)")
    try:
        done = subprocess.run(
            [exe, "--skip-editable", "--format", "json", "--progress-spinner", "off"],
            capture_output=True,
            text=True,
            timeout=180,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("pip-audit: the PyPI advisory service did not answer within 180 s")
    if done.returncode not in (0, 1) or not done.stdout.strip():
        if any(marker in done.stderr for marker in _UNREACHABLE):
            pytest.skip(f"pip-audit: the PyPI advisory service is unreachable: {done.stderr.strip()[-300:]}")
        pytest.fail(f"pip-audit failed ({done.returncode}): {done.stderr[-1000:]}")
    report = json.loads(done.stdout)
    audited = report["dependencies"]
    vulnerable = [
        f"{d['name']} {d['version']}: "
        + ", ".join(f"{v['id']} (fixed in {v['fix_versions']})" for v in d["vulns"])
        for d in audited
        if d.get("vulns")
    ]
    assert len(audited) > 30, "pip-audit saw suspiciously few packages"
    checked = [d for d in audited if "skip_reason" not in d]
    if not checked:
        # Some mirrors serve PyPI's project JSON but not the per-release JSON pip-audit asks for.
        # The project JSON lists the advisories of the latest release: enough for every package
        # installed at its latest version, which a fresh `make install` mostly is.
        vulnerable, checked_names = asyncio.run(_audit_latest(audited))
        if not checked_names:
            reasons = sorted({d["skip_reason"].split(":")[0] for d in audited})
            pytest.skip(f"pip-audit could audit no package (the advisory lookups failed: {reasons[:3]})")
        print(
            f"\npip-audit fallback: {len(checked_names)} of {len(audited)} packages audited at their latest release"
        )
    assert not vulnerable, "known-vulnerable packages installed:\n" + "\n".join(vulnerable)


async def _audit_latest(dependencies: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Advisories of each package from PyPI's project JSON, when the installed version is the latest."""
    from importlib.metadata import version as installed_version

    installed = {}
    for d in dependencies:
        if "editable" in d.get("skip_reason", ""):
            continue
        try:
            installed[d["name"]] = d.get("version") or installed_version(d["name"])
        except Exception:  # noqa: S112 - a package we cannot place is simply not audited
            continue
    vulnerable: list[str] = []
    checked: list[str] = []
    limit = asyncio.Semaphore(16)

    async def one(http: httpx.AsyncClient, name: str, version: str) -> None:
        async with limit:
            try:
                r = await http.get(f"https://pypi.org/pypi/{name}/json")
            except httpx.HTTPError:
                return
        if r.status_code != 200:
            return
        doc = r.json()
        if doc["info"]["version"] != version:
            return  # an older release: its advisories are not in the project document
        checked.append(name)
        for v in doc.get("vulnerabilities") or []:
            if not v.get("withdrawn"):
                vulnerable.append(f"{name} {version}: {v['id']} (fixed in {v.get('fixed_in')})")

    async with httpx.AsyncClient(timeout=20) as http:
        await asyncio.gather(*(one(http, n, v) for n, v in installed.items()))
    return vulnerable, checked
