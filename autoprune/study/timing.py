"""This machine's clock for a search: configs timed beside the unpruned model, each as a share of it.

A table that predicts random configs within a few percent still misses single configs by more: on a 2-core AMD EPYC
one with a held-out MAPE of 6% missed search-like configs by up to 16% (benchmarks/search_pockets.py), and its
misses follow structure (a stage kept wide at widths off the CPU's 16-channel blocks runs slower than it predicts).
A search fitted to the table alone drifts into those pockets: every candidate is predicted at the budget, and the
ones with compute the table does not see are the most accurate. At 0.5x both seeds' picks measured 17-18% over their
predictions, and the widths the table priced too high (a wide last stage) were never scored
(benchmarks/search_quality.py). So when the table is this machine's own, each trial's widths are fitted to the clock
here (fit), and the front is timed again once the trials are done (front_check.py).

The share, not the raw milliseconds, is what carries over: a fresh process on such a machine runs at its own speed
level (up to 20% apart), and the table holds the unpruned model's latency at the level it was calibrated at.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Callable

from ..latency import measure_shares
from ..pruning.space import Config
from .context import SearchContext

# Interleaved rounds per trial, each of PER_ROUND runs of every model after warm-up (benchmarks/clock_noise.py). On a
# 2-core AMD EPYC VM in a steady hour every setting put a config within 3-7% across 6 fresh processes (the median of
# the rounds' ratios within 3-4%); in a noisy one (the unpruned model 2.40-2.86 ms between processes) 3 x 20 by the
# ratio of medians put one at 0.535-0.653 of the unpruned model, 12 x 5 by the median of the rounds' ratios
# (measure_shares) at 0.531-0.558.
FIT_ROUNDS = 12
PER_ROUND = 5
FIT_TRIES = 3  # timings per trial at most
CLOSE = 0.03  # a fitted config this close under the target is taken: nearer is inside the clock's noise


class Clock:
    """Times configs of the context's model here, interleaved with the unpruned model in one fresh process."""

    def __init__(self, ctx: SearchContext, rounds: int):
        self.ctx, self.rounds = ctx, rounds
        self.shares: dict[tuple, float] = {}  # a config timed once keeps its share: trials that meet it agree

    def time(self, configs: list[Config]) -> tuple[float, list[float]]:
        """The unpruned model's ms and each config's share of it, all timed in one process."""
        ctx, table = self.ctx, self.ctx.predictor.table
        models = [ctx.loaded.model] + [ctx.prune(c)[0] for c in configs]
        return measure_shares(models, ctx.loaded.example_input(table.batch), table.backend, table.threads,
                              self.rounds, PER_ROUND, table.precision)

    def share(self, config: Config) -> float:
        key = tuple(sorted(config.items()))
        if key not in self.shares:
            self.shares[key] = self.time([config])[1][0]
        return self.shares[key]


def local_clock(ctx: SearchContext, rounds: int) -> Clock | None:
    """This machine's clock, or None where it says nothing of the target (another device's table) or is not
    wanted (--no-measure)."""
    return Clock(ctx, rounds) if ctx.settings.measure and not ctx.predictor.table.foreign() else None


def fit_clock(ctx: SearchContext) -> Clock | None:
    """The clock each trial is fitted to, or None where no trial needs it: where even the unpruned model is predicted
    within the target at the table's worst held-out error (its band's top), as an int8 lane's often is at a float
    budget. Its front is still timed once the trials are done (front_check.py)."""
    if ctx.band is not None and ctx.unpruned_ms * ctx.band[1] <= ctx.target_ms:
        return None
    return local_clock(ctx, FIT_ROUNDS)


@dataclasses.dataclass
class Fitted:
    config: Config
    target_ms: float  # the target that gave it
    share: float  # its measured share of the unpruned model


class Fit:
    """A trial's widths at the widest target whose config measures within the search's target here: `make` gives
    the config at a target on the table's predictions; the clock only moves that target. Each trial starts from
    the median correction of the trials before it, so most take one timing."""

    def __init__(self, ctx: SearchContext, clock: Clock):
        self.ctx, self.clock = ctx, clock
        self.goal = ctx.target_ms / ctx.unpruned_ms  # the measured share a config may reach
        self.aim = self.goal * (1 - CLOSE / 2)  # the middle of the shares taken at once: a step there lands in them
        self.scales: list[float] = []  # each fitted trial's target over the search's

    def __call__(self, make: Callable[[float], Config]) -> Fitted:
        ctx = self.ctx
        target = ctx.target_ms * (statistics.median(self.scales) if self.scales else 1.0)
        fits, over = None, None  # the widest fitting, the narrowest over
        timed: list[tuple[float, float]] = []  # (predicted ms, measured share) of each config tried
        for _ in range(FIT_TRIES):
            config = make(target)
            if fits is not None and config == fits.config:  # under every target tried (a repair only narrows)
                break
            tried = Fitted(config, target, self.clock.share(config))
            if tried.share <= self.goal:
                fits = tried if fits is None or tried.target_ms > fits.target_ms else fits
                if tried.share >= self.goal * (1 - CLOSE):
                    break
            else:
                over = tried if over is None or tried.target_ms < over.target_ms else over
            timed.append((ctx.predictor.predict(config), tried.share))
            # The measured share goes as a power of the predicted ms (1 where the clock agrees with the table): its
            # exponent from the last two configs tried, the next target where that puts the share at the aim.
            exponent = 1.0
            if len(timed) > 1 and timed[-1][0] != timed[-2][0] and timed[-1][1] != timed[-2][1]:
                (p1, s1), (p2, s2) = timed[-2:]
                exponent = max(0.25, min(4.0, math.log(s1 / s2) / math.log(p1 / p2)))
            predicted, share = timed[-1]
            target = min(max(predicted * (self.aim / share) ** (1 / exponent), ctx.min_ms), ctx.unpruned_ms)
            if fits and over and not fits.target_ms < target < over.target_ms:  # inside a bracket, halve it
                target = (fits.target_ms + over.target_ms) / 2
        chosen = fits or over
        self.scales.append(chosen.target_ms / ctx.target_ms)
        return chosen
