"""Objective: a trial's knobs -> the knapsack's config at the budget (fitted to this machine's clock where it is the
table's) -> the proxy ladder, stage by stage."""
from __future__ import annotations

import os
import socket

import optuna

from ..allocation.knobs import KNOB_RANGE
from ..models.complexity import count_macs, count_params
from .context import SearchContext
from .timing import Clock, Fit

# Successive halving between the proxy ladder's stages: a third of the candidates go on to the next one.
REDUCTION_FACTOR = 3


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Objective:
    """Reports each ladder stage's score to the study's pruner, which may stop the trial there."""

    def __init__(self, ctx: SearchContext, clock: Clock | None = None):
        self.ctx = ctx
        self.fit = Fit(ctx, clock) if clock else None
        self.seen: dict[tuple, dict] = {}  # config -> its attributes and the scores of the stages run so far

    def __call__(self, trial: optuna.Trial) -> float:
        ctx = self.ctx
        trial.set_user_attr("worker", worker_id())
        low, high = KNOB_RANGE
        knobs = {k: trial.suggest_float(k, low, high, log=True) for k in ctx.allocation.knobs()}
        if self.fit:
            fitted = self.fit(knobs)
            config, timed = fitted.config, {"target_ms": fitted.target_ms, "measured_share": fitted.share,
                                            "latency_ms": fitted.share * ctx.unpruned_ms}
        else:
            config, timed = ctx.allocation.config(knobs), {}
        key = tuple(sorted(config.items()))
        if key not in self.seen:  # neighbouring knobs often give one config: prune and score it once
            pruned, _ = ctx.prune(config)
            self.seen[key] = {"model": pruned, "scores": [],
                              "attrs": {"config": config, "predicted_ms": ctx.predictor.predict(config),
                                        "macs": count_macs(pruned, ctx.loaded.example_input()),
                                        "params": count_params(pruned)}}
        seen = self.seen[key]
        for name, value in {**seen["attrs"], **timed}.items():
            trial.set_user_attr(name, value)
        # Feasible when <= 0: the knapsack keeps every candidate within the target, or the clock's fit does (for the
        # record: a fit that found nothing within it in FIT_TRIES timings is stored over it, off the front).
        latency_ms = timed.get("latency_ms", seen["attrs"]["predicted_ms"])
        trial.set_constraint("latency_over_budget_ms", latency_ms - ctx.target_ms)
        for stage, proxy in enumerate(ctx.ladder):
            if stage == len(seen["scores"]):
                result = proxy.evaluate(seen["model"], ctx.data, ctx.teacher)
                seen["scores"].append((result.accuracy, result.seconds))
            accuracy, seconds = seen["scores"][stage]
            trial.set_user_attr("proxy_accuracy", accuracy)
            trial.set_user_attr("proxy_seconds", sum(s for _, s in seen["scores"][: stage + 1]))
            trial.set_user_attr("fidelity", proxy.name)
            if stage + 1 < len(ctx.ladder):
                trial.report(accuracy, step=REDUCTION_FACTOR**stage)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"stopped after {proxy.name}")
        return accuracy
