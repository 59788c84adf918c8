"""The overview's chart: calls per agent per hour, as an SVG drawn on the server (no script).

Agent names are escaped (they are text the owner chose, but the page treats every stored
string as untrusted). Colours come from a fixed palette, cycled.
"""

from __future__ import annotations

from markupsafe import Markup, escape

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4d7c0f")
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 760, 220, 40, 30, 10


def calls_chart(series: dict[str, list[int]], buckets: list[str]) -> Markup:
    """One polyline per agent over ``buckets`` (hours, oldest first), with axes and a legend."""
    n = max(len(buckets), 1)
    peak = max((max(v) for v in series.values() if v), default=0) or 1
    plot_w, plot_h = WIDTH - LEFT - 10, HEIGHT - BOTTOM - TOP

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: int) -> float:
        return TOP + plot_h - plot_h * v / peak

    legend_h = 16 * len(series)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" '
        f'viewBox="0 0 {WIDTH} {HEIGHT + legend_h}" width="{WIDTH}" '
        f'height="{HEIGHT + legend_h}" aria-label="calls per agent per hour">',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 10}" y2="{TOP + plot_h}" '
        'stroke="#888"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#888"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end" font-size="10">{peak}</text>',
        f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end" font-size="10">0</text>',
    ]
    for i, bucket in enumerate(buckets):
        if i % 6 == 0 or i == n - 1:
            label = escape(bucket[11:13] + ":00")
            parts.append(
                f'<text x="{x(i):.1f}" y="{HEIGHT - 12}" text-anchor="middle" '
                f'font-size="10">{label}</text>'
            )
    for k, (name, values) in enumerate(sorted(series.items())):
        colour = PALETTE[k % len(PALETTE)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}">'
            f"<title>{escape(name)}: {sum(values)} calls</title></polyline>"
        )
        ly = HEIGHT + 12 + 16 * k
        parts.append(f'<rect x="{LEFT}" y="{ly - 9}" width="10" height="10" fill="{colour}"/>')
        parts.append(
            f'<text x="{LEFT + 16}" y="{ly}" font-size="12">{escape(name)} '
            f"({sum(values)} calls)</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above
