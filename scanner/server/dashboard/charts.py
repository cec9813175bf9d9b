"""Charts drawn on the server as SVG: no JavaScript, nothing from another host, and they
print and scale with the page (a ``viewBox``, sized by the stylesheet).

Each chart is an ``<svg role="img">`` with a title and a description a screen reader
reads, a ``<title>`` per bar (hover text, and the value when read bar by bar), and no
``style`` attribute (the Content-Security-Policy allows none): colours come from classes
in the stylesheet. Every label is escaped here; the numbers are ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 200
_LEFT, _BOTTOM, _TOP = 40, 24, 12


def bar_chart(chart_id: str, title: str, bars: Sequence[tuple[str, int]], *,
              label_every: int = 1, unit: str = "") -> Markup:
    """Vertical bars, one per ``(label, value)``, with a 0..max axis."""
    top = max((value for _, value in bars), default=0)
    scale_max = max(1, top)
    inner_w = WIDTH - _LEFT - 8
    inner_h = HEIGHT - _BOTTOM - _TOP
    step = inner_w / max(1, len(bars))
    total = sum(value for _, value in bars)
    desc = f"{len(bars)} bars, largest {top}{unit}, total {total}{unit}"
    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
           f'aria-labelledby="{chart_id}-t {chart_id}-d" focusable="false">',
           f'<title id="{chart_id}-t">{escape(title)}</title>',
           f'<desc id="{chart_id}-d">{escape(desc)}</desc>',
           f'<line class="axis" x1="{_LEFT}" y1="{_TOP + inner_h}" x2="{WIDTH - 8}" '
           f'y2="{_TOP + inner_h}"/>',
           f'<text class="tick" x="{_LEFT - 4}" y="{_TOP + 4}" text-anchor="end">'
           f'{scale_max}</text>',
           f'<text class="tick" x="{_LEFT - 4}" y="{_TOP + inner_h}" text-anchor="end">0</text>']
    for index, (label, value) in enumerate(bars):
        h = inner_h * value / scale_max
        x = _LEFT + index * step
        out.append(f'<rect class="bar" x="{x + 1:.1f}" y="{_TOP + inner_h - h:.1f}" '
                   f'width="{max(1.0, step - 2):.1f}" height="{h:.1f}">'
                   f'<title>{escape(label)}: {value}{escape(unit)}</title></rect>')
        if index % label_every == 0:
            out.append(f'<text class="tick" x="{x + step / 2:.1f}" y="{HEIGHT - 6}" '
                       f'text-anchor="middle">{escape(label)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def per_day(counts: dict[str, int], today: date, days: int = 30) -> list[tuple[str, int]]:
    """The last ``days`` days ending ``today``, each with its count (0 when absent),
    labelled ``MM-DD``; keys of ``counts`` are ``YYYY-MM-DD``."""
    start = today - timedelta(days=days - 1)
    out = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        out.append((day.strftime("%m-%d"), counts.get(day.isoformat(), 0)))
    return out


#: The time-to-revoke histogram's buckets: upper bound in seconds, and its label.
BUCKETS: tuple[tuple[float, str], ...] = (
    (10, "<10 s"), (60, "<1 min"), (300, "<5 min"), (900, "<15 min"), (3600, "<1 h"),
    (6 * 3600, "<6 h"), (86400, "<1 d"), (float("inf"), "≥1 d"))


def histogram(seconds: Sequence[float]) -> list[tuple[str, int]]:
    """How many durations fall in each of :data:`BUCKETS`."""
    counts = [0] * len(BUCKETS)
    for value in seconds:
        for index, (upper, _) in enumerate(BUCKETS):
            if value < upper:
                counts[index] += 1
                break
    return [(label, count) for (_, label), count in zip(BUCKETS, counts, strict=True)]
