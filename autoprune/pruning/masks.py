"""Channels masked in place: the model computes what it would with those channels pruned, with no copy made.

Every layer that writes a group's channels has its output zeroed at the masked ones (not its weights), because
some writers have no weights (the parameter-free shortcut of CIFAR ResNets places the previous stage's channels
into the next): a consumer then reads zeros exactly where the pruned model has no channel. Used by the progressive
schedule (masks that grow while the model trains) and by the supernet (a different mask for every width it trains).
A removed block ({block: [0]}) is masked where its branch's last layer writes: all of its output is its one unit.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import BLOCK, branch_end
from .graph import build_graph
from .prune import example_input
from .space import SearchSpace, graph_groups


class ChannelMasks:
    """Forward hooks on the writers of the searchable groups of `model`; `set(removed)` chooses what they silence."""

    def __init__(self, model: nn.Module, space: SearchSpace):
        searchable = {g.name for g in space.searchable}
        self.groups = {n: g for n, g in graph_groups(model, build_graph(model, example_input(space))).items()
                       if n in searchable}
        # Per group, the layers writing its channels, and which of their output channels carry which of the group's.
        self._writers = {name: [(dep.layer, torch.tensor(dep_idxs), torch.tensor(group[i].root_idxs))
                                for i, (dep, dep_idxs) in enumerate(group)
                                if getattr(dep.pruning_fn, "__name__", "") == "prune_out_channels"]
                         for name, group in self.groups.items()}
        for g in space.searchable_of(BLOCK):
            end = branch_end(model, g.name)
            width = end.weight.shape[0]
            self._writers[g.name] = [(end, torch.arange(width), torch.zeros(width, dtype=torch.long))]
        self._silenced: dict[nn.Module, torch.Tensor] = {}
        layers = {layer for writers in self._writers.values() for layer, _, _ in writers}
        self._hooks = [layer.register_forward_hook(self._silence) for layer in layers]

    def set(self, removed: dict[str, list[int]]) -> None:
        """Silences exactly `removed` ({group: channel indices}); every other channel runs."""
        self._silenced = {}
        for name, idxs in removed.items():
            if len(idxs):
                gone = torch.as_tensor(list(idxs))
                for layer, dep_idxs, root_idxs in self._writers[name]:
                    silenced = dep_idxs[torch.isin(root_idxs, gone)]
                    previous = self._silenced.get(layer)
                    self._silenced[layer] = silenced if previous is None else torch.cat([previous, silenced])

    def remove(self) -> None:
        """Takes the hooks off: the model runs whole again."""
        for hook in self._hooks:
            hook.remove()
        self._silenced = {}

    def _silence(self, layer: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor | None:
        gone = self._silenced.get(layer)
        if gone is None:
            return None
        keep = torch.ones(output.shape[1], dtype=output.dtype)
        keep[gone] = 0
        return output * keep.view(1, -1, *([1] * (output.dim() - 2)))
