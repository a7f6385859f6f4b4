"""Is this machine's table right where a search looks, or only on random configs?

A table is checked on random held-out configs (every group's width drawn alike), but a search proposes widths
repaired down the table's staircase, and the repair (like the knapsack) goes where the table says time is cheapest:
any kernel the table under-prices is where it goes. This times three kinds of config of the default model with the independent
harness (fresh processes, shuffled, the unpruned model's copies in every pass; shares of it cancel the machine's
speed), against what the table predicts:

- random:       space.random_config, as the table's held-out check draws them;
- search-like:  random points of the default search's width space repaired to random targets (0.3-0.75 of the
                unpruned model): what a search proposes before its sampler has learnt;
- adversarial:  the knapsack with a random worth per group and every channel worth the same: where a greedy
                search on this table would go.

    python benchmarks/search_pockets.py [--configs 30] [--passes 12]

Writes benchmarks/results/search_pockets.json/.md and .png (predicted against measured share, by kind).
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import warnings
from pathlib import Path

import numpy as np

from autoprune.latency.fingerprint import this_machine
from autoprune.allocation.knapsack import knapsack
from autoprune.allocation.saliency import Saliency
from autoprune.study.context import build_context
from autoprune.study.settings import SearchSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, described, search_like, write_results  # noqa: E402
from harness import split_reference, timed_beside  # noqa: E402

NAME = "search_pockets"


def adversarial(ctx, rng: random.Random) -> dict:
    groups = ctx.space.searchable
    even = Saliency("count", {g.name: [1.0] * g.channels for g in groups})
    worth = {g.name: math.exp(rng.uniform(-2, 2)) for g in groups}
    return knapsack(ctx.space, ctx.predictor, even, rng.uniform(0.2, 0.9) * ctx.unpruned_ms, worth)


def errors(predicted: np.ndarray, measured: np.ndarray) -> dict:
    e = predicted / measured - 1
    return {"n": int(e.size), "mape_pct": round(float(np.mean(np.abs(e))) * 100, 2),
            "median_pct": round(float(np.median(e)) * 100, 2), "worst_under_pct": round(float(e.min()) * 100, 2),
            "worst_over_pct": round(float(e.max()) * 100, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", type=int, default=30, help="configs of each kind")
    ap.add_argument("--passes", type=int, default=12, help="harness passes")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="kernel .* is not in the table")
    # The default model and this machine's own table (no evaluator is needed: nothing is scored).
    ctx = build_context(SearchSettings(budget="0.5x", evaluator="ladder"))
    rng = random.Random(args.seed)
    kinds = {"random": lambda: ctx.space.random_config(rng), "search-like": lambda: search_like(ctx.widths, ctx.predictor, ctx.saliency, rng, 0.3, 0.75),
             "adversarial": lambda: adversarial(ctx, rng)}
    configs = [(kind, make()) for kind, make in kinds.items() for _ in range(args.configs)]
    models = [ctx.prune(config)[0] for _, config in configs]
    timed = timed_beside(ctx.loaded.model, models, ctx.loaded.example_input(), args.passes, 3)
    unpruned_ms, shares = split_reference(timed)
    predicted = np.array([ctx.predictor.predict(c) for _, c in configs]) / ctx.unpruned_ms
    measured = np.array(shares)
    by_kind = {kind: errors(predicted[[k == kind for k, _ in configs]], measured[[k == kind for k, _ in configs]])
               for kind in kinds}
    worst = int(np.argmin(predicted / measured))
    validation = ctx.predictor.table.model(ctx.predictor.key).get("validation") or {}
    results = {"machine": this_machine(), "table": str(ctx.predictor.table.path),
               "table_validation": {k: validation.get(k) for k in ("mape_pct", "within_10pct")},
               "unpruned_measured_ms": unpruned_ms, "unpruned_predicted_ms": ctx.unpruned_ms, "by_kind": by_kind,
               "worst": {"kind": configs[worst][0], "config": configs[worst][1],
                         "predicted_share": float(predicted[worst]), "measured_share": float(measured[worst])},
               "configs": [{"kind": k, "config": c, "predicted_share": float(p), "measured_share": float(m)}
                           for (k, c), p, m in zip(configs, predicted, measured)],
               "timed": timed, "args": vars(args)}
    machine = results["machine"]
    lines = [f"# This machine's table where a search looks on {described(machine)}", "",
             f"table {results['table']}: held-out MAPE {validation.get('mape_pct')}%; unpruned measured "
             f"{unpruned_ms:.3f} ms by the harness, predicted {ctx.unpruned_ms:.3f} ms; {args.passes} passes", "",
             "| configs | n | MAPE | median error | most under | most over |", "|---|---|---|---|---|---|"]
    lines += [f"| {kind} | {e['n']} | {e['mape_pct']:.2f}% | {e['median_pct']:+.2f}% | {e['worst_under_pct']:+.2f}% "
              f"| {e['worst_over_pct']:+.2f}% |" for kind, e in by_kind.items()]
    write_results(NAME, results, lines)
    plot(results, RESULTS / f"{NAME}.png")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    for kind, colour in (("random", "#9aa5b1"), ("search-like", "#d1495b"), ("adversarial", "#00798c")):
        rows = [c for c in results["configs"] if c["kind"] == kind]
        e = results["by_kind"][kind]
        ax.scatter([c["predicted_share"] for c in rows], [c["measured_share"] for c in rows], s=16, color=colour,
                   label=f"{kind}: MAPE {e['mape_pct']:.1f}%, worst {e['worst_under_pct']:+.0f}%")
    ax.plot([0.1, 1], [0.1, 1], color="#555555", linestyle=":", label="measured = predicted")
    ax.set_xlabel("predicted share of the unpruned model")
    ax.set_ylabel("measured share (harness)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
