"""Does removing whole residual blocks beside channels (--depth) give better models than widths alone, at equal
measured latency, after a real fine-tune?

Protocol (cifar:resnet56, the JPEG protocol of jpeg_protocol.py; every finished piece kept in --state/pieces.json,
every fine-tune checkpointed, so a stopped run goes on where it was):
 1. the base: the shipped model fine-tuned --base-epochs on the JPEG train set (or --base-weights);
 2. per budget (a share of the unpruned model's latency, default 0.35x and 0.25x), four methods on one table (this
    machine's own, profiled on first use and copied into --state, so every method names the same one):
    - width search / depth+width search: `autoprune.search` with the package's defaults (the ladder evaluator, its
      trials), seed 0, without and with depth; the pick is the front's most accurate member;
    - knapsack / knapsack, depth+width: the one-shot latency-saliency knapsack (HALP's importance) on the width space
      and on the space with the blocks (where a block's saliency is the Taylor term of its branch's last batch norm);
 3. matched by measurement: each method's candidates at 15 descending targets from its own (a pick's widths
    repaired down the table's staircase, the knapsack solved again), all timed in one run of the independent harness
    (harness.py: fresh processes, shuffled, --passes passes) beside 5 copies of the unpruned model; each method's
    widest candidate whose measured share of the unpruned model is at or under the budget is taken;
 4. each taken model pruned one-shot from the base (the channels the knapsack's saliency values least, the removed
    blocks replaced by their shortcut) and fine-tuned --ft-epochs (3) on the JPEG train set with each of --ft-seeds,
    then top-1 on all 10,000 JPEG test images.
Writes benchmarks/results/depth_vs_width.{md,json}.

    python benchmarks/depth_vs_width.py [--budgets 0.35 0.25] [--ft-seeds 0 1] [--state DIR]

On 2 cores: a search about 5-10 minutes, a timing run about 6 minutes, a fine-tune about 16 minutes (4 methods x 2
budgets x 2 seeds: about 4.5 hours in all).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from autoprune.allocation.rules import one_shot_knapsack
from autoprune.latency.fingerprint import this_machine
from autoprune.study import reopen
from autoprune.study.context import build_context
from autoprune.study.evaluators import LADDER
from autoprune.study.settings import SearchSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Pieces, add_state_argument, described, state_dir, write_results  # noqa: E402
from harness import UNPRUNED_COPIES, split_reference, timed_beside  # noqa: E402
from jpeg_protocol import (BASE_EPOCHS, FT_EPOCHS, MODEL, add_jpeg_argument, digest, jpeg_data, jpeg_folder,  # noqa: E402
                           make_base, searched, tuned_top1)
from search_quality import TARGET_STEPS, ladder  # noqa: E402

NAME = "depth_vs_width"
SEARCHES = {"width search": False, "depth+width search": True}
KNAPSACKS = {"knapsack": False, "knapsack, depth+width": True}
METHODS = (*SEARCHES, *KNAPSACKS)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_jpeg_argument(p)
    add_state_argument(p, NAME)
    p.add_argument("--budgets", type=float, nargs="+", default=[0.35, 0.25])
    p.add_argument("--base-weights", default=None, help="skip step 1 and start from these weights")
    p.add_argument("--base-epochs", type=float, default=BASE_EPOCHS)
    p.add_argument("--ft-epochs", type=float, default=FT_EPOCHS)
    p.add_argument("--ft-seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--passes", type=int, default=61)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-seconds", type=float, default=float("inf"), help="start no new piece after this")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    state = state_dir(args.state, NAME)
    pieces = Pieces(state / "pieces.json", args.max_seconds)
    shipped, jpeg = jpeg_data(args.jpeg, state, args.seed)
    data = f"imagefolder:{jpeg_folder(args.jpeg, state)}"
    base_path = Path(args.base_weights) if args.base_weights else state / "base.pt"
    base = make_base(shipped, jpeg, base_path, args.base_epochs, args.seed, state / "base.ckpt")
    table = state / "table.json"
    if not table.exists():  # this machine's own, as a default search profiles it; every method then names this copy
        shutil.copyfile(build_context(SearchSettings(weights=str(base_path), evaluator=LADDER)).predictor.table.path,
                        table)
    results, machine = {}, this_machine()
    for share in args.budgets:
        budget = f"{share:g}x"
        settings = dict(model=MODEL, weights=str(base_path), data=data, table=str(table), budget=budget,
                        seed=args.seed, evaluator=LADDER)
        ladders, contexts = {}, {}
        for name, depth in SEARCHES.items():
            out, store = state / f"search-{budget}-{'depth' if depth else 'width'}", None
            found = pieces.get(f"{budget}/{name}", lambda: searched(out, depth=depth, **settings))
            study, lanes = reopen(out, store)
            contexts[name] = context = next(iter(lanes.values()))
            ladders[name] = ladder(study.trials[found["front"][0]["trial"]], context)
        for name, depth in KNAPSACKS.items():
            ctx = contexts["depth+width search" if depth else "width search"]
            ladders[name] = (ctx, lambda target, ctx=ctx: one_shot_knapsack(ctx.widths, ctx.predictor, ctx.saliency,
                                                                             target), ctx.target_ms)
        rows = {}
        for name, (ctx, make, widest) in ladders.items():
            rows[name] = [(ctx, make(step * widest)) for step in TARGET_STEPS if step * widest >= ctx.min_ms]
        flat = [(name, ctx, config) for name, rs in rows.items() for ctx, config in rs]
        widths = digest([config for _, _, config in flat])

        def timing():
            models = [ctx.prune(config)[0] for _, ctx, config in flat]
            return {**timed_beside(base.model, models, base.example_input(), args.passes, UNPRUNED_COPIES),
                    "machine": this_machine(), "widths": widths}

        if pieces.get(f"{budget}/timing", timing).get("widths") != widths:
            pieces.drop(f"{budget}/timing")
        timed = pieces.get(f"{budget}/timing", timing)
        unpruned_ms, shares = split_reference(timed)
        i = 0
        for name, rs in rows.items():
            measured = shares[i:i + len(rs)]
            i += len(rs)
            j = next((k for k, s in enumerate(measured) if s <= share), int(np.argmin(measured)))
            ctx, config = rs[j]
            top1 = []
            for ft_seed in args.ft_seeds:
                key = digest(config, ft_seed, args.ft_epochs)
                top1.append(pieces.get(f"{budget}/tuned/{key}", lambda: tuned_top1(
                    ctx.prune(config)[0], jpeg, args.ft_epochs, ft_seed, state / f"ft-{key}.ckpt",
                    f"{name} at {budget}")[1])["top1"])
            results[f"{budget}/{name}"] = {"budget": budget, "method": name, "measured_share": measured[j],
                                           "measured_ms": measured[j] * unpruned_ms, "top1": top1, "config": config,
                                           "blocks_removed": len(ctx.space.removed_blocks(config)),
                                           "predicted_ms": ctx.predictor.predict(config)}
        results[f"{budget}/timing"] = {"unpruned_measured_ms": unpruned_ms, "load": timed["load"],
                                       "passes": len(timed["runs"]), "machine": timed.get("machine", machine)}
    lines = [f"# Depth with width against width alone: {MODEL}", "",
             f"Written by `benchmarks/depth_vs_width.py` on {described(machine)} (its docstring has the protocol). "
             f"Each model the widest of its method's candidates measured at or under the budget by the independent "
             f"harness, fine-tuned {args.ft_epochs:g} epochs from the base (seeds {', '.join(map(str, args.ft_seeds))}),"
             " top-1 on all 10,000 JPEG test images.", "",
             "| budget | method | measured share | blocks removed | top-1 per seed | mean |", "|---|---|---|---|---|---|"]
    for key, r in results.items():
        if "method" in r:
            lines.append(f"| {r['budget']} | {r['method']} | {r['measured_share']:.3f} | {r['blocks_removed']} | "
                         + ", ".join(f"{100 * t:.2f}%" for t in r["top1"]) + f" | {100 * np.mean(r['top1']):.2f}% |")
    write_results(NAME, {"machine": machine, "settings": vars(args), "results": results}, lines)


if __name__ == "__main__":
    main()
