"""Net Promoter Score: promoters (9-10) minus detractors (0-6), as a percentage of answers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NpsBreakdown:
    promoters: int
    passives: int
    detractors: int

    @property
    def total(self) -> int:
        return self.promoters + self.passives + self.detractors

    @property
    def score(self) -> float | None:
        """From -100 to 100, one decimal; None without answers (not zero: nobody said so)."""
        if not self.total:
            return None
        return round(100 * (self.promoters - self.detractors) / self.total, 1)


def nps_breakdown(scores: Iterable[int]) -> NpsBreakdown:
    """Counts of promoters, passives and detractors; ValueError on a score outside 0-10."""
    counts = [0, 0, 0]
    for score in scores:
        if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 10:
            raise ValueError(f"An NPS answer is a whole number from 0 to 10, not {score!r}.")
        counts[0 if score >= 9 else 1 if score >= 7 else 2] += 1
    return NpsBreakdown(*counts)


def nps_score(scores: Iterable[int]) -> float | None:
    return nps_breakdown(scores).score
