"""The front measured on this machine: a search's members timed again beside the unpruned model once its trials are
done, all in one process (timing.py says why the share is what counts), and judged by it."""
from __future__ import annotations

import statistics

from ..budget import measured_within
from ..latency.fingerprint import this_machine
from .context import SearchContext
from .result import FrontMember
from .timing import Clock

ROUNDS = 20  # more than a trial's fit (timing.FIT_ROUNDS): the front is timed once, and this is what select trusts


def measure_front(ctx: SearchContext, clock: Clock | None, front: list[FrontMember]) -> dict:
    """Times `front`'s models and the unpruned one with `clock` (None: not this machine's table, or not wanted) and
    sets each member's measured_ms and measured_share; returns what the search's result records (or why nothing was
    measured)."""
    if clock is None or not front:
        moved = ctx.predictor.table.foreign()
        return {"skipped": f"the table was measured elsewhere ({'; '.join(moved)}): export times on its device"
                if moved else "--no-measure" if not ctx.settings.measure else "no front member"}
    print(f"timing the front here: {len(front)} model(s) beside the unpruned one, {clock.rounds} rounds", flush=True)
    unpruned_ms, shares = clock.time([m.config for m in front])
    for m, share in zip(front, shares):
        m.measured_ms, m.measured_share = share * unpruned_ms, share
    over = [m.trial for m in front if not measured_within(m.measured_share * ctx.unpruned_ms, ctx.budget_ms)]
    return {"unpruned_ms": unpruned_ms, "over_budget": over, "machine": this_machine(),
            # where the search looked, measured over predicted (1.0: the table is right there)
            "measured_over_predicted": statistics.median(m.measured_share * ctx.unpruned_ms / m.predicted_ms
                                                         for m in front)}
