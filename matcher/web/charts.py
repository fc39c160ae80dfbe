"""Small server-rendered SVG charts: no JavaScript, nothing fetched by the browser.

Each chart has a viewBox and no fixed size, so it scales to its box (a phone's width too).
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from unicodedata import east_asian_width

BAR_HEIGHT = 22
LABEL_WIDTH = 150
BAR_WIDTH = 200
VALUE_WIDTH = 50
# Labels longer than the label column are cut with an ellipsis (the full one is a tooltip);
# a Chinese character is about twice as wide as a Latin letter at 12 px.
LABEL_UNITS = 23


def _width(char: str) -> int:
    """Rough width of a character in label units: 2 for CJK and other wide ones, else 1."""
    return 2 if east_asian_width(char) in ("W", "F") else 1


def _short(label: str) -> str:
    """A label cut to fit the label column."""
    if sum(map(_width, label)) <= LABEL_UNITS:
        return label
    kept, used = [], 0
    for char in label:
        used += _width(char)
        if used > LABEL_UNITS - 1:
            break
        kept.append(char)
    return "".join(kept) + "…"


def bar_chart(values: Mapping[str, float], *, title: str, unit: str = "",
              empty: str = "nothing to show") -> str:
    """A horizontal bar chart as an inline, scalable <svg> element (labels escaped)."""
    rows = list(values.items())
    top = max((value for _, value in rows), default=0) or 1
    height = BAR_HEIGHT * max(len(rows), 1) + 30
    width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title>{escape(title)}</title>',
        f'<text x="0" y="16" class="chart-title">{escape(title)}</text>',
    ]
    if not rows:
        parts.append(f'<text x="0" y="44">{escape(empty)}</text>')
    for index, (label, value) in enumerate(rows):
        y = 28 + index * BAR_HEIGHT
        bar = BAR_WIDTH * value / top
        parts += [
            f'<text x="0" y="{y + 15}" class="chart-label"><title>{escape(label)}</title>'
            f'{escape(_short(label))}</text>',
            f'<rect x="{LABEL_WIDTH}" y="{y + 3}" width="{bar:.1f}" height="{BAR_HEIGHT - 6}"'
            ' class="chart-bar"/>',
            f'<text x="{LABEL_WIDTH + bar + 6:.1f}" y="{y + 15}" class="chart-value">'
            f'{value:g}{escape(unit)}</text>',
        ]
    parts.append("</svg>")
    return "".join(parts)
