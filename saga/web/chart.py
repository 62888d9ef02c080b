"""Inline SVG drawn by the server: the overview's bar chart and an instance's timeline.

Colours and fonts come from app.css (classes), since the CSP allows no inline style.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from .html import Markup, join, render

WIDTH: Final = 720
HEIGHT: Final = 160
LEFT: Final = 44  # room for the y-axis labels
BOTTOM: Final = 20  # room for the x-axis labels


def per_minute(counts: Sequence[int], what: str) -> Markup:
    """Bars of *counts* (one per minute, the oldest first), labelled with *what*."""
    top = max(max(counts, default=0), 1)
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - 8
    step = plot_w / max(len(counts), 1)
    bars = []
    for i, count in enumerate(counts):
        h = plot_h * count / top
        ago = len(counts) - 1 - i
        bars.append(render(
            '<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}">'
            "<title>{count:,} {what}, {when}</title></rect>",
            x=LEFT + i * step + 1, y=8 + plot_h - h, w=max(step - 2, 1), h=h, count=count,
            what=what, when="this minute" if ago == 0 else f"{ago} min ago"))
    labels = render(
        '<text class="axis" x="{lx}" y="14" text-anchor="end">{top:,}</text>'
        '<text class="axis" x="{lx}" y="{by}" text-anchor="end">0</text>'
        '<line class="baseline" x1="{l}" x2="{r}" y1="{base}" y2="{base}"/>'
        '<text class="axis" x="{l}" y="{ty}">60 min ago</text>'
        '<text class="axis" x="{mid}" y="{ty}" text-anchor="middle">30 min ago</text>'
        '<text class="axis" x="{r}" y="{ty}" text-anchor="end">now</text>',
        lx=LEFT - 6, top=top, by=8 + plot_h, l=LEFT, r=WIDTH - 4, base=8 + plot_h,
        ty=HEIGHT - 4, mid=LEFT + plot_w / 2)
    total = sum(counts)
    return render(
        '<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{label}">'
        "<title>{label}</title>{bars}{labels}</svg>",
        w=WIDTH, h=HEIGHT, label=f"{total:,} {what} in the last hour, per minute",
        bars=join(bars), labels=labels)


def timeline(rows: Sequence[dict[str, Any]], now: datetime) -> Markup:
    """One bar per step run, placed in time from the first start to the last end."""
    spans = [(r, r["started_at"] or r["ended_at"], r["ended_at"] or now) for r in rows]
    spans = [(r, s, e) for r, s, e in spans if s is not None]
    if not spans:
        return Markup("")
    first = min(s for _, s, _ in spans)
    last = max(e for _, _, e in spans)
    total = max((last - first).total_seconds(), 1e-3)
    row_h, label_w = 18, 150
    plot_w = WIDTH - label_w - 4
    parts = []
    for i, (row, start, end) in enumerate(spans):
        x = label_w + plot_w * (start - first).total_seconds() / total
        w = max(plot_w * (end - start).total_seconds() / total, 2)
        outcome = "running" if row["ended_at"] is None else f"s{row['status']}"
        parts.append(render(
            '<text class="axis" x="{lx}" y="{ty}" text-anchor="end">{step} #{attempt}</text>'
            '<rect class="span {outcome}" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{h}">'
            "<title>{step}, attempt {attempt}</title></rect>",
            lx=label_w - 6, ty=i * row_h + 13, step=row["step"], attempt=row["attempt"],
            outcome=outcome, x=x, y=i * row_h + 2, w=w, h=row_h - 4))
    height = len(spans) * row_h + 4
    return render('<svg class="timeline" viewBox="0 0 {w} {h}" role="img" '
                  'aria-label="step timeline"><title>step timeline</title>{parts}</svg>',
                  w=WIDTH, h=height, parts=join(parts))
