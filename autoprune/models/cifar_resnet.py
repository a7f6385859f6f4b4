"""The CIFAR-10 ResNets of He et al. (2016) with option-A shortcuts.

Parameter names follow the widely used reference implementation, so its published checkpoints load
into these modules once the `module.` prefix of DataParallel is stripped.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

DEPTHS = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9}


class ChannelPlacementShortcut(nn.Module):
    """Option-A shortcut: subsample by `stride` and place input channel i at output channel `placement[i]`.

    Output channels that receive no input are zero; an input placed at -1 is dropped. The unpruned
    shortcut equals zero-padding
    `planes // 4` channels on each side. Keeping the placement explicit (instead of a pad) lets the
    pruner drop input and output channels independently and still route every kept channel to the
    right place, which a plain channel pad cannot express.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, placement: list[int] | None = None):
        super().__init__()
        if placement is None:
            offset = (out_channels - in_channels) // 2
            placement = [offset + i for i in range(in_channels)]
        self.stride = stride
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.set_placement(placement)

    def set_placement(self, placement: list[int]) -> None:
        # source[j] = the input channel feeding output j, or in_channels (an appended zero channel).
        source = [self.in_channels] * self.out_channels
        for i, j in enumerate(placement):
            if j >= 0:
                source[j] = i
        self.placement = list(placement)
        self.register_buffer("source", torch.tensor(source, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        with_zero = F.pad(x, (0, 0, 0, 0, 0, 1))
        return with_zero.index_select(1, self.source)

    def extra_repr(self) -> str:
        return f"{self.in_channels}->{self.out_channels}, stride={self.stride}"


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut = ChannelPlacementShortcut(in_planes, planes, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, blocks_per_stage: int, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for stage, (planes, stride) in enumerate([(16, 1), (32, 2), (64, 2)], start=1):
            blocks = []
            for b in range(blocks_per_stage):
                blocks.append(BasicBlock(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def cifar_resnet(name: str, num_classes: int = 10) -> CifarResNet:
    return CifarResNet(DEPTHS[name], num_classes)
