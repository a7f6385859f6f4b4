"""What the search samples: a few knobs that move the knapsack's allocation, not one ratio per group.

Thirty-odd independent keep ratios give a sampler a flat landscape it cannot learn in tens of trials.
Here a candidate is the knapsack's solution at the budget (knapsack.py), each group's saliency scaled
by the product of two knobs:
  - `res<H>`: one per spatial resolution the groups' producers write at (a stage of the network), which
    moves channels between early, wide-image layers and late, deep ones;
  - `shared`: groups whose channels several layers write (residual streams), which cost the most accuracy
    to narrow and save the most latency.
With every knob at 1 the candidate is the one-shot knapsack. Every candidate fits the budget by
construction, so no trial is spent on an infeasible config.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .knapsack import Predictor, knapsack
from .saliency import Saliency
from ..pruning.space import Config, SearchSpace

KNOB_RANGE = (0.25, 4.0)  # log-uniform: a stage may weigh a sixteenth to sixteen times another
PROTECT = 4.0  # the starting point that keeps the shared groups wide


def shared_groups(model: nn.Module, space: SearchSpace) -> set[str]:
    """Groups written by more than one layer: removing one of their channels removes it from every writer."""
    modules = dict(model.named_modules())
    return {g.name for g in space.searchable
            if sum(isinstance(modules.get(p), (nn.Conv2d, nn.Linear)) for p in g.producers) > 1}


@torch.no_grad()
def group_resolutions(model: nn.Module, space: SearchSpace, example: torch.Tensor) -> dict[str, int]:
    """The height of the feature map each searchable group's first producer writes (1 for vectors)."""
    modules = dict(model.named_modules())
    heights, hooks = {}, []
    for g in space.searchable:
        def record(module, inputs, output, name=g.name):
            heights[name] = output.shape[-2] if output.dim() == 4 else 1
        hooks.append(modules[g.producers[0]].register_forward_hook(record))
    try:
        model.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    return heights


@dataclass
class Allocation:
    space: SearchSpace
    predictor: Predictor
    saliency: Saliency
    budget_ms: float
    resolution: dict[str, int]  # group -> the height its producer writes at
    shared: set[str]

    @classmethod
    def for_model(cls, model: nn.Module, space: SearchSpace, predictor: Predictor, saliency: Saliency,
                  budget_ms: float, example: torch.Tensor) -> "Allocation":
        return cls(space, predictor, saliency, budget_ms, group_resolutions(model, space, example),
                   shared_groups(model, space))

    def knobs(self) -> list[str]:
        names = [f"res{h}" for h in sorted(set(self.resolution.values()), reverse=True)]
        # A knob that scales every group alike changes nothing: only a proper subset gets one.
        if self.shared and len(self.shared) < len(self.space.searchable):
            names.append("shared")
        return names

    def weights(self, knobs: dict[str, float]) -> dict[str, float]:
        return {
            g.name: knobs.get(f"res{self.resolution[g.name]}", 1.0) * (knobs.get("shared", 1.0) if g.name in self.shared else 1.0)
            for g in self.space.searchable
        }

    def config(self, knobs: dict[str, float]) -> Config:
        return knapsack(self.space, self.predictor, self.saliency, self.budget_ms, self.weights(knobs))

    def starting_points(self) -> list[dict[str, float]]:
        """The one-shot knapsack, then (where there are shared groups) the knapsack that keeps them wide."""
        neutral = {k: 1.0 for k in self.knobs()}
        points = [neutral]
        if "shared" in neutral:
            points.append({**neutral, "shared": PROTECT})
        return points

