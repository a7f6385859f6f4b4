"""When channels go: all at once before fine-tuning (one-shot), or progressively while it trains.

  one-shot     the chosen config is pruned from the trained model, then fine-tuned (the default)
  progressive[:EVENTS]  HALP's schedule (Shen et al. 2022; NVlabs/HALP prune/pruner.py): the full model trains while,
               every `interval` steps, the importance accumulated over those steps (pruning/halp_taylor.py, batch by
               batch) is averaged and the channels it values least are masked, `events` times; masked channels
               stay masked and are never revived. After the last event the masked model trains on for the rest
               of the epochs and is then physically pruned.

What each event narrows the model to is the schedule's goal:
  LatencyGoal  HALP's own: the latency knapsack, at the next of `events` latency targets spaced geometrically from
               the unpruned latency to the target, chooses the widths (the HALP baseline);
  ConfigGoal   a chosen config (a searched trial's): each group narrows geometrically toward its width there, so
               the search chooses the widths and the schedule only how to reach them (export --schedule progressive).

HALP masks by zeroing the weights that write a channel; here the writers' outputs are zeroed instead
(pruning/masks.py): the masked model then computes exactly what the pruned one will, and a masked channel's
importance is zero.

HALP runs 30 events 40 steps apart at the start of a 90-epoch ImageNet run, a sliver of its training; a
fine-tune of a few epochs would spend itself pruning at that pace, so here the interval shrinks to fit the
events into `window` of the fine-tune's steps (a third by default), and never grows past HALP's 40.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn as nn

from ..errors import AutopruneError
from ..pruning.blocks import BLOCK, branch_end
from ..pruning.halp_taylor import ImportanceAccumulator
from ..allocation.knapsack import Predictor, knapsack
from ..pruning.masks import ChannelMasks
from ..pruning.prune import prune_channels
from ..allocation.saliency import Saliency
from ..pruning.space import Config, SearchSpace

HALP_EVENTS = 30
HALP_INTERVAL = 40
WINDOW = 1 / 3  # the share of the fine-tune's steps the pruning events may take

def parse_schedule(spec: str) -> "Progressive | None":
    """`one-shot` (None) or `progressive[:EVENTS]` (HALP's 30 events by default)."""
    kind, sep, events = spec.partition(":")
    if kind == "one-shot" and not sep:
        return None
    if kind == "progressive" and (not sep or (events.isdigit() and int(events) >= 1)):
        return Progressive(events=int(events)) if sep else Progressive()
    raise AutopruneError(f"unknown schedule '{spec}': use one-shot or progressive[:EVENTS] (e.g. progressive:30)")


def latency_targets(initial_ms: float, target_ms: float, events: int) -> list[float]:
    """The target after each event: geometric steps from the unpruned latency to the target (HALP's schedule)."""
    return [initial_ms * (target_ms / initial_ms) ** (k / events) for k in range(1, events + 1)]


@dataclass(frozen=True)
class Progressive:
    events: int = HALP_EVENTS
    interval: int = HALP_INTERVAL
    window: float = WINDOW

    def spacing(self, total_steps: int) -> int:
        """Steps between events for a fine-tune of `total_steps`."""
        interval = min(self.interval, int(self.window * total_steps) // self.events)
        if interval < 1:
            raise AutopruneError(f"a progressive schedule of {self.events} events needs at least "
                                 f"{int(self.events / self.window) + 1} fine-tune steps, this one has {total_steps}: "
                                 "fine-tune longer")
        return interval


class _Around:
    """Predicts a partial config with the other groups at `base` (groups that can narrow no further)."""

    def __init__(self, predictor: Predictor, base: Config):
        self.predictor, self.base = predictor, base

    def predict(self, config: Config) -> float:
        return self.predictor.predict({**self.base, **config})


class Goal(Protocol):
    """What the model narrows to at each event, given the widths so far and the importance just accumulated."""

    def widths(self, space: SearchSpace, current: Config, saliency: Saliency, event: int, events: int) -> Config: ...

    def identity(self) -> dict: ...


@dataclass(frozen=True)
class LatencyGoal:
    """HALP's: the latency knapsack at geometric latency targets from the unpruned latency to `target_ms`."""
    predictor: Predictor
    target_ms: float

    def widths(self, space: SearchSpace, current: Config, saliency: Saliency, event: int, events: int) -> Config:
        target = latency_targets(self.predictor.predict(space.full_config()), self.target_ms, events)[event]
        return knapsack(space.capped(current), _Around(self.predictor, current), saliency, target)

    def identity(self) -> dict:
        return {"schedule_target_ms": round(self.target_ms, 6)}


@dataclass(frozen=True)
class ConfigGoal:
    """A chosen config: each group's width steps geometrically from its full width to the config's."""
    config: Config

    def widths(self, space: SearchSpace, current: Config, saliency: Saliency, event: int, events: int) -> Config:
        share = (event + 1) / events
        return {g.name: min(current[g.name], max(self.config[g.name],
                                                 round(g.channels * (self.config[g.name] / g.channels) ** share)))
                for g in space.searchable}

    def identity(self) -> dict:
        return {"schedule_config": dict(sorted(self.config.items()))}


class ProgressivePruning:
    """The progressive schedule on a model being trained in place; `finish()` returns the pruned model and its config.

    `finetune(..., schedule=this)` calls `after_backward` between a step's backward pass and the optimiser's step
    (the gradients importance is scored from), then `after_step`; its checkpoint carries `state_dict()`.
    """

    def __init__(self, model: nn.Module, space: SearchSpace, goal: Goal, total_steps: int,
                 plan: Progressive = Progressive()):
        self.model, self.space, self.goal = model, space, goal
        self.interval = plan.spacing(total_steps)
        self.events = plan.events
        self.masks = ChannelMasks(model, space)
        # A removable block is scored and removed like a group of one channel (its branch's end written as zeros).
        blocks = {g.name: branch_end(model, g.name) for g in space.searchable_of(BLOCK)}
        self.accumulator = ImportanceAccumulator(self.masks.groups, blocks)
        self.removed: dict[str, list[int]] = {name: [] for name in [*self.masks.groups, *blocks]}
        self.done_events = 0

    def identity(self) -> dict:
        """What a checkpoint must match to be resumed by this schedule."""
        return {"pruning_schedule": "progressive", "events": self.events, "interval": self.interval,
                **self.goal.identity()}

    @property
    def pruning(self) -> bool:
        return self.done_events < self.events

    def config(self) -> Config:
        return {g.name: g.channels - len(self.removed.get(g.name, [])) for g in self.space.searchable}

    def after_backward(self, step: int) -> None:
        if self.pruning:
            self.accumulator.add_batch()

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        if self.pruning and (step + 1) % self.interval == 0:
            self._narrow(self.done_events)
            self.done_events += 1
            self.accumulator = ImportanceAccumulator(self.accumulator.groups, self.accumulator.blocks)
            self.masks.set(self.removed)

    def _narrow(self, event: int) -> None:
        current = self.config()
        values = {name: [float(x) for x in v] for name, v in self.accumulator.mean().items()}
        chosen = self.goal.widths(self.space, current, Saliency("progressive", values), event, self.events)
        for name, kept in chosen.items():
            gone = set(self.removed[name])
            alive = [i for i in self.space.group(name).ranking(values[name]) if i not in gone]
            self.removed[name] += alive[: current[name] - kept]

    def state_dict(self) -> dict:
        return {"removed": self.removed, "done_events": self.done_events, "importance": self.accumulator.total,
                "importance_batches": self.accumulator.count}

    def load_state_dict(self, state: dict) -> None:
        self.removed = {name: [int(i) for i in v] for name, v in state["removed"].items()}
        self.done_events = int(state["done_events"])
        self.accumulator.total = dict(state["importance"])
        self.accumulator.count = int(state["importance_batches"])
        self.masks.set(self.removed)

    def finish(self) -> tuple[nn.Module, Config, dict[str, list[int]]]:
        """The physically pruned model (the masked channels removed), its config and the removed channels; the
        trained model is left unmasked."""
        if self.pruning:
            raise AutopruneError(f"the progressive schedule ended after {self.done_events} of {self.events} events")
        self.masks.remove()
        model = prune_channels(self.model, self.space, self.removed)
        return model, self.config(), {name: sorted(v) for name, v in self.removed.items()}


def progressive_finetune(model: nn.Module, space: SearchSpace, goal: Goal, data, epochs: float,
                         plan: Progressive = Progressive(),
                         **finetune_args) -> tuple[nn.Module, Config, dict[str, list[int]]]:
    """Fine-tunes a copy of the unpruned `model` for `epochs`, pruning progressively toward `goal`; returns the
    pruned model, its config and the channels removed. `finetune_args` go to proxy.finetune (checkpoint...)."""
    from .finetune import finetune, finetune_steps

    trained = copy.deepcopy(model)
    batch_size = finetune_args.get("batch_size", 128)
    schedule = ProgressivePruning(trained, space, goal, finetune_steps(data, epochs, batch_size), plan)
    finetune(trained, data, epochs=epochs, schedule=schedule, **finetune_args)
    pruned, config, removed = schedule.finish()
    return pruned.eval(), config, removed
