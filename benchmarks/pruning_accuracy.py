"""Accuracy of the shipped CIFAR ResNet-56 on the shipped test images, whole and lightly pruned.

No fine-tuning and no batch-norm re-estimation: this measures what the pruning itself keeps.
Usage: python benchmarks/pruning_accuracy.py [--share 0.1]
"""
from __future__ import annotations

import argparse

from autoprune.data.sources import load_data
from autoprune.models.specs import load_model
from autoprune.data.task import evaluate_top1
from autoprune.pruning.prune import CRITERIA, prune
from autoprune.report import table
from autoprune.pruning.space import Granularity, build_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--share", type=float, default=0.1, help="share of each group's channels to remove")
    args = parser.parse_args()
    loaded = load_model("cifar:resnet56", weights="shipped")
    test = load_data("cifar10-mini", loaded).test
    space = build_space(loaded, Granularity(multiple_of=1))
    every = {g.name: round((1 - args.share) * g.channels) for g in space.searchable}
    # Groups with two producers (a conv and its BN) sit inside a block; the rest are residual streams.
    inner = {name: kept for name, kept in every.items() if len(space.group(name).producers) == 2}
    batch = next(test.batches(128))
    whole = f"{100 * evaluate_top1(loaded.model, test):.1f}%"
    rows = [["unpruned", "-", whole, whole]]
    for criterion in CRITERIA:
        accs = [evaluate_top1(prune(loaded.model, space, cfg, criterion, batch=batch), test) for cfg in (inner, every)]
        rows.append([f"-{100 * args.share:.0f}% channels", criterion] + [f"{100 * a:.1f}%" for a in accs])
    print(f"cifar:resnet56, shipped weights, {len(test)} shipped CIFAR-10 test images, top-1")
    print(table(["model", "criterion", "inside blocks", "every group"], rows))


if __name__ == "__main__":
    main()
