"""The wall screen fits: at 1280×720, 1920×1080 and 3840×2160 nothing scrolls sideways and no
panel's text runs out of its box; the busiest flows read as place names.

The roster gets 30 real counties with thousands of migrants each (long names, five-digit
counts), so the page is measured with what a provincial wall shows, not with two test rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import Stack
from shared.identity import division_name
from tests.helpers import query as _query_here

pytestmark = pytest.mark.e2e
DOCS = Path(__file__).resolve().parents[2] / "test-artifacts"
SYNTHETIC = "wallfit"
SIZES = [(1280, 720), (1920, 1080), (3840, 2160)]
# Real counties with long names (autonomous regions and prefectures included), not 市辖区.
COUNTIES = [
    c
    for c in (
        f"{p}{q:02d}{r:02d}" for p in (45, 65, 53, 52, 15, 44, 32, 51) for q in (1, 2, 3) for r in (2, 3)
    )
    if (name := division_name(c)) and not name.endswith("市辖区")
][:30]


def query(dsn: str, sql: str, *args: Any) -> list[Any]:
    """helpers.query on a thread of its own: Playwright's sync API keeps an event loop on this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_query_here, dsn, sql, *args).result()


@pytest.fixture
def busy_province(stack: Stack) -> Iterator[list[str]]:
    dsn = stack.service("migrant_exchange").dsn
    query(
        dsn,
        """INSERT INTO roster (subject, hukou_division, residence_division, moves, last_event_at)
           SELECT $1 || o || '-' || d || '-' || r, ($2::text[])[o], ($2::text[])[d], 1, timestamptz '2000-01-01'
           FROM generate_series(1, 30) o, generate_series(1, 30) d,
                generate_series(1, CASE WHEN (o + d) % 7 = 0 THEN 400 - o * 5 - d ELSE 12 END) r
           WHERE o <> d""",
        SYNTHETIC,
        COUNTIES,
    )
    try:
        yield COUNTIES
    finally:
        query(dsn, "DELETE FROM roster WHERE subject LIKE $1 || '%'", SYNTHETIC)


OVERFLOWS = """() => {
  const out = [];
  for (const el of document.querySelectorAll('#board, #board *')) {
    if (!el.clientWidth) continue;
    const style = getComputedStyle(el);
    // Content wider than a box that clips or scrolls it is text cut off (or a sideways scrollbar).
    if (style.overflowX !== 'visible' && el.scrollWidth > el.clientWidth + 1) {
      out.push(`${el.tagName}.${el.className}#${el.id}: ${el.scrollWidth} > ${el.clientWidth}`);
    }
    // A box reaching past its panel's right edge is cut off by the panel.
    const panel = el.closest('.panel, .tile');
    if (panel && panel !== el) {
      const r = el.getBoundingClientRect(), p = panel.getBoundingClientRect();
      if (r.width && r.right > p.right + 1 && getComputedStyle(el).position !== 'absolute') {
        out.push(`${el.tagName}#${el.id}.${el.className} sticks out of ${panel.className} by ${Math.round(r.right - p.right)} px`);
      }
    }
  }
  return out;
}"""


def test_the_wall_screen_fits_three_screens_and_names_the_busiest_flows(
    stack: Stack, browser: Any, busy_province: list[str]
) -> None:
    url = stack.service("migrant_exchange").url
    busiest = max(
        ((o, d) for o in range(1, 31) for d in range(1, 31) if o != d),
        key=lambda od: (400 - od[0] * 5 - od[1]) if sum(od) % 7 == 0 else 12,
    )
    origin, destination = busy_province[busiest[0] - 1], busy_province[busiest[1] - 1]
    DOCS.mkdir(exist_ok=True)
    for width, height in SIZES:
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(f"{url}/dashboard#token={stack.token('operator')}")
        page.wait_for_selector("[data-testid=status][data-state=live]", timeout=20_000)
        page.wait_for_function(
            "Number(document.getElementById('heat').dataset.total) >= 10000", timeout=20_000
        )
        # the indicators refresh on their own schedule: wait until they name the busy province's rows
        page.wait_for_function(
            "names => names.filter(n => document.querySelector('[data-testid=indicators]').innerText"
            ".includes(n)).length >= 10",
            arg=[str(division_name(c)) for c in busy_province],
            timeout=30_000,
        )
        scroll = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll[0] <= scroll[1], f"{width}x{height}: page {scroll[0]} px wide"
        assert page.evaluate(OVERFLOWS) == [], f"{width}x{height}"
        top = page.get_by_test_id("top-flows").inner_text()
        assert f"{division_name(origin)} → {division_name(destination)}" in top.splitlines()[0]
        table = page.get_by_test_id("indicators").inner_text()
        assert sum(str(division_name(c)) in table for c in busy_province) >= 10  # rows named too
        page.screenshot(path=str(DOCS / f"dashboard-{width}x{height}.png"))
        page.close()

    # The dashboard keeps its last flow matrix while nobody watches: watch until it has dropped
    # the synthetic province, so the next page opened (another test's) starts from real figures.
    query(stack.service("migrant_exchange").dsn, "DELETE FROM roster WHERE subject LIKE $1 || '%'", SYNTHETIC)
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto(f"{url}/dashboard#token={stack.token('operator')}")
    page.wait_for_function("Number(document.getElementById('heat').dataset.total) < 10000", timeout=20_000)
    page.close()
