"""Config -> a physically smaller copy of the model; an importance criterion (importance.py) chooses which channels go.

A removed block is written like a group of channels, {block: [0]}: its one unit goes (blocks.py).
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import AutopruneError
from .blocks import BLOCK, remove_blocks, removable_blocks
from .graph import build_graph
from .importance import KNAPSACK, resolve, score_channels
from .importance import criterion as importance_criterion
from .space import Config, SearchSpace, graph_groups

def example_input(space: SearchSpace, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, *space.input_shape, generator=torch.Generator().manual_seed(0))


def prune_channels(model: nn.Module, space: SearchSpace, removed: dict[str, list[int]]) -> nn.Module:
    """Returns a copy of `model` without the listed channel indices of each group (the original is untouched)."""
    pruned = copy.deepcopy(model).eval()
    dg = build_graph(pruned, example_input(space))
    groups = graph_groups(pruned, dg)
    _check_matches(space, groups, pruned)
    gone_blocks = []
    for name, idxs in removed.items():
        if not idxs:
            continue
        if space.group(name).kind == BLOCK:
            gone_blocks.append(name)
            continue
        root = groups[name][0].dep.target.module
        pruner = dg.get_pruner_of_module(root)
        dg.get_pruning_group(root, pruner.prune_out_channels, sorted(int(i) for i in idxs)).prune()
    # Blocks last: the channels were pruned in the whole graph, so every group is still where the space says.
    return remove_blocks(pruned, gone_blocks)


def _check_matches(space: SearchSpace, groups: dict, model: nn.Module) -> None:
    blocks = removable_blocks(model) if any(g.kind == BLOCK for g in space.groups) else {}
    for g in space.groups:
        if g.kind == BLOCK:
            if g.name not in blocks:
                raise AutopruneError(f"search space does not fit this model: '{g.name}' is not a removable block")
        elif g.name not in groups or len(groups[g.name][0].idxs) != g.channels:
            raise AutopruneError(f"search space does not fit this model: group '{g.name}' ({g.channels} channels)")


def channels_to_remove(
    model: nn.Module,
    space: SearchSpace,
    config: Config,
    criterion: str | Callable = "l1",
    batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
    loss: Callable = F.cross_entropy,
    saliency: dict[str, list[float]] | None = None,
) -> dict[str, list[int]]:
    """Scores each group's channels with `criterion` (importance.py, or a torch-pruning importance object) and picks
    the least important to reach `config`; criterion "knapsack" takes the scores of `saliency` ({group: per-channel
    score in channel order}); criteria that score from gradients take `batch`."""
    full = space.complete(config)
    scored = copy.deepcopy(model).eval()
    torch.manual_seed(seed)
    dg = build_graph(scored, example_input(space))
    groups = {name: g for name, g in graph_groups(scored, dg).items() if space.group(name).channels > full[name]}
    gone_blocks = {g.name: [0] for g in space.removed_blocks(full)}
    if isinstance(criterion, str) and resolve(criterion, "pruning") == KNAPSACK:
        if saliency is None:
            raise AutopruneError("the knapsack criterion needs the knapsack's channel scores")
        scores = {name: torch.tensor(saliency[name]) for name in groups}
    else:
        scores = score_channels(scored, groups, importance_criterion(criterion), [batch] if batch else None, loss)
    # Stable: channels that score alike go in channel order, the same on every run.
    return {**{name: space.group(name).ranking(scores[name])[:space.group(name).channels - full[name]]
               for name in groups}, **gone_blocks}


def prune_recorded(model: nn.Module, space: SearchSpace, config: Config, criterion: str | Callable = "l1",
                   **scoring) -> tuple[nn.Module, dict[str, list[int]]]:
    """`prune`, also returning the removed indices, which rebuild the same architecture (see checkpoint)."""
    removed = channels_to_remove(model, space, config, criterion, **scoring)
    return prune_channels(model, space, removed), removed


def prune(model: nn.Module, space: SearchSpace, config: Config, criterion: str | Callable = "l1",
          **scoring) -> nn.Module:
    """A new model keeping exactly `config[group]` channels per group (unnamed groups stay whole); `scoring`:
    the batch, seed and loss of channels_to_remove, for criteria that score from gradients."""
    return prune_recorded(model, space, config, criterion, **scoring)[0]
