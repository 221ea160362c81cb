"""Turn bench/results/*.json into one table, docs/benchmarks.md and plots."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.common import RESULTS

DOCS = Path(__file__).resolve().parent.parent / "docs"


@dataclass
class Row:
    benchmark: str
    metric: str
    value: float | None
    unit: str
    ceiling: float | None = None
    target: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.ceiling:
            return None
        return self.value / self.ceiling


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _pipeline(r: dict[str, Any]) -> list[Row]:
    mx, steady = r["max_throughput"], r["at_500_per_s"]
    rows = [
        Row(
            "pipeline",
            "events/s end to end, one per request (max, 64 clients)",
            mx["events_per_second"],
            "ev/s",
            r["ceiling_kafka_msgs_per_s"],
            # one event per REST request: issue 18's target for that way; batches have their own rows
            ">= 1000 ev/s",
            mx["events_per_second"] >= 1000,
        ),
        Row(
            "pipeline",
            "vs raw PostgreSQL inserts",
            mx["events_per_second"],
            "ev/s",
            r["ceiling_pg_inserts_per_s"],
        ),
        Row("pipeline", "p50 latency at 500 ev/s", steady["latency_s"]["p50"], "s"),
        Row(
            "pipeline",
            "p99 latency at 500 ev/s",
            steady["latency_s"]["p99"],
            "s",
            None,
            "< 1 s",
            steady["latency_s"]["p99"] < 1.0,
        ),
        Row("pipeline", "achieved rate at 500 ev/s offered", steady["events_per_second"], "ev/s"),
    ]
    if "lone_event" in r:
        lone = r["lone_event"]["latency_s"]
        rows.append(
            Row(
                "pipeline",
                "p50 latency of a lone event, idle system",
                lone["p50"],
                "s",
                None,
                "< 0.2 s",
                lone["p50"] < 0.2,
            )
        )
        rows.append(Row("pipeline", "p99 latency of a lone event, idle system", lone["p99"], "s"))
    for name, mb in r.get("peak_rss_mb", {}).items():
        rows.append(Row("memory", f"peak RSS {name}", mb, "MB", None, "< 300 MB", mb < 300))
    return rows


def _generic(name: str, r: dict[str, Any]) -> list[Row]:
    """Benchmarks that report their own rows: [{metric, value, unit, ceiling?, target?, met?}]."""
    return [
        Row(
            name,
            x["metric"],
            x.get("value"),
            x.get("unit", ""),
            x.get("ceiling"),
            x.get("target", ""),
            x.get("met"),
        )
        for x in r.get("rows", [])
    ]


def collect() -> list[Row]:
    rows: list[Row] = []
    names = (
        "offline_token",
        "verification",
        "pipeline",
        "batches",
        "trust_cost",
        "replay",
        "reconciliation",
        "import_roster",
        "backlog",
    )
    for name in names:
        r = _load(name)
        if r is None:
            continue
        rows += _pipeline(r) if name == "pipeline" else _generic(name, r)
    return rows


def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def render() -> Table:
    rows = collect()
    table = Table(title="Benchmarks (ratios against ceilings measured in the same run)")
    for col in ("benchmark", "metric", "value", "ceiling", "ratio", "target", "met"):
        table.add_column(col)
    lines = [
        "| benchmark | metric | value | ceiling | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            r.benchmark,
            r.metric,
            f"{_fmt(r.value)} {r.unit}",
            _fmt(r.ceiling),
            f"{r.ratio:.2f}" if r.ratio is not None else "—",
            r.target,
            {True: "yes", False: "NO", None: ""}[r.met],
        ]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    _write_docs(lines)
    return table


def _plot() -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = []
    for name in ("pipeline", "verification"):
        r = _load(name)
        curve = (r or {}).get("curve")  # [{"rate": offered or achieved per s, "p50": s, "p99": s}]
        if not curve:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([c["rate"] for c in curve], [c["p50"] * 1000 for c in curve], "o-", label="p50")
        ax.plot([c["rate"] for c in curve], [c["p99"] * 1000 for c in curve], "s--", label="p99")
        ax.set_xlabel("throughput (per second)")
        ax.set_ylabel("latency (ms)")
        ax.set_title(f"{name}: throughput vs latency")
        ax.legend()
        ax.grid(alpha=0.3)
        out = DOCS / f"bench-{name}.png"
        fig.savefig(out, dpi=100, bbox_inches="tight")
        plt.close(fig)
        images.append(out.name)
    return images


def interpreter() -> str:
    """The CPython every process of the run used (the services are started with the same one), and
    whether its interpreter loop runs from a shared library: such a build without PGO and LTO (pyenv's
    default) costs the services about a tenth more CPU than Debian's (``docs/scale.md``)."""
    which = (
        f"{platform.python_implementation()} {platform.python_version()}, {os.path.realpath(sys.executable)}"
    )
    try:
        shared = "libpython" in Path("/proc/self/maps").read_text()
    except OSError:  # not Linux: say nothing of the linking
        return which
    return f"{which}, {'from the shared libpython' if shared else 'linked into the executable'}"


def _write_docs(lines: list[str]) -> None:
    DOCS.mkdir(exist_ok=True)
    images = _plot()
    text = [
        "# Benchmarks",
        "",
        "Generated by `make bench` on the machine it ran on (2 cores here). Each figure stands next to a",
        "ceiling measured in the same run on the same machine; targets are reported, not asserted.",
        f"Interpreter: {interpreter()}.",
        "",
        *lines,
        "",
        *[f"![{img}]({img})" for img in images],
        "",
        "Raw results: `bench/results/*.json`. See `docs/scale.md` for what the figures mean for a national deployment.",
    ]
    (DOCS / "benchmarks.md").write_text("\n".join(text) + "\n")
