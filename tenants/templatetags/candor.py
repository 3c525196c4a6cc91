"""Template helpers for organization-scoped URLs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from django import template
from django.urls import reverse

from tenants.access import portal_url

register = template.Library()


@register.filter(name="portal_url")
def portal_url_filter(slug: str) -> str:
    """{{ org.slug|portal_url }} -> /o/<slug>/, the organization's portal home."""
    return portal_url(slug)


@register.simple_tag(takes_context=True)
def ourl(context: dict[str, Any], name: str, *args: Any) -> str:
    """{% ourl 'feedback:trace-list' %} -> /o/<current org>/traces/"""
    request = context["request"]
    return reverse(name, args=(request.tenant.slug, *args))


@register.filter(name="pairs")
def pairs_filter(mapping: Any) -> list[tuple[Any, Any]]:
    """{% for k, v in attributes|pairs %}: a dict's items whatever its keys. ``attributes.items`` looks the key
    "items" up first, so a span attribute or an arm named items (a cart's count) broke the page (a 500)."""
    return list(mapping.items()) if isinstance(mapping, dict) else []


@register.filter(name="words")
def words_filter(key: str | None) -> str:
    """{{ "keep_running"|words }} -> "keep running": an identifier shown as words (nothing for None)."""
    return "" if key is None else str(key).replace("_", " ")


@register.filter(name="pct")
def pct_filter(share: Any, digits: int = 1) -> str:
    """{{ 0.7214|pct }} -> "72.1%": a share written as the portal writes every rate (nothing for None)."""
    if share is None or share == "":
        return ""
    try:
        return f"{float(share) * 100:.{int(digits)}f}%"
    except (TypeError, ValueError):
        return ""


@register.filter(name="pts")
def pts_filter(change: Any, digits: int = 1) -> str:
    """{{ -0.0546|pts }} -> "−5.5 pts": a move of a rate, in percentage points, signed (nothing for None)."""
    if change is None or change == "":
        return ""
    try:
        points = round(float(change) * 100, int(digits))
    except (TypeError, ValueError):
        return ""
    if points == 0:
        return f"{0:.{int(digits)}f} pts"
    sign = "+" if points > 0 else "\u2212"  # a minus sign, as wide as the plus
    return f"{sign}{abs(points):.{int(digits)}f} pts"


@register.filter(name="level")
def level_filter(value: Any, money: bool = False) -> str:
    """A rate's level: a share in percent, or dollars where ``money`` (cost per trace beside the shares)."""
    return usd_filter(value) if money else pct_filter(value)


@register.filter(name="move")
def move_filter(change: Any, money: bool = False) -> str:
    """A rate's move: percentage points, or signed dollars where ``money``."""
    if not money:
        return pts_filter(change)
    said = usd_filter(change)
    return f"+{said}" if said and float(change) > 0 else said


@register.filter(name="unit_usd")
def unit_usd_filter(amount: Any) -> str:
    """A cost per success or per trace: {{ 0.000372|unit_usd }} -> "$0.000372", three significant digits under a
    cent (four decimals read both ends of $0.000370 to $0.000402 as "$0.0004"); from a cent up, as ``usd``."""
    try:
        value = float(f"{float(amount):.3g}")  # rounded first: 0.0099999 is a cent, "$0.0100"
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(value):
        return ""
    if not 0 < abs(value) < 0.01:
        return usd_filter(value)
    decimals = 2 - math.floor(math.log10(abs(value)))
    return f"{'-' if value < 0 else ''}${abs(value):.{decimals}f}"


@register.filter(name="usd_range")
def usd_range_filter(interval: Any) -> str:
    """An interval object of costs (a cost per success): "$0.000370 to $0.000402", "$0.000370 or more" when it has
    no upper bound, "" when it has no lower one."""
    return _range(interval, unit_usd_filter)


@register.filter(name="times_range")
def times_range_filter(interval: Any) -> str:
    """An interval object of ROI: "385.2× to 447.0×", "-0.4× or more" when it has no upper bound, "" when it has no
    lower one."""
    return _range(interval, lambda times: f"{times:,.1f}×")


def _range(interval: Any, said: Callable[[float], str]) -> str:
    """An interval object's bounds, each as ``said``: "a to b", "a or more" with no upper bound, "" with no lower."""
    low, high = (interval or {}).get("low"), (interval or {}).get("high")
    if low is None:
        return ""
    return f"{said(low)} or more" if high is None else f"{said(low)} to {said(high)}"


@register.filter(name="usd")
def usd_filter(amount: Any) -> str:
    """{{ 0.00057|usd }} -> "$0.0006", {{ 1234.5|usd }} -> "$1,234.50": money at the precision it needs. A cent
    is most of a trace's cost, so under $1 shows four decimals (cents read a $0.00057 trace as "$0.00")."""
    if amount is None or amount == "":
        return ""
    try:
        value = float(amount)
    except (TypeError, ValueError):
        return ""
    if value != value or value in (float("inf"), float("-inf")):
        return ""  # NaN or infinite: no amount
    if 0 < abs(value) < 0.0001:
        return "<$0.0001" if value > 0 else ">-$0.0001"
    sign = "-" if value < 0 else ""
    # Four decimals while it still reads under $1 once rounded ($0.99996 is $1.00, not $1.0000).
    return f"{sign}${abs(value):,.{4 if 0 < round(abs(value), 4) < 1 else 2}f}"
