"""The latency-saliency knapsack (HALP, Shen et al. 2022): how many channels each group keeps under a budget.

Every channel has a saliency (saliency.py); every step down a group's allowed widths saves some latency on
the table. The knapsack keeps the most saliency whose predicted latency fits the budget. It is solved
greedily with exact predictor calls rather than with per-layer marginal costs: a convolution's cost
depends on its input and output widths together (HALP's "augmented" knapsack tracks the same coupling),
and on blocked layouts a narrower layer is not always a faster one. From the whole model, the step that
gives up the least (weighted) saliency per millisecond saved is taken until the prediction fits; then
steps are given back, most saliency per millisecond first, while they still fit, and single steps are
exchanged between two groups while that gains saliency within the budget.

`weights` scale each group's saliency: the rule that keeps the residual streams wide (rules.py) weighs them
more; without weights this is the one-shot method.
"""
from __future__ import annotations

from typing import Protocol

from ..errors import AutopruneError
from .saliency import Saliency
from ..pruning.space import Config, SearchSpace


class Predictor(Protocol):
    def predict(self, config: Config) -> float: ...


def knapsack(space: SearchSpace, predictor: Predictor, saliency: Saliency, budget_ms: float,
             weights: dict[str, float] | None = None) -> Config:
    """The config (searchable groups only) with the most weighted saliency predicted within `budget_ms`."""
    groups = {g.name: g for g in space.searchable}
    weight = {name: (weights or {}).get(name, 1.0) for name in groups}
    level = {name: len(g.choices) - 1 for name, g in groups.items()}  # index into each group's choices

    def config_with(name: str | None = None, index: int = 0) -> Config:
        config = {n: groups[n].choices[i] for n, i in level.items()}
        if name is not None:
            config[name] = groups[name].choices[index]
        return config

    def worth(name: str, index: int) -> float:
        return weight[name] * saliency.kept(name, groups[name].choices[index])

    current = predictor.predict(config_with())
    while current > budget_ms:
        best = None  # (saliency lost per ms saved, group, new index, new ms)
        for name in groups:
            for lower in range(level[name] - 1, -1, -1):  # the nearest narrower width that saves time
                ms = predictor.predict(config_with(name, lower))
                if ms < current:
                    rate = (worth(name, level[name]) - worth(name, lower)) / (current - ms)
                    if best is None or rate < best[0]:
                        best = (rate, name, lower, ms)
                    break
        if best is None:
            raise AutopruneError(f"no config of this space is predicted within {budget_ms:.3f} ms "
                                 f"(the narrowest reached {current:.3f} ms)")
        _, name, level[name], current = best
    while _give_back(groups, level, worth, predictor, config_with, budget_ms) or _swap(
            groups, level, worth, predictor, config_with, budget_ms):
        pass
    return config_with()


def _give_back(groups, level, worth, predictor, config_with, budget_ms) -> bool:
    """Widens groups while the prediction fits, most saliency per millisecond first; True if any grew."""
    grown = False
    current = predictor.predict(config_with())
    while True:
        best = None  # (saliency gained per ms spent, group, new ms)
        for name in groups:
            if level[name] + 1 < len(groups[name].choices):
                ms = predictor.predict(config_with(name, level[name] + 1))
                if ms <= budget_ms:
                    rate = (worth(name, level[name] + 1) - worth(name, level[name])) / max(ms - current, 1e-9)
                    if best is None or rate > best[0]:
                        best = (rate, name, ms)
        if best is None:
            return grown
        _, name, current = best
        level[name] += 1
        grown = True


def _swap(groups, level, worth, predictor, config_with, budget_ms) -> bool:
    """The best exchange of one step between two groups that fits and gains saliency; True if one was made.

    The greedy passes take steps in the order of their rates, which can strand a large step that a
    smaller one blocks; exchanging single steps removes the most common such loss.
    """
    best = None  # (saliency gained, narrower group, wider group)
    for down in groups:
        if level[down] == 0:
            continue
        for up in groups:
            if up == down or level[up] + 1 == len(groups[up].choices):
                continue
            gain = (worth(up, level[up] + 1) - worth(up, level[up])) - (worth(down, level[down]) - worth(down, level[down] - 1))
            if gain > 1e-12 * (1 + abs(worth(up, level[up]))) and (best is None or gain > best[0]):
                config = config_with(up, level[up] + 1)
                config[down] = groups[down].choices[level[down] - 1]
                if predictor.predict(config) <= budget_ms:
                    best = (gain, down, up)
    if best is None:
        return False
    _, down, up = best
    level[down] -= 1
    level[up] += 1
    return True
