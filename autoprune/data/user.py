"""The user's own data and metric: a torch Dataset or DataLoader to train on, and a function that rates a model.

A DataLoader is used as it is (its batch size, order and augmentation: autoprune only seeds torch before each
pass so that a shuffled loader repeats); a Dataset is batched and shuffled here with the batch sizes the
proxies ask for. Either must yield (inputs, targets) pairs whose inputs fit the model. Any model works: the
loss is cross-entropy unless a `loss` function is given (outputs, targets) -> scalar tensor.
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Iterator

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from ..errors import DataError
from .task import TaskData, evaluate_top1, is_number

Metric = Callable[[nn.Module], float]


class LoaderSet:
    """A Dataset or DataLoader served through the `Batches` interface."""

    def __init__(self, source: Dataset | DataLoader, name: str):
        if not isinstance(source, (Dataset, DataLoader)):
            raise DataError(f"{name} must be a torch Dataset or DataLoader, not {type(source).__name__}")
        self.source, self.name = source, name

    def __len__(self) -> int:
        data = self.source.dataset if isinstance(self.source, DataLoader) else self.source
        try:
            return len(data)
        except TypeError as exc:  # an IterableDataset may not know its length
            raise DataError(f"{self.name} must have a length (a map-style Dataset)") from exc

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        if isinstance(self.source, DataLoader):
            return len(self.source)
        return len(self) // batch_size if drop_last else math.ceil(len(self) / batch_size)

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0, augment: bool = False,
                drop_last: bool = False, skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(self.source, DataLoader):
            torch.manual_seed(seed)  # the loader's own sampler draws from torch's global generator
            loader = self.source
        else:
            loader = DataLoader(self.source, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                                generator=torch.Generator().manual_seed(seed))
        for b, batch in enumerate(loader):
            if b >= skip:
                yield _pair(batch, self.name)


def _pair(batch, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], torch.Tensor)):
        raise DataError(f"{name} must yield (inputs, targets) pairs of tensors, got {type(batch).__name__}")
    return batch[0], batch[1]


class UserData(TaskData):
    """Training data and a metric from the user; the metric rates candidates and the exported model alike
    (the knapsack alone needs no metric)."""

    def __init__(self, train: Dataset | DataLoader, input_shape: tuple[int, ...], evaluate: Metric | None = None,
                 val: Dataset | DataLoader | None = None, loss: Callable | None = None):
        if evaluate is not None and val is not None:
            raise DataError("give evaluate=(model -> float, higher is better) or val_data=, not both")
        if evaluate is not None and not callable(evaluate):
            raise DataError(f"evaluate must be a function model -> float, not {type(evaluate).__name__}")
        if loss is not None and not callable(loss):
            raise DataError(f"loss must be a function (outputs, targets) -> tensor, not {type(loss).__name__}")
        self.train = self.proxy_train = LoaderSet(train, "train_data")
        self.val = None if val is None else LoaderSet(val, "val_data")
        for data in filter(None, (self.train, self.val)):
            _check_shape(data, input_shape)
        self.evaluate = evaluate
        self.metric = getattr(evaluate, "__name__", "evaluate") + "()" if evaluate else "val_data top-1"
        self.percent = evaluate is None
        self.source = f"user:{type(train).__name__}"
        self._loss = loss

    def score(self, model: nn.Module) -> float:
        if self.evaluate is None:
            if self.val is None:
                raise DataError("scoring a model needs evaluate=(model -> float) or val_data=")
            return evaluate_top1(model, self.val)
        name = self.metric
        try:
            value = self.evaluate(copy.deepcopy(model).eval())
        except Exception as exc:  # the user's code: any failure is reported the same way
            raise DataError(f"{name} raised {type(exc).__name__}: {exc}") from exc
        if not is_number(value):
            raise DataError(f"{name} must return a finite number (higher is better), it returned {value!r}")
        return float(value)

    test_score = score

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return super().loss(outputs, targets) if self._loss is None else self._loss(outputs, targets)


def _check_shape(data: LoaderSet, input_shape: tuple[int, ...]) -> None:
    x, _ = next(data.batches(2), (None, None))
    if x is None:
        raise DataError(f"{data.name} is empty")
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise DataError(f"{data.name} yields inputs of shape {tuple(x.shape)}, the model takes "
                             f"(batch, {', '.join(map(str, input_shape))})")
