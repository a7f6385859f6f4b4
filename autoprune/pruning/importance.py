"""Every channel-importance criterion, in one registry: how the channels of a group are scored (higher: keep).

  halp-taylor    HALP's batch-norm Taylor importance, accumulated batch by batch (halp_taylor.py); needs data
  l1             the summed L1 norm of every weight a channel owns in its group; no data
  l2             the same with the L2 norm
  bn-scale       |gamma| of the group's batch norms (torch-pruning's BNScaleImportance)
  weight-taylor  torch-pruning's TaylorImportance: |w * dL/dw| of conv and linear weights, from one batch
  random         a seeded random order: the control

Only criteria whose scores are not normalised per group (halp-taylor, l1) can be the knapsack's saliency, which
compares channels of different groups, and they also score removable blocks (blocks.py) as one unit each on the
same scale: halp-taylor from the branch's last batch norm, l1 as the L1 norm of all the branch's weights. Pruning may
also name `knapsack`: the channels go that the saliency the knapsack allocated widths by valued least.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch_pruning as tp

from ..errors import AutopruneError
from .blocks import branch_end
from .halp_taylor import accumulated_importance

# Scores every group's channels: (model with its graph built, {group: torch-pruning group}, batches, loss, {block name:
# block module}); only the criteria that compare across groups score the blocks.
ScoreFn = Callable[[nn.Module, dict, list, Callable, dict], dict[str, torch.Tensor]]
KNAPSACK = "knapsack"
# Names of an earlier release, each meaning one algorithm in the role it was given in.
RENAMED = {"saliency": {"taylor": "halp-taylor"}, "pruning": {"taylor": "weight-taylor", "saliency": KNAPSACK}}


@dataclass(frozen=True)
class Criterion:
    name: str
    score: ScoreFn
    needs_data: bool = False  # scores from gradients: the caller passes batches of (inputs, targets)
    across_groups: bool = False  # comparable between groups: may be the knapsack's saliency


def per_group(make: Callable[[], Callable]) -> ScoreFn:
    """A torch-pruning importance, applied group by group; a group it cannot score (no weights) scores alike."""

    def score(model, groups, batches, loss, blocks):
        rule = make()
        values = {name: rule(group) for name, group in groups.items()}
        return {name: torch.ones(len(groups[name][0].idxs)) if v is None else v for name, v in values.items()}

    return score


def _weight_taylor(model, groups, batches, loss, blocks):
    # torch-pruning's Taylor reads the gradients in the weights: one batch, so several cannot cancel (DESIGN.md).
    x, y = batches[0]
    model.zero_grad()
    loss(model(x), y).backward()
    return per_group(lambda: tp.importance.TaylorImportance())(model, groups, batches, loss, blocks)


def _halp_taylor(model, groups, batches, loss, blocks):
    return accumulated_importance(model, groups, batches, loss, {name: branch_end(model, name) for name in blocks})


def _l1(model, groups, batches, loss, blocks):
    scores = per_group(lambda: tp.importance.MagnitudeImportance(p=1, group_reduction="sum", normalizer=None))(
        model, groups, batches, loss, blocks)
    for name, block in blocks.items():  # a block's channels all go with it: it owns every weight of its branch
        scores[name] = torch.stack([m.weight.detach().abs().sum() for m in block.modules()
                                    if isinstance(m, (nn.Conv2d, nn.Linear))]).sum().view(1)
    return scores


CRITERIA: dict[str, Criterion] = {c.name: c for c in (
    Criterion("halp-taylor", _halp_taylor, needs_data=True, across_groups=True),
    Criterion("l1", _l1, across_groups=True),
    Criterion("l2", per_group(lambda: tp.importance.MagnitudeImportance(p=2))),
    Criterion("bn-scale", per_group(lambda: tp.importance.BNScaleImportance())),
    Criterion("weight-taylor", _weight_taylor, needs_data=True),
    Criterion("random", per_group(lambda: tp.importance.RandomImportance())),
)}
SALIENCIES = tuple(name for name, c in CRITERIA.items() if c.across_groups)
PRUNING_CRITERIA = (KNAPSACK, *CRITERIA)


def resolve(name: str, role: str) -> str:
    """`name` as the registry spells it, for a criterion in `role` ('saliency' or 'pruning')."""
    name = RENAMED[role].get(name, name)
    allowed = SALIENCIES if role == "saliency" else PRUNING_CRITERIA
    if name not in allowed:
        raise AutopruneError(f"unknown {role} criterion '{name}' (choose from {', '.join(allowed)})")
    return name


def criterion(name: str | Callable) -> Criterion:
    """A registered criterion by name, or a torch-pruning importance object of the user's."""
    if callable(name):
        return Criterion(getattr(name, "__name__", type(name).__name__), per_group(lambda: name))
    return CRITERIA[resolve(name, "pruning")]


def score_channels(model: nn.Module, groups: dict, rule: Criterion, batches: Iterable | None, loss: Callable,
                   blocks: dict[str, nn.Module] | None = None):
    """Every group's channel scores in channel order (and each of `blocks`' one score), as float tensors."""
    batches = list(batches) if batches is not None else []
    if rule.needs_data and not batches:
        raise AutopruneError(f"the {rule.name} criterion needs data (batches of inputs and labels)")
    if blocks and not rule.across_groups:
        raise AutopruneError(f"the {rule.name} criterion does not score removable blocks (halp-taylor and l1 do)")
    return {name: v.detach().float() for name, v in rule.score(model, groups, batches, loss, blocks or {}).items()}
