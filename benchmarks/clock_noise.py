"""How far apart does the search's clock put one config in fresh processes, and which estimate of its share holds?

A search fitted to this machine's clock (autoprune/study/timing.py) times each trial's config beside the unpruned
model in one fresh runner process and takes its share of it. On the 2-core VMs here each process runs at its own
speed level and the speed moves within one, so how the share is taken matters. This times two configs of the
default search (its two starting points at the 0.5x budget) beside the unpruned model, --calls times each in fresh
processes, at two settings of rounds x runs per round, and from the same runs reports two estimates:

- ratio of medians:  the config's median over rounds of its round medians, over the unpruned model's (the clock
                     before this release);
- median of ratios:  the median over rounds of the two models' ratio within a round (latency.measure_shares,
                     the clock now).

    python benchmarks/clock_noise.py [--calls 6]

No timing starts while the machine is loaded (harness.wait_until_quiet). Writes benchmarks/results/clock_noise.json/.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from autoprune.latency import backends
from autoprune.latency.fingerprint import this_machine
from autoprune.latency.measure import round_by_round_share
from autoprune.allocation.rules import starting_configs
from autoprune.study.context import build_context
from autoprune.study.settings import SearchSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import described, write_results  # noqa: E402
from harness import wait_until_quiet  # noqa: E402

SETTINGS = {"3 x 20": (3, 20), "12 x 5": (12, 5)}  # rounds x runs per round: the clock before, the clock now


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=6, help="fresh runner processes per setting")
    p.add_argument("--budget", default="0.5x")
    args = p.parse_args()
    ctx = build_context(SearchSettings(budget=args.budget, evaluator="ladder"))  # nothing is scored
    table = ctx.predictor.table
    starts = starting_configs(ctx.widths, ctx.predictor, ctx.saliency, ctx.target_ms)
    models = [ctx.loaded.model] + [ctx.prune(c)[0] for c in starts.values()]
    backend = backends.get_backend(table.backend, table.precision)
    load = wait_until_quiet()
    shares = {setting: {name: {"ratio of medians": [], "median of ratios": []} for name in starts}
              for setting in SETTINGS}
    for _ in range(args.calls):
        for setting, (rounds, per_round) in SETTINGS.items():  # alternated, so a drift of the machine hits both
            stats = backend.time_models(models, ctx.loaded.example_input(table.batch), table.threads, rounds,
                                        per_round, table.precision)
            reference = stats[0]
            for name, s in zip(starts, stats[1:]):
                shares[setting][name]["ratio of medians"].append(s["ms"] / reference["ms"])
                shares[setting][name]["median of ratios"].append(round_by_round_share(s, reference))
    machine = this_machine()
    lines = ["# Clock noise: one config's share of the unpruned model in fresh processes", "",
             f"Written by `benchmarks/clock_noise.py`. {described(machine)}, {table.backend}, {table.threads} thread(s), batch {table.batch}; load "
             f"{load:.2f} when started; {args.calls} fresh processes per setting, the settings alternated. Configs: the "
             f"default search's starting points at {args.budget} (knapsack target {ctx.target_ms:.3f} ms predicted).", "",
             "| setting | config | estimate | min | median | max | range / median |", "|---|---|---|---|---|---|---|"]
    for setting, by_config in shares.items():
        for name, by_estimate in by_config.items():
            for estimate, values in by_estimate.items():
                mid = statistics.median(values)
                lines.append(f"| {setting} | {name} | {estimate} | {min(values):.3f} | {mid:.3f} | {max(values):.3f} | "
                             f"{(max(values) - min(values)) / mid:.1%} |")
    write_results("clock_noise", {"machine": machine, "load": load, "calls": args.calls, "budget": args.budget,
                                  "configs": starts, "shares": shares}, lines)


if __name__ == "__main__":
    main()
