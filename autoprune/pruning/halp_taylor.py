"""HALP's channel importance, `halp-taylor` (Shen et al. 2022, after Molchanov et al. 2019), accumulated batch by batch.

For one batch, removing channel c of a group changes the loss by about the first-order Taylor term of the
parameters that carry it. Where the group has batch norms, HALP takes their scale and shift:

    I_c(batch) = | sum over the group's batch norms of (gamma_c * dL/dgamma_c + beta_c * dL/dbeta_c) |

and, where it has none, the weights of the convolutions and linear layers that write the channel:
|sum of w * dL/dw| over them. Each batch's I_c is added up and the sum divided by the count: the product is
taken per batch, before the gradients of several batches could cancel each other.

A removable block (blocks.py) is one unit: removing it zeroes its branch's last batch norm's scale and shift, whose
first-order change of the loss is the sum of that norm's terms over all its channels, |sum_c (gamma_c * dL/dgamma_c
+ beta_c * dL/dbeta_c)| per batch.

Torch-pruning's GroupTaylorImportance (1.6.1) scores conv, linear and group-norm weights only, so it cannot
give this; the groups and their channel index maps are still torch-pruning's (dependency graph).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch_pruning.pruner import function


def _has_batchnorm(group) -> bool:
    return any(dep.pruning_fn == function.prune_batchnorm_out_channels for dep, _ in group)


def batch_importance(group) -> torch.Tensor:
    """One batch's |Taylor| importance of each of the group's channels, from the gradients now in the model."""
    size = len(group[0].idxs)
    total = torch.zeros(size, dtype=torch.float64)
    use_bn = _has_batchnorm(group)
    for i, (dep, idxs) in enumerate(group):
        layer, fn = dep.layer, dep.pruning_fn
        root = torch.tensor(group[i].root_idxs)
        if use_bn and fn == function.prune_batchnorm_out_channels and layer.affine:
            terms = [layer.weight, layer.bias]
        elif not use_bn and fn in (function.prune_conv_out_channels, function.prune_linear_out_channels):
            terms = [layer.weight] + ([layer.bias] if layer.bias is not None else [])
        else:
            continue
        for p in terms:
            if p.grad is None:
                continue
            product = (p.detach() * p.grad.detach()).double()[idxs]
            total.index_add_(0, root, product.flatten(1).sum(1) if product.dim() > 1 else product)
    return total.abs()


def block_batch_importance(end: nn.Module) -> torch.Tensor:
    """One batch's |Taylor| importance of a block whose branch ends in batch norm `end`, as a one-unit tensor."""
    total = torch.zeros(1, dtype=torch.float64)
    for p in (end.weight, end.bias):
        if p is not None and p.grad is not None:
            total += (p.detach() * p.grad.detach()).double().sum()
    return total.abs()


class ImportanceAccumulator:
    """Adds up each batch's importance per group (and per block, `blocks`: name -> its branch's last batch norm);
    `mean()` is the average over the batches added."""

    def __init__(self, groups: dict[str, object], blocks: dict[str, nn.Module] | None = None):
        self.groups, self.blocks = groups, blocks or {}
        self.total = {name: torch.zeros(len(g[0].idxs), dtype=torch.float64) for name, g in groups.items()}
        self.total.update({name: torch.zeros(1, dtype=torch.float64) for name in self.blocks})
        self.count = 0

    @torch.no_grad()
    def add_batch(self) -> None:
        """Call after a batch's backward pass (and before the optimizer changes the weights)."""
        for name, group in self.groups.items():
            self.total[name] += batch_importance(group)
        for name, end in self.blocks.items():
            self.total[name] += block_batch_importance(end)
        self.count += 1

    def mean(self) -> dict[str, torch.Tensor]:
        return {name: t / max(1, self.count) for name, t in self.total.items()}


def accumulated_importance(model: nn.Module, groups: dict[str, object], batches, loss,
                           blocks: dict[str, nn.Module] | None = None) -> dict[str, torch.Tensor]:
    """The average per-batch importance of every group's channels (and every block of `blocks`) over `batches` of
    (inputs, targets)."""
    accumulator = ImportanceAccumulator(groups, blocks)
    for x, y in batches:
        model.zero_grad()
        loss(model(x), y).backward()
        accumulator.add_batch()
    model.zero_grad()
    return accumulator.mean()
