"""Small server-rendered SVG charts: no JavaScript, nothing fetched by the browser."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

BAR_HEIGHT = 22
LABEL_WIDTH = 190
BAR_WIDTH = 320


def bar_chart(values: Mapping[str, float], *, title: str, unit: str = "") -> str:
    """A horizontal bar chart as an inline <svg> element (labels escaped)."""
    rows = list(values.items())
    top = max((value for _, value in rows), default=0) or 1
    height = BAR_HEIGHT * max(len(rows), 1) + 30
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'width="{LABEL_WIDTH + BAR_WIDTH + 70}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title>{escape(title)}</title>',
        f'<text x="0" y="16" class="chart-title">{escape(title)}</text>',
    ]
    if not rows:
        parts.append('<text x="0" y="44">nothing to show</text>')
    for index, (label, value) in enumerate(rows):
        y = 28 + index * BAR_HEIGHT
        width = BAR_WIDTH * value / top
        parts += [
            f'<text x="0" y="{y + 15}" class="chart-label">{escape(label)}</text>',
            f'<rect x="{LABEL_WIDTH}" y="{y + 3}" width="{width:.1f}" height="{BAR_HEIGHT - 6}"'
            ' class="chart-bar"/>',
            f'<text x="{LABEL_WIDTH + width + 6:.1f}" y="{y + 15}" class="chart-value">'
            f'{value:g}{escape(unit)}</text>',
        ]
    parts.append("</svg>")
    return "".join(parts)
