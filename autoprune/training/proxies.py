"""Accuracy proxies that score a pruned candidate cheaply.

  adaptive-bn[:N]   reset every batch-norm layer's statistics, re-estimate them over N batches of
                    proxy-train (a cumulative average), then top-1 on proxy-val (EagleEye, Li et al. 2020)
  finetune:K        the same re-estimation, then K SGD steps from the pruned weights, then top-1 on proxy-val
  A>B               a ladder of fidelities (the search's default: adaptive-bn>finetune:20): every candidate is
                    scored by A, and only those the search's pruner promotes go on to B, whose score counts

The score that counts is the deployed model's: in an int8 search the ladder's last stage scores the candidate
statically quantised by ONNX Runtime, calibrated on proxy-train (precision.py), as export will deploy it.

A proxy works on a copy: the candidate it is given is left as it was. Every random choice (batch order,
augmentation) comes from the seed, so the same candidate gets the same score every time.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from itertools import islice

import torch
import torch.nn as nn

from ..data.task import Batches, TaskData
from ..errors import AutopruneError
from ..precision import PRECISIONS, Precision, calibration_samples
from .finetune import batch_stream, sgd, train_step

BN_BATCHES = 4  # adaptive-bn's default: enough for stable statistics, cheap enough for ~60 candidates in minutes
BN_BATCH_SIZE = 128
STEP_BATCH_SIZE = 64
STEP_LR = 0.01  # finetune:K starts from trained weights: a tenth of the usual from-scratch rate


@dataclass(frozen=True)
class ProxyResult:
    accuracy: float  # the data's score (top-1 on proxy-val for the built-in sources)
    seconds: float  # wall time of the whole evaluation


@torch.no_grad()
def reestimate_bn(model: nn.Module, images: Batches, batches: int, batch_size: int = BN_BATCH_SIZE, seed: int = 0) -> None:
    """Replaces every batch-norm layer's running statistics by their average over `batches` batches."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    for x, _ in islice(images.batches(batch_size, shuffle=True, seed=seed, drop_last=len(images) >= batch_size), batches):
        model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


@dataclass(frozen=True)
class Proxy:
    """BN re-estimation over `bn_batches` batches, then `steps` SGD steps (none for adaptive-bn), then the score of
    the model as it runs in `precision`."""

    name: str
    bn_batches: int = BN_BATCHES
    steps: int = 0
    lr: float = STEP_LR
    seed: int = 0
    precision: Precision = PRECISIONS["float32"]

    def evaluate(self, model: nn.Module, data: TaskData, teacher: nn.Module | None = None) -> ProxyResult:
        start = time.perf_counter()
        model = copy.deepcopy(model)
        reestimate_bn(model, data.proxy_train, self.bn_batches, seed=self.seed)
        if self.steps:
            if teacher is not None:
                teacher.eval()
            optimiser, scheduler = sgd(model, self.lr, self.steps)
            for step, x, y in batch_stream(data.proxy_train, STEP_BATCH_SIZE, self.seed):
                if step >= self.steps:
                    break
                train_step(model, data, optimiser, scheduler, step, self.seed, x, y, teacher)
        scored = model.eval()
        if self.precision.quantised:
            scored = self.precision.deployed(model, calibration_samples(data.proxy_train, self.seed))
        accuracy = data.score(scored)
        return ProxyResult(accuracy, time.perf_counter() - start)


# Proxy kinds: what the count after ':' sets, and whether the count may be left out.
PROXY_KINDS = {
    "adaptive-bn": {"field": "bn_batches", "optional": True, "form": "adaptive-bn[:N] (N batches, default 4)"},
    "finetune": {"field": "steps", "optional": False, "form": "finetune:K (K steps)"},
}
DEFAULT_PROXY = "adaptive-bn>finetune:20"


def make_ladder(spec: str, seed: int = 0, precision: Precision = PRECISIONS["float32"]) -> list[Proxy]:
    """The proxies of a ladder spec, cheapest first; the last one's score is the candidate's, taken in `precision`
    (the earlier stages only decide who goes on: they score the float model, which is cheaper)."""
    ladder = [make_proxy(stage, seed) for stage in spec.split(">")]
    ladder[-1] = dataclasses.replace(ladder[-1], precision=precision)
    return ladder


def make_proxy(spec: str, seed: int = 0) -> Proxy:
    kind, sep, count = spec.partition(":")
    form = PROXY_KINDS.get(kind)
    if form is None or not (sep or form["optional"]):
        forms = [f["form"] for f in PROXY_KINDS.values()] + ["A>B (a ladder, e.g. adaptive-bn>finetune:20)"]
        raise AutopruneError(f"unknown proxy '{spec}': use {', '.join(forms)}")
    if not sep:
        return Proxy(spec, seed=seed)
    if not count.isdigit() or int(count) < 1:
        raise AutopruneError(f"proxy '{spec}': the count after ':' must be a positive integer")
    return Proxy(spec, seed=seed, **{form["field"]: int(count)})
