"""Checks that pruning removes exactly the channels it claims to, on any model.

Shape checks and PyTorch-vs-ONNX comparisons cannot see a pruner that removes the wrong channel
indices: the model still runs. This check can. It first makes the channels to be removed contribute
exactly nothing (zero filters, biases and batch-norm scale and shift across the whole group), runs
the model, then prunes exactly those channels: the outputs must agree to float rounding. A removed block is
checked the same way: its branch silenced against the model without it.
"""
from __future__ import annotations

import copy
import random

import torch
import torch.nn as nn
import torch_pruning as tp

from ..models.cifar_resnet import ChannelPlacementShortcut
from .blocks import BLOCK, silence_block
from .graph import build_graph
from .prune import example_input, prune_channels
from .space import SearchSpace, graph_groups

# Layers that normalise across channels: removing a zero channel changes their statistics, so
# "contributes nothing" cannot be arranged by zeroing and the check does not apply.
_CROSS_CHANNEL = (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
_ZEROABLE = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm1d)


def checkable(model: nn.Module, space: SearchSpace, name: str) -> bool:
    names = dict(model.named_modules())
    group = space.group(name)
    return not any(isinstance(names.get(m), _CROSS_CHANNEL) for m in group.producers + group.consumers)


@torch.no_grad()
def _silence(dg: tp.DependencyGraph, group) -> None:
    for dep, idxs in group:
        if not dg.is_out_channel_pruning_fn(dep.handler):
            continue
        module = dep.target.module
        if isinstance(module, ChannelPlacementShortcut):
            # A shortcut output fed by an input channel is only silent if that input is.
            gone = set(idxs)
            sources = [i for i, p in enumerate(module.placement) if p in gone]
            if sources:
                pruner = dg.get_pruner_of_module(module)
                _silence(dg, dg.get_pruning_group(module, pruner.prune_in_channels, sources))
        elif isinstance(module, _ZEROABLE):
            module.weight[idxs] = 0
            if module.bias is not None:
                module.bias[idxs] = 0


def silence_channels(model: nn.Module, space: SearchSpace, removed: dict[str, list[int]]) -> nn.Module:
    """A copy of `model` in which the listed channels contribute nothing to the output."""
    silent = copy.deepcopy(model).eval()
    dg = build_graph(silent, example_input(space))
    groups = graph_groups(silent, dg)
    for name, idxs in removed.items():
        if space.group(name).kind == BLOCK:
            if idxs:
                silence_block(silent, name)
            continue
        root = groups[name][0].dep.target.module
        pruner = dg.get_pruner_of_module(root)
        _silence(dg, dg.get_pruning_group(root, pruner.prune_out_channels, list(idxs)))
    return silent


def random_removal(space: SearchSpace, rng: random.Random, names: list[str] | None = None) -> dict[str, list[int]]:
    """Random index sets (not just the first or last channels) for an allowed kept count of each group, the same
    positions in each of a grouped convolution's blocks; about half of the removable blocks go."""
    removed = {}
    for g in space.searchable if names is None else [space.group(n) for n in names]:
        if g.kind == BLOCK:
            removed[g.name] = [0] if rng.random() < 0.5 else []
            continue
        kept = rng.choice(g.choices[:-1])
        removed[g.name] = sorted(g.ranking([rng.random() for _ in range(g.channels)])[:g.channels - kept])
    return removed


@torch.no_grad()
def pruning_error(model: nn.Module, space: SearchSpace, removed: dict[str, list[int]], batch: int = 2) -> float:
    """Max abs difference between the silenced model and the pruned one (0 up to rounding when correct)."""
    x = example_input(space, batch)
    reference = silence_channels(model, space, removed)(x)
    pruned = prune_channels(reference_model := silence_channels(model, space, removed), space, removed)
    del reference_model
    return float((pruned(x) - reference).abs().max())


def verify_space(model: nn.Module, space: SearchSpace, trials: int = 2, seed: int = 0) -> list[str]:
    """Runs the check on every checkable group at once, `trials` times; returns what failed."""
    names = [g.name for g in space.searchable if checkable(model, space, g.name)]
    with torch.no_grad():
        scale = max(1.0, model.eval()(example_input(space)).abs().max().item())
    rng = random.Random(seed)
    failures = []
    for _ in range(trials):
        removed = random_removal(space, rng, names)
        error = pruning_error(model, space, removed)
        if error > 1e-4 * scale:
            failures.append(f"output differs by {error:.3g} after removing silent channels of {len(removed)} groups")
    return failures
