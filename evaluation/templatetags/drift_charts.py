"""The drift page's chart: a distribution's PSI bins, both windows' shares side by side, as inline SVG (no script)."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

register = template.Library()

WIDTH, HEIGHT, AXIS = 320, 110, 16
BASELINE, CURRENT, MOVED = "#adb5bd", "#1c7ed6", "#e03131"
# A bin carrying this share of the PSI or more is drawn in the alarm colour: where the distribution moved.
MOVED_SHARE = 0.25


def _value(metric: str, x: float) -> str:
    if metric == "latency_ms":
        return f"{x:,.0f} ms"
    if metric == "response_length":
        return f"{x:,.0f} chars"
    return f"{x:.2f}"


@register.simple_tag
def psi_chart(distribution: dict[str, Any]) -> SafeString:
    """{% psi_chart x %}: the bins of a distribution's move (evaluation.reports.shift.distribution_shift), baseline
    beside current, each bar titled with its range, both shares and its part of the PSI. Nothing for a row without
    bins (too little data, or a snapshot taken before they were kept)."""
    bins: list[dict[str, float]] = distribution.get("bins") or []
    if not bins:
        return SafeString("")
    metric = str(distribution.get("metric", ""))
    total = sum(b["psi"] for b in bins) or 1.0
    top = max(max(b["baseline"], b["current"]) for b in bins) or 1.0
    slot = WIDTH / len(bins)
    bar = slot * 0.4
    plot = HEIGHT - AXIS
    bars = []
    for i, b in enumerate(bins):
        span = f"{_value(metric, b['low'])} to {_value(metric, b['high'])}"
        said = f"{span}: baseline {b['baseline']:.1%}, current {b['current']:.1%} (PSI part {b['psi']:.3f})"
        moved = b["psi"] / total >= MOVED_SHARE and distribution.get("status") in ("moderate", "shifted")
        for offset, share, colour in ((0.1, b["baseline"], BASELINE), (0.5, b["current"], MOVED if moved else CURRENT)):
            height = plot * share / top
            bars.append((f"{i * slot + offset * slot:.1f}", f"{plot - height:.1f}", f"{bar:.1f}", f"{height:.1f}",
                         colour, said))  # fmt: skip
    rects = format_html_join("", '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>', bars)
    label = f"{distribution.get('label', metric)}: share of traces per bin, baseline (grey) and current"
    return format_html(
        '<svg class="psi-chart" data-testid="psi-chart" viewBox="0 0 {} {}" width="{}" height="{}" role="img" '
        'aria-label="{}">{}<line x1="0" y1="{}" x2="{}" y2="{}" stroke="#868e96"/>'
        '<text x="0" y="{}" font-size="10">{}</text><text x="{}" y="{}" font-size="10" text-anchor="end">{}</text>'
        "</svg>",
        WIDTH, HEIGHT, WIDTH, HEIGHT, label, rects, plot, WIDTH, plot,
        HEIGHT - 3, _value(metric, bins[0]["low"]), WIDTH, HEIGHT - 3, _value(metric, bins[-1]["high"]),
    )  # fmt: skip


@register.simple_tag
def psi_legend(distributions: list[dict[str, Any]] | dict[str, Any]) -> SafeString:
    """{% psi_legend d.distributions %} (or one row): what psi_chart's colours say, once, when any is drawn."""
    rows = [distributions] if isinstance(distributions, dict) else distributions
    if not any(row.get("bins") for row in rows):
        return SafeString("")
    return format_html(
        '<p class="muted small"><span class="swatch" style="background:{}"></span> baseline '
        '<span class="swatch" style="background:{}"></span> current <span class="swatch" style="background:{}"></span> '
        "a bin carrying a quarter of the PSI or more: where the distribution moved. Hover a bar for its range and "
        "shares.</p>",
        BASELINE, CURRENT, MOVED,
    )  # fmt: skip
