"""The front measured on this machine: a search's members timed beside the unpruned model once its trials are done.

A table that predicts random configs within a few percent still misses single configs by more: on a 2-core AMD EPYC
one with a held-out MAPE of 6% missed search-like configs by up to 16% (benchmarks/search_pockets.py). A search then
picks, among many configs all predicted at the budget, the most accurate, which likely favours those the table
under-prices (compute it does not see is compute to be accurate with): at 0.5x both seeds' picks measured 17-18%
over their predictions (benchmarks/search_quality.py). So the front is not left at its predictions when the table is
this machine's own: each member is timed here, interleaved with the unpruned model in one fresh process, and judged
by its measured share of it. The share, not the raw milliseconds, is what carries over: a fresh process on such a
machine runs at its own speed level (up to 20% apart), and the table holds the unpruned model's latency at the level
it was calibrated at.
"""
from __future__ import annotations

import statistics

from ..budget import measured_within
from ..latency import measure_models_ms
from ..latency.fingerprint import this_machine
from .context import SearchContext
from .result import FrontMember

ROUNDS = 5  # interleaved rounds of the runner's steady-state timing: shares within about 2% on a noisy 2-core VM


def measure_front(ctx: SearchContext, front: list[FrontMember]) -> dict:
    """Times `front`'s models and the unpruned one here and sets each member's measured_ms and measured_share;
    returns what the search's result records (or why nothing was measured)."""
    table = ctx.predictor.table
    moved = table.foreign()
    if moved or not front:
        return {"skipped": f"the table was measured elsewhere ({'; '.join(moved)}): export times on its device"
                if moved else "no front member"}
    print(f"timing the front here: {len(front)} model(s) beside the unpruned one, {ROUNDS} rounds", flush=True)
    models = [ctx.loaded.model] + [ctx.prune(m.config)[0] for m in front]
    timed = measure_models_ms(models, ctx.loaded.example_input(table.batch), table.backend, table.threads,
                              rounds=ROUNDS, precision=table.precision)
    unpruned_ms = timed[0][0]
    for m, (ms, _) in zip(front, timed[1:]):
        m.measured_ms, m.measured_share = ms, ms / unpruned_ms
    over = [m.trial for m in front if not measured_within(m.measured_share * ctx.unpruned_ms, ctx.budget_ms)]
    return {"unpruned_ms": unpruned_ms, "over_budget": over, "machine": this_machine(),
            # where the search looked, measured over predicted (1.0: the table is right there)
            "measured_over_predicted": statistics.median(m.measured_share * ctx.unpruned_ms / m.predicted_ms
                                                         for m in front)}
