"""Pruners for layers torch-pruning does not know, registered with every dependency graph autoprune builds."""
from __future__ import annotations

from typing import Sequence

import torch_pruning as tp

from ..models.cifar_resnet import ChannelPlacementShortcut


class PlacementShortcutPruner(tp.pruner.BasePruningFunc):
    """Prunes the option-A shortcut's input and output channels independently (no intra-layer coupling)."""

    TARGET_MODULES = ChannelPlacementShortcut

    def prune_out_channels(self, layer: ChannelPlacementShortcut, idxs: Sequence[int]):
        removed = set(idxs)
        kept = [j for j in range(layer.out_channels) if j not in removed]
        new_index = {old: new for new, old in enumerate(kept)}
        layer.out_channels = len(kept)
        layer.set_placement([new_index.get(p, -1) for p in layer.placement])
        return layer

    def prune_in_channels(self, layer: ChannelPlacementShortcut, idxs: Sequence[int]):
        removed = set(idxs)
        layer.in_channels -= len(removed)
        layer.set_placement([p for i, p in enumerate(layer.placement) if i not in removed])
        return layer

    def get_out_channels(self, layer: ChannelPlacementShortcut) -> int:
        return layer.out_channels

    def get_in_channels(self, layer: ChannelPlacementShortcut) -> int:
        return layer.in_channels


CUSTOM_PRUNERS = {ChannelPlacementShortcut: PlacementShortcutPruner()}
