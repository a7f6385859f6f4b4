"""Latency budgets: `30ms`, `500us`, `0.03s`, or `0.5x` (a share of the unpruned model's latency)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import BudgetError

_UNITS_MS = {"ms": 1.0, "us": 1e-3, "s": 1e3}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|us|s|x)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    value: float
    relative: bool  # True: `value` is a share of the unpruned latency; False: milliseconds

    def to_ms(self, unpruned_ms: float) -> float:
        return self.value * unpruned_ms if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value:g}x" if self.relative else f"{self.value:g}ms"


def parse_budget(text: str) -> Budget:
    match = _PATTERN.match(str(text))
    if not match:
        raise BudgetError(f"bad budget '{text}': use e.g. 30ms, 500us, 0.03s or 0.5x")
    value, unit = float(match.group(1)), match.group(2).lower()
    if value <= 0:
        raise BudgetError(f"bad budget '{text}': it must be positive")
    if unit == "x":
        return Budget(value, True)
    return Budget(value * _UNITS_MS[unit], False)


# How far a measured latency may exceed the budget and still count as within it: timing on a busy or drifting
# machine moves by a few percent, and a front lies at the budget by construction (export's check, select's).
MEASURED_TOLERANCE = 0.10


def measured_within(measured_ms: float, budget_ms: float) -> bool:
    return measured_ms <= (1 + MEASURED_TOLERANCE) * budget_ms


# The share of held-out configs a margin of `auto` covers: measured at most predicted x (1 + margin) for them.
MARGIN_COVERAGE = 0.95


def error_band(validation: dict | None) -> tuple[float, float] | None:
    """(low, high): measured / predicted at the 5th and 95th percentile of a table's held-out configs."""
    if not validation or not validation.get("measured_ms"):
        return None
    ratios = sorted(m / p for m, p in zip(validation["measured_ms"], validation["predicted_ms"]))
    pick = lambda q: ratios[min(len(ratios) - 1, round(q * (len(ratios) - 1)))]  # noqa: E731 - a nearest-rank quantile
    return pick(1 - MARGIN_COVERAGE), pick(MARGIN_COVERAGE)


def margin_share(text: str | float, validation: dict | None) -> float:
    """`auto` (the table's held-out error: measured at most this much over predicted for 95% of its configs),
    a share (`0.1`) or a percentage (`10%`) by which the search stays under the budget."""
    if str(text).strip().lower() == "auto":
        band = error_band(validation)
        if band is None:
            raise BudgetError("--margin auto needs the table's held-out validation: run `autoprune validate` on it "
                              "(tables profiled now store one), or give a margin such as 5%")
        return max(0.0, band[1] - 1)
    raw = str(text).strip()
    try:
        share = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        share = -1.0
    if not 0 <= share < 1:
        raise BudgetError(f"bad margin '{text}': use auto, a share such as 0.05, or a percentage such as 5%")
    return share
