"""How much each channel of each group matters: the saliency the latency knapsack spends its budget on.

  taylor   first-order Taylor |w * dL/dw|, summed over every weight the channel owns in its group (the
           convolutions that write and read it, their batch norms), with the gradient accumulated over
           several proxy-train batches (HALP, Shen et al. 2022; Molchanov et al. 2019)
  l1       the summed L1 norm of the same weights; needs no data, but is not comparable between layers

Scores are not normalised per group: the knapsack compares channels of different groups, so a channel
of a residual stream, which every block writes and reads, must weigh what all its weights weigh.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch_pruning as tp

from .errors import AutopruneError
from .graph import build_graph
from .prune import example_input
from .space import SearchSpace, graph_groups
from .taskdata import TaskData

SALIENCY_BATCHES = 8
SALIENCY_BATCH_SIZE = 64
SALIENCIES = ("taylor", "l1")


@dataclass(frozen=True)
class Saliency:
    """Each searchable group's channel scores, highest first, and what keeping the top k of them is worth."""

    criterion: str
    scores: dict[str, list[float]]

    def kept(self, group: str, k: int) -> float:
        return sum(self.scores[group][:k])

    def to_dict(self) -> dict:
        return {"criterion": self.criterion, "scores": self.scores}


def channel_saliency(model: nn.Module, space: SearchSpace, data: TaskData | None = None, criterion: str = "taylor",
                     batches: int = SALIENCY_BATCHES, seed: int = 0) -> Saliency:
    if criterion not in SALIENCIES:
        raise AutopruneError(f"unknown saliency '{criterion}' (choose {' or '.join(SALIENCIES)})")
    scored = copy.deepcopy(model).eval()
    dg = build_graph(scored, example_input(space))
    if criterion == "taylor":
        if data is None or len(data.proxy_train) == 0:
            raise AutopruneError("the taylor saliency needs training data")
        importance = tp.importance.TaylorImportance(group_reduction="sum", normalizer=None)
        scored.zero_grad()
        # Batch norm stays in eval mode: the gradient is that of the model as it will be deployed.
        for i, (x, y) in enumerate(data.proxy_train.batches(SALIENCY_BATCH_SIZE, shuffle=True, seed=seed)):
            if i >= batches:
                break
            data.loss(scored(x), y).backward()
    else:
        importance = tp.importance.MagnitudeImportance(p=1, group_reduction="sum", normalizer=None)
    searchable = {g.name for g in space.searchable}
    scores = {}
    for name, group in graph_groups(scored, dg).items():
        if name in searchable:
            values = importance(group)
            if values is None:  # a group with no weights to score: every channel alike
                values = torch.ones(len(group[0].idxs))
            scores[name] = sorted((float(v) for v in values), reverse=True)
    return Saliency(criterion, scores)
