"""Does the search's proxy rank the models search_quality fine-tuned the way their 3-epoch truths do, budget by budget?

search_quality.py fine-tunes each method's chosen model for 3 epochs and tests it on all 10,000 JPEG test images:
the most expensive truths this project has. This scores the same widths with proxies, as the search would (each
from the same base, on the default search's proxy data), and ranks them against those truths per budget (Kendall's
tau): whether the search's score still tells models apart at a deep budget, where its models keep few channels.

- the rows: every one-shot method's model of the search_quality reports given (the progressive rows' truths come
  from training while pruning, which no proxy of a one-shot model predicts), one per distinct config; by default the
  committed report and commit 64aa097's run's (benchmarks/results/search_quality_64aa097.json);
- the base they were pruned from: made into --state by search_quality's protocol (jpeg_protocol.py: the shipped
  weights fine-tuned on the JPEG train set with the first report's settings), or --base-weights;
- channels: the searches' own choice (the knapsack's saliency) for widths in the search's space; the others
  (uniform L1, global magnitude: odd widths) keep their largest-L1 filters, as those rules do;
- each proxy scored with --seeds draws (batch norm batches and batch order), their mean ranked.

    python benchmarks/proxy_vs_truth.py [--results FILE...] [--proxies adaptive-bn finetune:20] [--seeds 1] [--state DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from autoprune.assets import shipped_table_for
from autoprune.errors import AutopruneError
from autoprune.latency.fingerprint import this_machine
from autoprune.pruning.prune import prune
from autoprune.training.proxies import make_proxy
from autoprune.pruning.space import Granularity, build_space
from autoprune.study.context import build_context
from autoprune.study.settings import SearchSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, Pieces, add_state_argument, described, state_dir, write_results  # noqa: E402
from jpeg_protocol import BASE_EPOCHS, MODEL, add_jpeg_argument, jpeg_data, make_base, one_shot_rows  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", nargs="+", help="search_quality reports (their one-shot rows)",
                   default=[str(RESULTS / "search_quality_64aa097.json"), str(RESULTS / "search_quality.json")])
    add_jpeg_argument(p)
    add_state_argument(p, "proxy_vs_truth")
    p.add_argument("--base-weights", default=None,
                   help="the base the rows were pruned from (default: made into --state)")
    p.add_argument("--proxies", nargs="+", default=["adaptive-bn", "finetune:20", "finetune:100", "finetune:300"])
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    state = state_dir(args.state, "proxy_vs_truth")
    settings = json.loads(Path(args.results[0]).read_text())["settings"]
    base_path = Path(args.base_weights) if args.base_weights else state / "base.pt"
    if not base_path.exists():
        shipped, jpeg = jpeg_data(args.jpeg, state, settings["seed"])
        make_base(shipped, jpeg, base_path, settings.get("base_epochs", BASE_EPOCHS), settings["seed"])
    # The table sets no channel: the search's saliency does (the shipped table spares profiling this machine).
    ctx = build_context(SearchSettings(model=MODEL, weights=str(base_path), table=str(shipped_table_for(MODEL)),
                                       evaluator="ladder"))
    odd_widths = build_space(ctx.loaded, Granularity(multiple_of=1, min_keep=0.01))
    pieces = Pieces(state / "pieces.json")
    rows = one_shot_rows(args.results)
    machine = this_machine()
    lines = ["# Proxy against search_quality's truths", "",
             f"Written by `benchmarks/proxy_vs_truth.py` on {described(machine)}, {args.threads} thread(s), from "
             f"{', '.join(Path(p).name for p in args.results)}: each "
             "one-shot model's 3-epoch test top-1 (all 10,000 JPEG test images) against the proxies' scores on the "
             f"default search's proxy-val (mean of {args.seeds} draw(s)).", ""]
    summary = {}
    for budget, budget_rows in sorted(rows.items(), key=lambda kv: -float(kv[0].rstrip("x"))):
        for row in budget_rows:
            try:
                model = ctx.prune(row["config"])[0]
            except AutopruneError:  # widths outside the search's space
                model = prune(ctx.loaded.model, odd_widths, row["config"])
            for proxy in args.proxies:
                draws = [pieces.get(json.dumps([row["config"], proxy, seed], sort_keys=True),
                                    lambda: make_proxy(proxy, seed).evaluate(model, ctx.data).accuracy)
                         for seed in range(args.seeds)]
                row[proxy] = float(np.mean(draws))
                print(f"{budget} {row['label']}: {proxy} {row[proxy]:.4f} (truth {row['top1']:.4f})", flush=True)
        truths = [r["top1"] for r in budget_rows]
        summary[budget] = {p: float(stats.kendalltau(truths, [r[p] for r in budget_rows])[0]) for p in args.proxies}
        lines += [f"## {budget}: {len(budget_rows)} models, truths {100 * min(truths):.2f}-{100 * max(truths):.2f}%", "",
                  "| model | measured share | truth | " + " | ".join(args.proxies) + " |",
                  "|---|---|---|" + "---|" * len(args.proxies)]
        lines += [f"| {r['label']} | {r['share']:.3f} | {100 * r['top1']:.2f}% | "
                  + " | ".join(f"{100 * r[p]:.2f}%" for p in args.proxies) + " |"
                  for r in sorted(budget_rows, key=lambda r: -r["top1"])]
        lines += ["", "Kendall's tau against the truth: "
                  + ", ".join(f"{p} {t:+.3f}" for p, t in summary[budget].items()) + ".", ""]
    write_results("proxy_vs_truth", {"machine": machine, "settings": vars(args), "tau": summary, "rows": rows}, lines)


if __name__ == "__main__":
    main()
