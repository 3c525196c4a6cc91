"""Spend spikes: a customer's daily spend more than k sigma above its own trailing normal.
Plain Python, no Django."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True)
class Spike:
    customer_id: str
    day: date
    spend_usd: float
    trailing_mean_usd: float
    trailing_sd_usd: float

    @property
    def sigmas(self) -> float:
        return (self.spend_usd - self.trailing_mean_usd) / self.trailing_sd_usd


def spend_spikes(
    daily: Mapping[str, Mapping[date, float]],
    days: Sequence[date],
    *,
    trailing: int = 28,
    min_history: int = 7,
    sigmas: float = 3.0,
) -> list[Spike]:
    """For each customer and each of ``days``: the spend of the ``trailing`` days before it (days
    without traffic count as 0, from the customer's first day with spend) gives a mean and sample
    SD; a day above mean + ``sigmas`` SD is a spike. Fewer than ``min_history`` days of history,
    or a flat history (SD 0), judge nothing. Largest excess first."""
    spikes = []
    for customer, spend in daily.items():
        if not spend:
            continue
        first = min(spend)
        for day in days:
            history = [
                spend.get(day - timedelta(days=i), 0.0)
                for i in range(1, trailing + 1)
                if day - timedelta(days=i) >= first
            ]
            if len(history) < min_history:
                continue
            mean, sd = statistics.fmean(history), statistics.stdev(history)
            today = spend.get(day, 0.0)
            if sd > 0 and today > mean + sigmas * sd:
                spikes.append(Spike(customer, day, today, mean, sd))
    return sorted(spikes, key=lambda s: -s.sigmas)
