"""How often does the latency-saliency knapsack find the best config, and how far short is it when it does not?

The knapsack (autoprune/allocation/knapsack.py) is greedy with exchanges, not an exact solver. On --spaces random
tiny spaces, each small enough to try every config, it is compared with brute force:
- a space: a chain of 4 convolutions, each of 8, 12 or 16 channels at 4 steps (keep 1/4..4/4, at least 1/4);
- latency: each convolution costs a random scale (0.5-2) x its input width x its output width, plus a fixed part;
- saliency: heavy-tailed channel scores (the square of an exponential draw), as real saliencies are;
- budget: a random 30-80% of the unpruned chain's latency; a space where no config fits is skipped.
Seed k draws space k (random.Random(k), as tests/allocation/test_knapsack.py draws its 40). Reported: the share of
spaces where the knapsack's saliency equals the optimum's, the largest and mean shortfall, and that every config
it returned was within the budget.

    python benchmarks/knapsack_optimality.py [--spaces 300]

Takes seconds. Writes benchmarks/results/knapsack_optimality.{md,json}.
"""
from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
import time
from pathlib import Path

from autoprune.allocation.knapsack import knapsack
from autoprune.allocation.saliency import Saliency
from autoprune.latency.fingerprint import this_machine
from autoprune.pruning.space import Granularity, Group, SearchSpace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import described, write_results  # noqa: E402


class ChainPredictor:
    """Latency of a chain of convolutions: each costs (input width x output width), plus a fixed part."""

    def __init__(self, space: SearchSpace, rng: random.Random):
        self.names = [g.name for g in space.groups]
        self.full = space.full_config()
        self.scale = {n: rng.uniform(0.5, 2.0) for n in self.names}

    def predict(self, config) -> float:
        widths = [3] + [config.get(n, self.full[n]) for n in self.names]
        return 0.1 + sum(self.scale[n] * widths[i] * widths[i + 1] / 1000 for i, n in enumerate(self.names))


def tiny_space(rng: random.Random, groups: int = 4) -> SearchSpace:
    granularity = Granularity(steps=4, min_keep=0.25)
    made = []
    for i in range(groups):
        channels = rng.choice([8, 12, 16])
        made.append(Group(f"g{i}", channels, granularity.choices(channels), 0.25, [f"g{i}"], []))
    return SearchSpace("tiny", [3, 8, 8], granularity, 1, 1, made)


def random_saliency(space: SearchSpace, rng: random.Random) -> Saliency:
    return Saliency("random", {g.name: sorted((rng.expovariate(1.0) ** 2 for _ in range(g.channels)), reverse=True)
                               for g in space.groups})


def worth(saliency: Saliency, config: dict) -> float:
    return sum(saliency.kept(name, kept) for name, kept in config.items())


def brute_force(space: SearchSpace, predictor: ChainPredictor, saliency: Saliency, budget_ms: float) -> float | None:
    """The most saliency any config within the budget keeps (None: no config fits)."""
    names = [g.name for g in space.groups]
    fitting = (dict(zip(names, counts)) for counts in itertools.product(*(g.choices for g in space.groups)))
    return max((worth(saliency, c) for c in fitting if predictor.predict(c) <= budget_ms), default=None)


def one_space(seed: int) -> dict | None:
    rng = random.Random(seed)
    space = tiny_space(rng)
    predictor = ChainPredictor(space, rng)
    saliency = random_saliency(space, rng)
    budget = rng.uniform(0.3, 0.8) * predictor.predict(space.full_config())
    optimum = brute_force(space, predictor, saliency, budget)
    if optimum is None:
        return None
    config = knapsack(space, predictor, saliency, budget)
    found = worth(saliency, config)
    return {"seed": seed, "optimum": optimum, "found": found, "shortfall": 1 - found / optimum,
            "exact": found >= optimum * (1 - 1e-9), "within_budget": predictor.predict(config) <= budget,
            "valid_widths": all(config[g.name] in g.choices for g in space.groups)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spaces", type=int, default=300)
    args = p.parse_args()
    start = time.time()
    solved = [r for r in map(one_space, range(args.spaces)) if r is not None]
    seconds = time.time() - start
    exact = sum(r["exact"] for r in solved)
    shortfalls = [r["shortfall"] for r in solved]
    missed = [s for s in shortfalls if s > 1e-9]
    worst = max(solved, key=lambda r: r["shortfall"])
    machine = this_machine()
    figures = {"spaces": args.spaces, "solved": len(solved), "exact": exact, "exact_share": exact / len(solved),
               "worst_shortfall": worst["shortfall"], "worst_seed": worst["seed"],
               "mean_shortfall_when_missed": statistics.fmean(missed) if missed else 0.0,
               "all_within_budget": all(r["within_budget"] for r in solved),
               "all_valid_widths": all(r["valid_widths"] for r in solved), "seconds": round(seconds, 1)}
    lines = ["# The knapsack against brute force on random tiny spaces", "",
             f"Written by `benchmarks/knapsack_optimality.py` on {described(machine)} in {seconds:.1f} s (its "
             f"docstring has the protocol): {args.spaces} random chains of 4 convolutions (seeds 0-{args.spaces - 1}), "
             f"{len(solved)} with a config within their budget.", "",
             "| spaces solved | knapsack = optimum | largest shortfall | mean shortfall where short | "
             "every pick within budget |",
             "|---|---|---|---|---|",
             f"| {len(solved)} | {exact} ({exact / len(solved):.1%}) | {worst['shortfall']:.2%} of saliency (seed "
             f"{worst['seed']}) | {figures['mean_shortfall_when_missed']:.2%} | "
             f"{'yes' if figures['all_within_budget'] and figures['all_valid_widths'] else 'NO'} |"]
    short = [{"seed": r["seed"], "shortfall": round(r["shortfall"], 6)} for r in solved if r["shortfall"] > 1e-9]
    write_results("knapsack_optimality", {"machine": machine, **figures, "short": short}, lines)


if __name__ == "__main__":
    main()
