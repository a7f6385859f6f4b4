"""What the search and the export need of a task's data, whoever supplies it.

Two kinds implement it: the built-in image sources (data.DataSplits: top-1 on a held-out part of the training
images) and the user's own objects (user_data.UserData: a Dataset or DataLoader, and an evaluation function).
Proxies, the saliency and fine-tuning see only this interface.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Iterator, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F


class Batches(Protocol):
    """Training batches: (inputs, targets) pairs in an order fixed by `seed`."""

    def __len__(self) -> int: ...

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int: ...

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0, augment: bool = False,
                drop_last: bool = False, skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


class TaskData(ABC):
    """`train` is what export fine-tunes on, `proxy_train` what the proxies and the saliency use (a part of it,
    or all of it); `score` rates a candidate during the search and `test_score` the exported model. Higher is
    better for both."""

    train: Batches
    proxy_train: Batches
    source: str
    metric: str  # what `score` is, for the front's column
    percent: bool = True  # whether scores are shares, shown as percentages

    @abstractmethod
    def score(self, model: nn.Module) -> float:
        """A candidate's score during the search (the model is in eval mode; leave it as it is)."""

    @abstractmethod
    def test_score(self, model: nn.Module) -> float:
        """The exported model's score, on data the search never saw where there is such data."""

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)


@torch.no_grad()
def evaluate_top1(model: nn.Module, images: Batches, batch_size: int = 64) -> float:
    """Share of inputs whose highest output is the label."""
    model.eval()
    correct = seen = 0
    for x, y in images.batches(batch_size):
        correct += (model(x).argmax(1) == y).sum().item()
        seen += len(y)
    return correct / max(seen, 1)


def is_number(value) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and math.isfinite(float(value))
    try:
        return not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
