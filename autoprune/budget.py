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
