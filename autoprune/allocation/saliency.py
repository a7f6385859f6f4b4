"""How much each channel of each group matters: the saliency the latency knapsack spends its budget on.

  halp-taylor  HALP's importance (pruning/halp_taylor.py): per batch, |sum of gamma*dL/dgamma + beta*dL/dbeta| over
               the group's batch norms (the weights that write the channel where it has none), averaged over
               SALIENCY_BATCHES proxy-train batches
  l1           the summed L1 norm of every weight the channel owns in its group; needs no data, but its scale
               differs between layers

Scores are not normalised per group: the knapsack compares channels of different groups, so a channel of a
residual stream, whose batch norms are many, weighs what all of them weigh. `values` keeps each channel's score
in channel order: the pruning criterion "knapsack" removes the channels the knapsack valued least. A removable block
has one value (importance.py): what keeping it is worth, against the channels' on the same scale.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cached_property
from itertools import islice

import torch.nn as nn

from ..errors import AutopruneError
from ..pruning.graph import build_graph
from ..pruning.importance import CRITERIA, resolve, score_channels
from ..pruning.prune import example_input
from ..pruning.blocks import BLOCK
from ..pruning.space import SearchSpace, graph_groups
from ..data.task import TaskData

# Two disjoint halves of 25 batches rank the pooled channels at Spearman 0.69 (4: 0.51), benchmarks/importance_stability.py
SALIENCY_BATCHES = 32
SALIENCY_BATCH_SIZE = 64


@dataclass(frozen=True)
class Saliency:
    """Each searchable group's channel scores, in channel order, and what keeping the top k of them is worth."""

    criterion: str
    values: dict[str, list[float]]

    @cached_property
    def scores(self) -> dict[str, list[float]]:
        """Each group's scores, highest first."""
        return {name: sorted(v, reverse=True) for name, v in self.values.items()}

    def kept(self, group: str, k: int) -> float:
        return sum(self.scores[group][:k])

    def to_dict(self) -> dict:
        return {"criterion": self.criterion, "values": self.values}


def channel_saliency(model: nn.Module, space: SearchSpace, data: TaskData | None = None,
                     criterion: str = "halp-taylor", batches: int = SALIENCY_BATCHES, seed: int = 0) -> Saliency:
    rule = CRITERIA[resolve(criterion, "saliency")]
    scored = copy.deepcopy(model).eval()  # batch norm in eval mode: the gradient of the model as deployed
    dg = build_graph(scored, example_input(space))
    searchable = {g.name for g in space.searchable}
    groups = {name: g for name, g in graph_groups(scored, dg).items() if name in searchable}
    drawn = None
    if rule.needs_data:
        if data is None or len(data.proxy_train) == 0:
            raise AutopruneError(f"the {rule.name} saliency needs training data")
        drawn = islice(data.proxy_train.batches(SALIENCY_BATCH_SIZE, shuffle=True, seed=seed), batches)
    blocks = {g.name: scored.get_submodule(g.name) for g in space.searchable_of(BLOCK)}
    values = score_channels(scored, groups, rule, drawn, data.loss if data is not None else None, blocks)
    return Saliency(rule.name, {name: [float(x) for x in v] for name, v in values.items()})
