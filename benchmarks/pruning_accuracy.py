"""Accuracy of the shipped CIFAR ResNet-56 on the shipped test images, whole and lightly pruned, by every criterion.

No fine-tuning and no batch-norm re-estimation: this measures what the pruning itself keeps. Each searchable group
keeps (1 - --share) of its channels, inside the residual blocks only or in every group (the residual streams too);
the channels that go are chosen by each criterion of the registry (autoprune/pruning/importance.py), those that
score from gradients on one batch of 128 shipped test images, and by `knapsack` (the search's default): the search's
saliency (HALP's importance over 32 proxy-train batches of 64) ranks them.

    python benchmarks/pruning_accuracy.py [--share 0.1]

Writes benchmarks/results/pruning_accuracy.{md,json}.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autoprune.allocation.saliency import channel_saliency
from autoprune.data.sources import load_data
from autoprune.data.task import evaluate_top1
from autoprune.latency.fingerprint import this_machine
from autoprune.models.specs import load_model
from autoprune.pruning.importance import CRITERIA, KNAPSACK
from autoprune.pruning.prune import prune
from autoprune.pruning.space import Granularity, build_space

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import described, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--share", type=float, default=0.1, help="share of each group's channels to remove")
    args = parser.parse_args()
    loaded = load_model("cifar:resnet56", weights="shipped")
    data = load_data("cifar10-mini", loaded)
    test = data.test
    space = build_space(loaded, Granularity(multiple_of=1))
    every = {g.name: round((1 - args.share) * g.channels) for g in space.searchable}
    # Groups with two producers (a conv and its BN) sit inside a block; the rest are residual streams.
    inner = {name: kept for name, kept in every.items() if len(space.group(name).producers) == 2}
    batch = next(test.batches(128))
    saliency = channel_saliency(loaded.model, space, data).values  # the search's default: HALP's importance
    whole = evaluate_top1(loaded.model, test)
    rows = []
    for criterion in (KNAPSACK, *CRITERIA):
        accs = [evaluate_top1(prune(loaded.model, space, cfg, criterion, batch=batch, saliency=saliency), test)
                for cfg in (inner, every)]
        rows.append({"criterion": criterion, "inside_blocks": accs[0], "every_group": accs[1]})
        print(rows[-1], flush=True)
    machine = this_machine()
    lines = ["# Pruning itself: cifar:resnet56, shipped weights, no fine-tuning", "",
             f"Written by `benchmarks/pruning_accuracy.py` on {described(machine)}: top-1 on the {len(test)} shipped "
             f"CIFAR-10 test images with {100 * args.share:.0f}% of each group's channels removed, inside the residual "
             "blocks or in every group (the residual streams too); no batch-norm re-estimation.", "",
             "| removed | criterion | inside blocks | every group (streams too) |", "|---|---|---|---|",
             f"| none | - | {100 * whole:.1f}% | {100 * whole:.1f}% |"]
    lines += [f"| {100 * args.share:.0f}% of channels | {r['criterion']} | {100 * r['inside_blocks']:.1f}% | "
              f"{100 * r['every_group']:.1f}% |" for r in rows]
    write_results("pruning_accuracy", {"machine": machine, "share": args.share, "test_images": len(test),
                                       "unpruned": whole, "rows": rows}, lines)


if __name__ == "__main__":
    main()
