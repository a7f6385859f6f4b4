"""The rules a search starts from: widths that known methods give at a budget, before any accuracy is spent.

  - uniform: every group keeps the same share of its channels (Torch-Pruning's default, ratio by ratio);
  - knapsack: HALP's latency-saliency knapsack, one-shot (knapsack.py);
  - knapsack, streams wide: the knapsack with the residual streams' saliency weighed four times, because narrowing
    a stream removes its channels from every block that writes it.
The search (study/objective.py) queues them as its first trials, so its front holds the best of them whatever it
samples after, and before them the unpruned model where it already meets the budget (UNPRUNED: an int8 model often
does); a rule's trial is fitted to this machine's clock by the rule itself at another target.
"""
from __future__ import annotations

from typing import Callable

from .knapsack import Predictor, knapsack
from .saliency import Saliency
from .widths import SHARE, WidthSpace
from ..pruning.space import Config

STREAMS_WEIGHT = 4.0


def uniform(widths: WidthSpace, predictor: Predictor, saliency: Saliency, target_ms: float) -> Config:
    """The widest config whose groups all keep one share of their widths, predicted within `target_ms`."""
    steps = max(len(g.choices) for g in widths.space.searchable) - 1
    for k in range(steps, -1, -1):
        config = widths.config({SHARE + s: k / steps for s in widths.stages()})
        if predictor.predict(config) <= target_ms:
            return config
    return widths.space.narrowest_config()


def one_shot_knapsack(widths: WidthSpace, predictor: Predictor, saliency: Saliency, target_ms: float) -> Config:
    return knapsack(widths.space, predictor, saliency, target_ms)


def knapsack_streams_wide(widths: WidthSpace, predictor: Predictor, saliency: Saliency, target_ms: float) -> Config:
    return knapsack(widths.space, predictor, saliency, target_ms, {g: STREAMS_WEIGHT for g in widths.streams()})


Rule = Callable[[WidthSpace, Predictor, Saliency, float], Config]
RULES: dict[str, Rule] = {"uniform": uniform, "knapsack": one_shot_knapsack,
                          "knapsack, streams wide": knapsack_streams_wide}
UNPRUNED = "unpruned"  # a starting trial that is the model as it is: no rule, and only where it meets the target


def at_target(rule: str | None, config: Config, widths: WidthSpace, predictor: Predictor, saliency: Saliency,
              target_ms: float) -> Config:
    """A trial's config at `target_ms`: its rule's there, or (a sampled trial) its widths repaired down to it."""
    if rule == UNPRUNED:
        return widths.space.full_config()
    if rule is not None:
        return RULES[rule](widths, predictor, saliency, target_ms)
    return widths.repair(config, predictor, saliency, target_ms)


def starting_configs(widths: WidthSpace, predictor: Predictor, saliency: Saliency, target_ms: float) -> dict[str, Config]:
    """The unpruned model where it meets `target_ms`, then each rule's config at it, by the rule's name; a rule that
    gives a config already there is left out."""
    full = widths.space.full_config()
    distinct: dict[str, Config] = {UNPRUNED: full} if predictor.predict(full) <= target_ms else {}
    for name, rule in RULES.items():
        config = rule(widths, predictor, saliency, target_ms)
        if config not in distinct.values():
            distinct[name] = config
    return distinct
