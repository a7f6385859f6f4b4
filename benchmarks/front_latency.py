"""Do a search's front members run within its budget on this machine? Timed by the independent harness
(harness.py: a fresh process per pass that imports only onnxruntime and numpy; 10 warm-up runs, the median of 30
consecutive runs, shuffled order), not by autoprune's own timers.

    python benchmarks/front_latency.py [RUN] [--passes 5] [--budget 0.5x] [--state DIR]

RUN is a search's output folder (`autoprune search --out RUN`); without it, the default search (`autoprune search
--budget BUDGET`: the embedded cifar:resnet56, this machine's own table) is run into --state first (resumed there).

The unpruned float32 model and every front member (its pruned model in front/, in its precision: an int8 member is
quantised as ORT's static quantisation makes it) are exported to ONNX and timed together in each pass; a model's
latency is the median over passes. Each member is compared with the budget in ms (as the
search computed it from its table) and, for a relative budget, with the budget's share of the unpruned model's
measured latency. Writes benchmarks/results/front_latency.{md,json} with the CPU model and ISA flags.
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import autoprune
from autoprune.latency.fingerprint import this_machine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_state_argument, described, state_dir, write_results  # noqa: E402
from harness import time_independently  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="?", help="a search's run directory (default: the default search, made in --state)")
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--budget", default="0.5x", help="the default search's budget (without RUN)")
    p.add_argument("--share", type=float, default=None, help="the budget's share of the unpruned model (0.5x: 0.5)")
    add_state_argument(p, "front_latency")
    args = p.parse_args()
    if args.run is None:
        args.run = str(state_dir(args.state, "front_latency") / f"search-{args.budget}")
        if not (Path(args.run) / "pareto.json").is_file():  # written when the search is done
            autoprune.search(budget=args.budget, out=args.run)  # a stopped one resumes
    result = autoprune.pareto(args.run)
    share = args.share if args.share is not None else result.budget_ms / result.unpruned_ms
    loaded = autoprune.api.load(result.extra["model"])
    example = loaded.example_input()
    models = [loaded.model] + [autoprune.load_pruned(Path(args.run) / "front" / Path(m.model_path).name)
                               for m in result.front]  # the front stores paths as the search was given them
    measured = time_independently(models, example, args.passes, ["float32"] + [m.dtype for m in result.front])
    unpruned = measured[0]
    rows = []
    for m, ms in zip(result.front, measured[1:]):
        rows.append({"trial": m.trial, "dtype": m.dtype, "predicted_ms": round(m.predicted_ms, 4),
                     "measured_ms": round(ms, 4),
                     "budget_ms": round(result.budget_ms, 4), "share_of_unpruned": round(ms / unpruned, 4),
                     "within_budget_ms": ms <= result.budget_ms, "within_share": ms / unpruned <= share})
    machine = {**this_machine(), "platform": platform.platform()}
    out = {"machine": machine, "run": args.run, "table": result.extra.get("table"), "passes": args.passes,
           "budget_ms": result.budget_ms, "share": share, "unpruned_predicted_ms": result.unpruned_ms,
           "unpruned_measured_ms": round(unpruned, 4), "front": rows}
    lines = [f"# Front latency on {described(machine)}", "",
             f"Written by `benchmarks/front_latency.py {args.run}` ({args.passes} harness passes). Table: "
             f"`{result.extra.get('table')}`. Budget {result.budget_ms:.3f} ms = {share:g} x the unpruned model's "
             f"predicted {result.unpruned_ms:.3f} ms; the unpruned model measured {unpruned:.3f} ms here.", "",
             "| trial | precision | predicted ms | measured ms | error | measured / unpruned float32 measured | "
             "within budget ms | within the share |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['trial']} | {r['dtype']} | {r['predicted_ms']:.3f} | {r['measured_ms']:.3f} | "
              f"{100 * (r['predicted_ms'] / r['measured_ms'] - 1):+.1f}% | {r['share_of_unpruned']:.3f} | "
              f"{'yes' if r['within_budget_ms'] else 'NO'} | {'yes' if r['within_share'] else 'NO'} |" for r in rows]
    write_results("front_latency", out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
