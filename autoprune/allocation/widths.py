"""What the search's sampler sees: every searchable group's kept width, as a share per stage and an offset per group.

A stage is the groups whose first producer writes at one resolution, the residual streams of that resolution apart
(narrowing a stream narrows every block that writes it). A group's width is the choice at its stage's share of its
choices, moved by its own offset. A sampler then learns a few shares that matter most (how wide each stage is)
before the offsets, and every width of the space stays reachable: the offsets span all of a group's choices, so any
config, a rule's included, is a point of this space (`params`). An offset is sampled as u in [-1, 1] and moves its
group by last * u**3 steps: a uniform draw (a sampler's first trials) mostly moves a group a step or none from its
stage, and only a sampler that learnt to goes far.

A removable block (depth, pruning/blocks.py) is a param of its own, u in [0, 1]: the block goes where u < REMOVE_BELOW,
so a uniform draw removes a quarter of the blocks and a rule, which keeps them all, is a point of the space.

A sampled config over the target is repaired down the table's staircase: the step that saves the most predicted
time per unit of saliency it loses, until the prediction fits. No candidate is scored over the budget and none is
thrown away.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
import torch
import torch.nn as nn

from .knapsack import Predictor
from .saliency import Saliency
from ..pruning.blocks import BLOCK
from ..pruning.space import CHANNELS, Config, SearchSpace

SHARE, OFFSET, KEEP = "share:", "offset:", "keep:"
REMOVE_BELOW = 0.25


def shared_groups(model: nn.Module, space: SearchSpace) -> set[str]:
    """Groups written by more than one layer: removing one of their channels removes it from every writer."""
    modules = dict(model.named_modules())
    return {g.name for g in space.searchable_of(CHANNELS)
            if sum(isinstance(modules.get(p), (nn.Conv2d, nn.Linear)) for p in g.producers) > 1}


@torch.no_grad()
def group_resolutions(model: nn.Module, space: SearchSpace, example: torch.Tensor) -> dict[str, int]:
    """The height of the feature map each searchable group of channels' first producer writes (1 for vectors)."""
    modules = dict(model.named_modules())
    heights, hooks = {}, []
    for g in space.searchable_of(CHANNELS):
        def record(module, inputs, output, name=g.name):
            heights[name] = output.shape[-2] if output.dim() == 4 else 1
        hooks.append(modules[g.producers[0]].register_forward_hook(record))
    try:
        model.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    return heights


def offset(steps: int, last: int) -> float:
    """The offset parameter that moves a group of `last` + 1 choices by `steps`."""
    return math.copysign(abs(steps / max(1, last)) ** (1 / 3), steps)


@dataclass
class WidthSpace:
    space: SearchSpace
    stage: dict[str, str]  # searchable group of channels -> its stage

    @classmethod
    def for_model(cls, model: nn.Module, space: SearchSpace, example: torch.Tensor) -> "WidthSpace":
        heights, shared = group_resolutions(model, space, example), shared_groups(model, space)
        return cls(space, {g.name: f"res{heights[g.name]}" + ("-stream" if g.name in shared else "")
                           for g in space.searchable_of(CHANNELS)})

    @property
    def blocks(self) -> list:
        return self.space.searchable_of(BLOCK)

    def stages(self) -> list[str]:
        return list(dict.fromkeys(self.stage.values()))

    def streams(self) -> set[str]:
        return {g for g, s in self.stage.items() if s.endswith("-stream")}

    def _members(self, stage: str) -> list:
        return [g for g in self.space.searchable_of(CHANNELS) if self.stage[g.name] == stage]

    def _offset(self, group: str) -> bool:
        # A group alone in its stage is placed by the share alone.
        return len(self._members(self.stage[group])) > 1

    def config(self, params: dict) -> Config:
        """The widths of a point of this space."""
        config = {}
        for g in self.space.searchable_of(CHANNELS):
            last = len(g.choices) - 1
            index = round(params[SHARE + self.stage[g.name]] * last) + round(last * params.get(OFFSET + g.name, 0) ** 3)
            config[g.name] = g.choices[min(last, max(0, index))]
        for g in self.blocks:
            config[g.name] = int(params.get(KEEP + g.name, 1.0) >= REMOVE_BELOW)
        return config

    def suggest(self, trial: optuna.Trial) -> Config:
        params = {SHARE + s: trial.suggest_float(SHARE + s, 0.0, 1.0) for s in self.stages()}
        for g in self.space.searchable_of(CHANNELS):
            if self._offset(g.name):
                params[OFFSET + g.name] = trial.suggest_float(OFFSET + g.name, -1.0, 1.0)
        for g in self.blocks:
            params[KEEP + g.name] = trial.suggest_float(KEEP + g.name, 0.0, 1.0)
        return self.config(params)

    def params(self, config: Config) -> dict:
        """A point of this space whose config is `config`: each stage's share is its middle group's, the offsets
        make up the rest."""
        index = {g.name: g.choices.index(config[g.name]) for g in self.space.searchable_of(CHANNELS)}
        params = {KEEP + g.name: float(config.get(g.name, 1)) for g in self.blocks}
        for s in self.stages():
            members = self._members(s)
            middle = sorted(members, key=lambda g: index[g.name] / max(1, len(g.choices) - 1))[len(members) // 2]
            share = params[SHARE + s] = index[middle.name] / max(1, len(middle.choices) - 1)
            for g in members:
                if self._offset(g.name):
                    last = len(g.choices) - 1
                    params[OFFSET + g.name] = offset(index[g.name] - round(share * last), last)
        return params

    def repair(self, config: Config, predictor: Predictor, saliency: Saliency, target_ms: float) -> Config:
        """`config` narrowed until it is predicted within `target_ms` (as it is, when it already is)."""
        groups = {g.name: g for g in self.space.searchable}
        config = dict(config)
        ms = predictor.predict(config)
        while ms > target_ms:
            best, best_rate = None, -1.0
            for name, g in groups.items():
                i = g.choices.index(config[name])
                if i == 0:
                    continue
                narrower = {**config, name: g.choices[i - 1]}
                saved = ms - predictor.predict(narrower)
                if saved <= 0:  # a narrower layer is not always a faster one on blocked layouts
                    continue
                lost = saliency.kept(name, config[name]) - saliency.kept(name, g.choices[i - 1])
                rate = saved / max(lost, 1e-12)
                if rate > best_rate:
                    best, best_rate = (narrower, ms - saved), rate
            if best is None:  # no step is faster on the table: the narrowest it can reach
                return self.space.narrowest_config()
            config, ms = best
        return config
