"""Is HALP's per-batch importance stable over the batches it is averaged on? Two disjoint halves of proxy-train
batches, each averaged on its own, ranked against each other per group (Spearman's rho, Kendall's tau), for
several half sizes; beside it the previous saliency (torch-pruning's Taylor on one gradient accumulated over the
same batches, without batch-norm terms) on the same halves.

    python benchmarks/importance_stability.py [--sizes 4 8 16 25]

cifar:resnet56 with its shipped weights, the shipped CIFAR-10 subset's proxy-train split, batches of 64 (the
saliency's). Writes benchmarks/results/importance_stability.{md,json}.
"""
from __future__ import annotations

import argparse
import copy
import sys
from itertools import islice
from pathlib import Path

import numpy as np
import scipy.stats
import torch_pruning as tp

import autoprune
from autoprune.data.sources import load_data
from autoprune.latency.fingerprint import this_machine
from autoprune.pruning.graph import build_graph
from autoprune.pruning.halp_taylor import accumulated_importance
from autoprune.pruning.prune import example_input
from autoprune.allocation.saliency import SALIENCY_BATCH_SIZE
from autoprune.pruning.space import graph_groups

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import described, write_results  # noqa: E402

def halves(data, size: int, seed: int):
    drawn = list(islice(data.proxy_train.batches(SALIENCY_BATCH_SIZE, shuffle=True, seed=seed), 2 * size))
    if len(drawn) < 2 * size:
        raise SystemExit(f"proxy-train has {len(drawn)} batches of {SALIENCY_BATCH_SIZE}, fewer than {2 * size}")
    return drawn[:size], drawn[size:]


def accumulated_gradient_taylor(model, groups, batches, loss) -> dict:
    """The previous saliency: one gradient summed over the batches, then torch-pruning's |w * g| (no BN terms)."""
    model.zero_grad()
    for x, y in batches:
        loss(model(x), y).backward()
    taylor = tp.importance.TaylorImportance(group_reduction="sum", normalizer=None)
    scores = {name: taylor(group) for name, group in groups.items()}
    model.zero_grad()
    return scores


def agreement(a: dict, b: dict) -> dict:
    rho, tau = [], []
    for name in a:
        x, y = np.asarray(a[name], float), np.asarray(b[name], float)
        if len(x) > 2 and x.std() > 0 and y.std() > 0:
            rho.append(scipy.stats.spearmanr(x, y).statistic)
            tau.append(scipy.stats.kendalltau(x, y).statistic)
    # The knapsack compares channels across groups: the ranking of all channels pooled is what it spends on.
    pooled = scipy.stats.spearmanr(np.concatenate([np.asarray(a[n], float) for n in a]),
                                   np.concatenate([np.asarray(b[n], float) for n in a])).statistic
    return {"groups": len(rho), "pooled_spearman": round(float(pooled), 4), "spearman_mean": round(float(np.mean(rho)), 4),
            "spearman_min": round(float(np.min(rho)), 4), "kendall_mean": round(float(np.mean(tau)), 4)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 25])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    loaded = autoprune.api.load("cifar:resnet56")
    space = autoprune.inspect("cifar:resnet56")
    data = load_data("cifar10-mini", loaded, seed=args.seed)
    model = copy.deepcopy(loaded.model).eval()
    dg = build_graph(model, example_input(space))
    searchable = {g.name for g in space.searchable}
    groups = {n: g for n, g in graph_groups(model, dg).items() if n in searchable}
    rows = []
    for size in args.sizes:
        first, second = halves(data, size, args.seed)
        halp = [accumulated_importance(model, groups, half, data.loss) for half in (first, second)]
        old = [accumulated_gradient_taylor(model, groups, half, data.loss) for half in (first, second)]
        rows.append({"batches_per_half": size, "halp": agreement(*halp), "accumulated_gradient": agreement(*old)})
        print(rows[-1], flush=True)
    machine = this_machine()
    out = {"machine": machine, "settings": vars(args), "rows": rows}
    lines = ["# Importance stability: two disjoint halves of proxy-train batches, ranked against each other", "",
             f"Written by `benchmarks/importance_stability.py` on {described(machine)} (cifar:resnet56, shipped "
             "weights, batches of 64; mean over the searchable groups).", "",
             "| batches per half | HALP per-batch: all channels pooled, Spearman | within groups: Spearman mean (min) | "
             "Kendall mean | accumulated gradient (previous): pooled | within groups: Spearman mean (min) | Kendall mean |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        h, o = r["halp"], r["accumulated_gradient"]
        lines.append(f"| {r['batches_per_half']} | {h['pooled_spearman']:.3f} | {h['spearman_mean']:.3f} "
                     f"({h['spearman_min']:.3f}) | {h['kendall_mean']:.3f} | {o['pooled_spearman']:.3f} | "
                     f"{o['spearman_mean']:.3f} ({o['spearman_min']:.3f}) | {o['kendall_mean']:.3f} |")
    write_results("importance_stability", out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
