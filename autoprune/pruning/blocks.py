"""Removable blocks: residual blocks whose branch can go while the identity path stays (depth, a kind of group).

A block whose input and output shapes match computes act(branch(x) + x). Without its branch it computes act(x):
its kernels no longer run, and the model is exactly the original with the branch's output zeroed, which is how
the block is silenced (its branch's last layer writes zeros) and how the exactness check proves a removal.

A kind of block is registered by the module class torch or torchvision gives it: when an instance is removable
(an identity shortcut), the layer that writes its branch's output, and what runs in its place. In a search space
a removable block is a group of kind "block" with one unit (kept 1, removed 0) whose producers are its layers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from ..models import cifar_resnet

BLOCK = "block"


@dataclass(frozen=True)
class BlockKind:
    removable: Callable[[nn.Module], bool]  # its shortcut is the identity
    last: Callable[[nn.Module], nn.Module]  # the layer writing the branch's output (before the add)
    without: Callable[[nn.Module], nn.Module]  # what runs in its place: act(x)


def _kinds() -> dict[type, BlockKind]:
    kinds = {cifar_resnet.BasicBlock: BlockKind(lambda b: isinstance(b.shortcut, nn.Identity), lambda b: b.bn2,
                                                lambda b: nn.ReLU())}
    try:  # torchvision is optional: the CIFAR ResNets are autoprune's own
        from torchvision.models import mobilenetv2, resnet
    except ImportError:
        return kinds
    kinds[resnet.BasicBlock] = BlockKind(lambda b: b.downsample is None, lambda b: b.bn2, lambda b: nn.ReLU())
    kinds[resnet.Bottleneck] = BlockKind(lambda b: b.downsample is None, lambda b: b.bn3, lambda b: nn.ReLU())
    # No activation after its add: without the branch it is the identity.
    kinds[mobilenetv2.InvertedResidual] = BlockKind(lambda b: b.use_res_connect, lambda b: b.conv[-1],
                                                    lambda b: nn.Identity())
    return kinds


KINDS = _kinds()


def removable_blocks(model: nn.Module) -> dict[str, list[str]]:
    """Each removable block's name -> the names of its convolutions and linear layers, in model order."""
    found = {}
    for name, module in model.named_modules():
        kind = KINDS.get(type(module))
        if kind is not None and kind.removable(module):
            found[name] = [f"{name}.{sub}" for sub, m in module.named_modules()
                           if sub and isinstance(m, (nn.Conv2d, nn.Linear))]
    return found


def branch_end(model: nn.Module, name: str) -> nn.Module:
    """The layer writing block `name`'s branch output: zeroing its output silences the block."""
    block = model.get_submodule(name)
    return KINDS[type(block)].last(block)


@torch.no_grad()
def silence_block(model: nn.Module, name: str) -> None:
    """Makes block `name`'s branch write zeros, in place (its last layer's weight and bias)."""
    end = branch_end(model, name)
    end.weight.zero_()
    if end.bias is not None:
        end.bias.zero_()


def remove_blocks(model: nn.Module, names) -> nn.Module:
    """Replaces each named block of `model`, in place, by what it computes without its branch."""
    for name in names:
        block = model.get_submodule(name)
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, KINDS[type(block)].without(block))
    return model
