"""Objective: a trial's precision and widths (sampled, or a rule's) -> repaired to the budget in that precision's table
(fitted to this machine's clock where it is the table's) -> the evaluator's stages, one by one, scoring the model as
it is deployed in that precision."""
from __future__ import annotations

from collections import OrderedDict

import optuna

from ..allocation.rules import at_target
from ..models.complexity import count_macs, count_params
from .context import SearchContext
from .recovery import worker_id
from .result import DTYPE, RULE
from .timing import Clock, Fit

# Successive halving between the proxy ladder's stages: a third of the candidates go on to the next one.
REDUCTION_FACTOR = 3
# Pruned models kept for a config met again: neighbouring samples repaired to one config tend to come in a row, and a
# model is megabytes where its scores are a few numbers (every config's are kept).
MODELS_KEPT = 2


class Objective:
    """Reports each ladder stage's score to the study's pruner, which may stop the trial there. `lanes` are the
    search's contexts by precision (context.build_contexts): with more than one, a trial's precision is a categorical
    param the sampler proposes beside the widths; `clocks` (by precision) fit each lane's trials to this machine."""

    def __init__(self, lanes: dict[str, SearchContext], clocks: dict[str, Clock | None] | None = None):
        self.lanes = lanes
        self.fits = {name: Fit(lanes[name], clock) for name, clock in (clocks or {}).items() if clock}
        self.seen: dict[tuple, dict] = {}  # (precision, config) -> its attributes and the scores of the stages so far
        self.models: OrderedDict[tuple, object] = OrderedDict()  # the last MODELS_KEPT configs' pruned models

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker_id())
        try:
            return self._score(trial)
        except (RuntimeError, ValueError) as exc:  # the study fails the trial and goes on: say why, in one line
            message = (str(exc).strip().splitlines() or [""])[0]
            trial.set_user_attr("error", f"{type(exc).__name__}: {message}" if message else type(exc).__name__)
            raise

    def lane(self, trial: optuna.Trial) -> str:
        if len(self.lanes) == 1:
            return next(iter(self.lanes))
        return trial.suggest_categorical(DTYPE, list(self.lanes))

    def model(self, ctx: SearchContext, key: tuple, config: dict):
        """The pruned model of `config`, pruned again when it is no longer kept (pruning is deterministic)."""
        if key in self.models:
            self.models.move_to_end(key)
        else:
            self.models[key] = ctx.prune(config)[0]
            while len(self.models) > MODELS_KEPT:
                self.models.popitem(last=False)
        return self.models[key]

    def _score(self, trial: optuna.Trial) -> float:
        dtype = self.lane(trial)
        ctx, fit = self.lanes[dtype], self.fits.get(dtype)
        trial.set_user_attr(DTYPE, dtype)
        sampled = ctx.widths.suggest(trial)
        rule = trial.user_attrs.get(RULE)

        def at(target_ms: float):
            return at_target(rule, sampled, ctx.widths, ctx.predictor, ctx.saliency, target_ms)

        if fit:
            fitted = fit(at)
            config, timed = fitted.config, {"target_ms": fitted.target_ms, "measured_share": fitted.share,
                                            "latency_ms": fitted.share * ctx.unpruned_ms}
        else:
            config, timed = at(ctx.target_ms), {}
        trial.set_user_attr("repaired", rule is None and config != sampled)
        key = (dtype, *sorted(config.items()))
        if key not in self.seen:  # samples repaired to one config: prune and score it once
            pruned = self.model(ctx, key, config)
            self.seen[key] = {"scores": [],
                              "attrs": {"config": config, "predicted_ms": ctx.predictor.predict(config),
                                        "macs": count_macs(pruned, ctx.loaded.example_input()),
                                        "params": count_params(pruned)}}
        seen = self.seen[key]
        for name, value in {**seen["attrs"], **timed}.items():
            trial.set_user_attr(name, value)
        # Feasible when <= 0: the repair keeps every candidate within the target, or the clock's fit does (for the
        # record: a fit that found nothing within it in FIT_TRIES timings is stored over it, off the front).
        latency_ms = timed.get("latency_ms", seen["attrs"]["predicted_ms"])
        trial.set_constraint("latency_over_budget_ms", latency_ms - ctx.target_ms)
        for stage, proxy in enumerate(ctx.ladder):
            if stage == len(seen["scores"]):
                result = proxy.evaluate(self.model(ctx, key, config), ctx.data, ctx.teacher)
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
