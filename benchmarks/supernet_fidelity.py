"""Does a supernet, fine-tuned once, rank candidate widths the way their 3-epoch fine-tunes do?

The first step of the weight-shared evaluator (autoprune/training/supernet.py): before a search is built on it,
its score must rank models like their truths. The truths are the most expensive this project has:
search_quality.py's one-shot models, each pruned from the same base, fine-tuned 3 epochs on the JPEG train set
and tested on all 10,000 JPEG test images (one per distinct config and budget, from the committed reports given
by --results; the progressive rows and the slices are left out, their truths start from other weights), and
--extra random points of the width search per budget (its target at the budget's share of the unpruned model on the
shipped table), pruned one-shot from the base by the knapsack's criterion and fine-tuned here alike.

- the base: the shipped ResNet-56 fine-tuned on the JPEG train set by search_quality's protocol (jpeg_protocol.py),
  made into --state, or --base-weights;
- the supernet: the one a default search from the base on the JPEG train set trains (`--evaluator supernet`:
  the JPEG proxy-train split, the 1,000 proxy-val images never trained on; --epochs passes, --samples drawn configs
  a step besides the widest and the narrowest, channels ordered by HALP's importance), from the package's supernet
  cache (~/.cache/autoprune/supernets), so a second run, or search_quality.py's seed-0 search on the same unpacked
  folder (--jpeg), trains nothing;
- its score of a config: the config's slice, batch norms re-estimated on 4 proxy-train batches, top-1 on proxy-val;
- beside it, on the same data: adaptive-bn (the config pruned from the base by L1, batch norms re-estimated, top-1
  on proxy-val), the cheap ladder's first stage;
- per budget, Kendall's tau of each score against the truths; the targets (issue 37): tau >= 0.85 at 0.5x and
  >= 0.8 at 0.35x, over at least 12 configs;
- with --test-scores, the slices also scored on all 10,000 test images (the truths' own: a diagnostic of how much
  of the ranking the 1,000 proxy-val images lose to sampling noise, about 1.5 points of top-1 at 67%);
- with --slice-truths, each config's slice of the supernet fine-tuned like the truths (3 epochs, all 10,000 JPEG
  test images): the truth of a model exported from the supernet, which its score must rank where the search
  exports from it (Kendall's tau of the supernet's score against it, beside the one-shot truths');
- the truths' own noise: the reports' models fine-tuned twice (seed and seed+1) give the per-fine-tune standard
  deviation; the ceiling is the median tau, over 2,000 draws of that noise, of a scorer that knows every config's
  mean exactly (the truths taken as the means) against one noisy fine-tune of each: no score can expect more.

    python benchmarks/supernet_fidelity.py [--epochs 1] [--samples 2] [--draws stages] [--extra 3] [--state DIR]
                                           [--base-weights FILE] [--slice-truths] [--budgets 0.35x]

On 2 cores: the supernet about 22 minutes an epoch, each extra truth about 16 minutes (both once: the supernet is
cached, every finished truth and score kept in --state/pieces.json), the scores about 1.5 s each.
Writes benchmarks/results/supernet_fidelity.{md,json} (another supernet: supernet_fidelity-DRAWS-Eep-Ns-BUDGETS.*,
each part only where it is not the default).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from scipy import stats

from autoprune.assets import shipped_table_for
from autoprune.latency.fingerprint import this_machine
from autoprune.models.specs import load_model
from autoprune.pruning.prune import prune
from autoprune.pruning.space import Granularity, build_space
from autoprune.study.context import build_context
from autoprune.study.evaluators import supernet_dir, supernet_identity, supernet_settings
from autoprune.study.settings import SearchSettings
from autoprune.training.proxies import make_proxy
from autoprune.training.supernet import DRAWS, Supernet, supernet_for

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, Pieces, add_state_argument, described, search_like, state_dir, write_results  # noqa: E402
from jpeg_protocol import (BASE_EPOCHS, FT_EPOCHS, MODEL, add_jpeg_argument, digest, jpeg_data,  # noqa: E402
                           jpeg_folder, make_base, one_shot_rows, tuned_top1)

TARGETS = {"0.5x": 0.85, "0.35x": 0.8}
SLICE_TRUTH = "slice, fine-tuned"
LEAST_CONFIGS = 12


class OnTest:
    """The data with its test images as the score (Supernet.score reads proxy_train and score only)."""

    def __init__(self, data):
        self.proxy_train, self.score = data.proxy_train, data.test_score


def finetune_noise(paths: list[str]) -> dict[str, tuple[float, int]]:
    """Per budget, the standard deviation of one fine-tune's top-1 from the reports' seed pairs, and the pairs'
    count: a pair's difference has twice one fine-tune's variance."""
    diffs: dict[str, list[float]] = {}
    for path in paths:
        for row in json.loads(Path(path).read_text())["results"].values():
            if len(row.get("top1") or []) == 2:
                diffs.setdefault(row["budget"], []).append(row["top1"][0] - row["top1"][1])
    return {b: ((sum(d * d for d in ds) / len(ds) / 2) ** 0.5, len(ds)) for b, ds in diffs.items()}


def noise_ceiling(truths: list[float], sd: float, draws: int = 2000, seed: int = 0) -> float:
    """The median tau of the exact means (the truths) against one noisy fine-tune of each."""
    rng = random.Random(seed)
    taus = sorted(stats.kendalltau(truths, [t + rng.gauss(0, sd) for t in truths])[0] for _ in range(draws))
    return float(taus[draws // 2])


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", nargs="+", help="search_quality reports (their one-shot rows)",
                   default=[str(RESULTS / "search_quality_64aa097.json"), str(RESULTS / "search_quality.json")])
    add_jpeg_argument(p)
    add_state_argument(p, "supernet_fidelity")
    p.add_argument("--base-weights", default=None, help="the base the rows were pruned from (default: made into --state)")
    p.add_argument("--epochs", type=float, default=1.0, help="the supernet's passes over proxy-train (1)")
    p.add_argument("--samples", type=int, default=2, help="drawn configs a step besides the widest and narrowest (2)")
    p.add_argument("--draws", default="stages", choices=DRAWS,
                   help="how the supernet's sampled configs are drawn (stages, the default, or uniform)")
    p.add_argument("--extra", type=int, default=3,
                   help="random configs per budget added to the reports' rows, each fine-tuned here (3; ~16 min each)")
    p.add_argument("--test-scores", action="store_true",
                   help="also score the slices on all 10,000 test images (a diagnostic: how much of the ranking "
                        "1,000 proxy-val images lose to sampling noise; a search never sees them)")
    p.add_argument("--slice-truths", action="store_true",
                   help="also fine-tune each config's slice of the supernet like the truths (~16 min each, kept in "
                        "--state): the truth of an export from the supernet, what its score must rank")
    p.add_argument("--budgets", nargs="+", default=None,
                   help="only these budgets (e.g. 0.35x; default: every budget of --results), reported apart")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    state = state_dir(args.state, "supernet_fidelity")
    settings = json.loads(Path(args.results[0]).read_text())["settings"]
    rows = one_shot_rows(args.results)
    if args.budgets:
        unknown = sorted(set(args.budgets) - set(rows))
        if unknown:
            sys.exit(f"supernet_fidelity: no budget {', '.join(unknown)} in --results (they hold {', '.join(sorted(rows))})")
        rows = {b: r for b, r in rows.items() if b in args.budgets}
    shipped, jpeg = jpeg_data(args.jpeg, state, settings["seed"])
    base_path = Path(args.base_weights) if args.base_weights else state / "base.pt"
    base = make_base(shipped, jpeg, base_path, settings.get("base_epochs", BASE_EPOCHS), settings["seed"]) \
        if not args.base_weights else load_model(MODEL, weights=str(base_path))
    # Uniform L1 and global magnitude keep widths outside the search's steps: any width is a slice all the same.
    any_width = build_space(base, Granularity(multiple_of=1, min_keep=0.01))
    searched_as = SearchSettings(model=MODEL, weights=str(base_path), data=f"imagefolder:{jpeg_folder(args.jpeg, state)}",
                                 table=str(shipped_table_for(MODEL)), seed=settings["seed"], evaluator="ladder",
                                 supernet_epochs=args.epochs, supernet_samples=args.samples)
    ctx = build_context(searched_as, base, jpeg)
    space = ctx.space  # the search's own: the supernet's cache key holds it
    chosen = dataclasses.replace(supernet_settings(searched_as), draws=args.draws)
    start = time.time()
    trained = supernet_for(base.model, space, jpeg, chosen, supernet_identity(searched_as, base, jpeg), supernet_dir())
    train_seconds = time.time() - start
    sliced = Supernet(trained.model, any_width, trained.order)
    pieces = Pieces(state / "pieces.json")
    ft_epochs = settings.get("ft_epochs", FT_EPOCHS)
    for budget, budget_rows in rows.items():
        # More truths than the reports hold: random points of the width search at the budget (predicted on the
        # shipped table), pruned one-shot from the base as the reports' rows were, fine-tuned alike.
        share, rng = float(budget.rstrip("x")), random.Random(f"{budget}/{settings['seed']}")
        for i in range(args.extra):
            config = search_like(ctx.widths, ctx.predictor, ctx.saliency, rng, share, share)
            key = digest(config, settings["seed"], ft_epochs)
            truth = pieces.get(f"truth/{key}", lambda: tuned_top1(
                ctx.prune(config)[0], jpeg, ft_epochs, settings["seed"], state / f"ft-{key}.ckpt",
                f"random config {i} at {budget}")[1])
            budget_rows.append({"label": f"random width-space config {i} (predicted share)", "config": config,
                                "top1": truth["top1"], "share": ctx.predictor.predict(config) / ctx.unpruned_ms})
    scorers = {
        "supernet": lambda config: sliced.score(config, jpeg),
        "adaptive-bn": lambda config: make_proxy("adaptive-bn").evaluate(prune(base.model, any_width, config), jpeg).accuracy,
    }
    if args.test_scores:
        scorers["supernet on test"] = lambda config: sliced.score(config, OnTest(jpeg))
    if args.slice_truths:
        scorers[SLICE_TRUTH] = lambda config: tuned_top1(
            sliced.slice(config), jpeg, ft_epochs, settings["seed"],
            state / f"ft-slice-{digest(config, settings['seed'], ft_epochs, asdict(chosen))}.ckpt",
            "the supernet's slice")[1]["top1"]
    machine = this_machine()
    noise = finetune_noise(args.results)
    summary, seconds, ceilings = {}, {}, {}
    lines = ["# Supernet fidelity: cifar:resnet56", "",
             f"Written by `benchmarks/supernet_fidelity.py` on {described(machine)}, {args.threads} thread(s) (its "
             f"docstring has the protocol). Supernet: {args.epochs:g} epoch(s) over the JPEG proxy-train split, "
             f"{args.samples} drawn configs a step besides the widest and the narrowest (draws: {args.draws}), trained in "
             f"{train_seconds / 60:.1f} min this run (0 if it was cached). Truths: "
             f"{', '.join(Path(p).name for p in args.results)}, 3-epoch one-shot fine-tunes, all 10,000 JPEG test "
             "images. Scores: top-1 on the 1,000 JPEG proxy-val images after batch-norm re-estimation (the supernet "
             "never trained on them; the base it starts from did, in its one epoch on the whole train set).", ""]
    for budget, budget_rows in sorted(rows.items(), key=lambda kv: -float(kv[0].rstrip("x"))):
        for row in budget_rows:
            for name, scorer in scorers.items():
                began = time.time()
                row[name] = pieces.get(json.dumps([name, row["config"], asdict(chosen)], sort_keys=True),
                                       lambda: scorer(row["config"]))
                seconds.setdefault(name, []).append(time.time() - began)
                print(f"{budget} {row['label']}: {name} {row[name]:.4f} (truth {row['top1']:.4f})", flush=True)
        truths = [r["top1"] for r in budget_rows]
        summary[budget] = {name: float(stats.kendalltau(truths, [r[name] for r in budget_rows])[0]) for name in scorers}
        target = TARGETS.get(budget)
        lines += [f"## {budget}: {len(budget_rows)} models, truths {100 * min(truths):.2f}-{100 * max(truths):.2f}%", "",
                  "| model | measured share | truth | " + " | ".join(scorers) + " |", "|---|---|---|" + "---|" * len(scorers)]
        lines += [f"| {r['label']} | {r['share']:.3f} | {100 * r['top1']:.2f}% | "
                  + " | ".join(f"{100 * r[n]:.2f}%" for n in scorers) + " |"
                  for r in sorted(budget_rows, key=lambda r: -r["top1"])]
        verdict = "" if target is None else (
            f" Target: supernet tau >= {target} over at least {LEAST_CONFIGS} configs: "
            + ("met." if summary[budget]["supernet"] >= target and len(budget_rows) >= LEAST_CONFIGS else
               f"not met ({summary[budget]['supernet']:+.3f} over {len(budget_rows)} configs)."))
        lines += ["", "Kendall's tau against the truth: " + ", ".join(f"{n} {t:+.3f}" for n, t in summary[budget].items())
                  + "." + verdict]
        if SLICE_TRUTH in scorers:
            tau = float(stats.kendalltau([r[SLICE_TRUTH] for r in budget_rows], [r["supernet"] for r in budget_rows])[0])
            summary[budget]["supernet vs " + SLICE_TRUTH] = tau
            lines += [f"The supernet's score against its slices' own fine-tunes (the truth of an export from it): tau "
                      f"{tau:+.3f}" + ("" if target is None else f" (target {target})") + "."]
        if budget in noise:
            sd, pairs = noise[budget]
            ceilings[budget] = noise_ceiling(truths, sd)
            lines += [f"The truths' noise: one fine-tune's standard deviation {100 * sd:.2f} points ({pairs} seed pairs); "
                      f"a scorer knowing every config's mean exactly would reach tau {ceilings[budget]:+.3f} against "
                      "these truths (median of 2,000 draws)."]
        lines += [""]
    lines += ["Seconds per score (median): " + ", ".join(f"{n} {sorted(s)[len(s) // 2]:.1f}" for n, s in seconds.items())
              + " (a cached score counts as 0)."]
    # Another supernet's report beside the default's: supernet_fidelity[-DRAWS][-Eep][-Ns].
    name = "supernet_fidelity" + (f"-{args.draws}" if args.draws != "stages" else "") + \
        (f"-{args.epochs:g}ep" if args.epochs != 1 else "") + (f"-{args.samples}s" if args.samples != 2 else "") + \
        ("-" + "-".join(sorted(rows)) if args.budgets else "")
    write_results(name, {"machine": machine, "settings": vars(args), "supernet": asdict(chosen),
                                        "train_seconds": train_seconds, "tau": summary, "noise": noise,
                                        "ceiling": ceilings, "rows": rows}, lines)


if __name__ == "__main__":
    main()
