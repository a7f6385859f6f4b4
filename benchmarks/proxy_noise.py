"""How much of a search's pick is its proxy's own noise?

A search scores each candidate once, with one draw of the proxy's randomness (its split of the data into
proxy-train and proxy-val, its batch order), and picks the highest score. If a candidate's score moves between
draws as much as the best candidates' scores differ, the pick is a draw among them. Protocol:
 1. each RUN (a search's output folder) is reopened as export reopens it (same settings, model, table, saliency);
    without RUN, the two searches of search_quality's protocol at --budget (jpeg_protocol.py: the default search
    from the JPEG base, seeds 0 and 1) are made into --state first;
 2. its --top candidates by the score of the ladder's last stage (one per distinct config), and its starting points,
    are scored again by that stage with --repeats other draws: the search's seed + 1..repeats for the data split and
    the proxy (so proxy-val is other images of the same source each time);
 3. per candidate, the mean and standard deviation of the re-scores; per run, the pooled within-candidate standard
    deviation against the standard deviation of the searched (not starting) candidates' means, how often the search's pick scores highest
    in a draw, and where it ranks by its mean.
Every score is kept in --state (a killed run resumes). Writes benchmarks/results/proxy_noise.{md,json}.

    python benchmarks/proxy_noise.py [RUN ...] [--top 8] [--repeats 4] [--state DIR]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import optuna
import torch

from autoprune.data.sources import load_data
from autoprune.latency.fingerprint import this_machine
from autoprune.training.proxies import make_ladder
from autoprune.study import reopen
from autoprune.study.result import is_start

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Pieces, add_state_argument, state_dir, write_results  # noqa: E402
from jpeg_protocol import add_jpeg_argument, jpeg_data, make_base, searched  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", help="search output folders (each holds study.db); none: the protocol's two "
                   "searches, made into --state")
    p.add_argument("--budget", default="0.5x", help="the protocol's searches' budget (without RUN)")
    p.add_argument("--top", type=int, default=8, help="candidates per run, by their search score")
    p.add_argument("--repeats", type=int, default=4, help="other draws of the proxy's randomness per candidate")
    add_jpeg_argument(p)
    add_state_argument(p, "proxy_noise")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def candidates(study: optuna.Study, last_stage: str, starts: int, top: int) -> list[dict]:
    """The run's starting points and its `top` best distinct configs scored by the last stage, best first."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
            and t.user_attrs.get("fidelity") == last_stage]
    done.sort(key=lambda t: (-t.value, t.number))
    chosen, seen = [], set()
    for t in sorted(study.trials[:starts], key=lambda t: t.number) + done:
        key = tuple(sorted(t.user_attrs.get("config", {}).items()))
        if not key or key in seen or (t.number >= starts and len(chosen) >= starts + top):
            continue
        seen.add(key)
        chosen.append({"trial": t.number, "start": t.number < starts, "config": dict(key),
                       "search_score": t.user_attrs.get("proxy_accuracy") if t.user_attrs.get("fidelity") == last_stage else None})
    return chosen


def score_run(run: str, args, pieces: Pieces) -> dict:
    study, lanes = reopen(run)
    (ctx,) = lanes.values()  # the protocol's searches are float32's alone
    settings = ctx.settings
    starts = sum(is_start(t) for t in study.trials)
    stage = make_ladder(settings.proxy)[-1].name
    rows = candidates(study, stage, starts, args.top)
    pick = max((r for r in rows if r["search_score"] is not None), key=lambda r: r["search_score"])
    draws = {}
    for r in range(1, args.repeats + 1):
        seed = settings.seed + r
        data = load_data(settings.data, ctx.loaded, seed=seed)
        proxy = make_ladder(settings.proxy, seed, ctx.ladder[-1].precision)[-1]
        for row in rows:
            key = f"{Path(run).resolve()}/{row['trial']}/{seed}"
            score = pieces.get(key, lambda: proxy.evaluate(ctx.prune(row["config"])[0], data, ctx.teacher).accuracy)
            draws.setdefault(row["trial"], []).append(score)
    for row in rows:
        row["rescores"] = draws[row["trial"]]
        row["mean"] = statistics.fmean(row["rescores"])
        row["sd"] = statistics.stdev(row["rescores"]) if len(row["rescores"]) > 1 else float("nan")
    means = [r["mean"] for r in rows if not r["start"]]  # the starting points may lie far below: they would set it
    wins = sum(max(rows, key=lambda row: row["rescores"][i])["trial"] == pick["trial"] for i in range(args.repeats))
    by_mean = sorted(rows, key=lambda r: -r["mean"])
    return {"run": run, "settings": {"budget": settings.budget, "seed": settings.seed, "data": settings.data,
                                     "proxy": settings.proxy},
            "stage": stage, "pick": pick["trial"], "candidates": rows,
            "within_sd": statistics.fmean(r["sd"] ** 2 for r in rows) ** 0.5,
            "between_sd": statistics.stdev(means), "pick_wins": wins,
            "pick_rank_by_mean": [r["trial"] for r in by_mean].index(pick["trial"]) + 1}


def protocol_searches(budget: str, state: Path, pieces: Pieces, jpeg_source: str) -> list[str]:
    """search_quality's two searches at `budget` (seeds 0 and 1, default settings, from the JPEG base), made here."""
    base_path = state / "base.pt"
    if not base_path.exists():
        make_base(*jpeg_data(jpeg_source, state, 0), base_path)
    outs = [state / f"search-{budget}-seed{seed}" for seed in (0, 1)]
    for seed, out in enumerate(outs):
        pieces.get(f"search/{out.name}", lambda: {k: v for k, v in searched(
            out, budget=budget, weights=str(base_path), seed=seed, dtype="float32").items() if k != "front"})
    return [str(out) for out in outs]


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    state = state_dir(args.state, "proxy_noise")
    pieces = Pieces(state / "scores.json")
    runs = args.runs or protocol_searches(args.budget, state, pieces, args.jpeg)
    results = [score_run(run, args, pieces) for run in runs]
    cpu = this_machine()["cpu"]
    lines = ["# Proxy noise: how much of a search's pick is its proxy's own noise", "",
             f"Written by `benchmarks/proxy_noise.py` ({args.top} best candidates of each run and its starting points, "
             f"each scored again with {args.repeats} other draws of the data split and the proxy's batch order; "
             f"{cpu}, {args.threads} thread{'s' if args.threads > 1 else ''}). Scores are top-1 on proxy-val.", ""]
    for res in results:
        s = res["settings"]
        lines += [f"## {res['run']} (budget {s['budget']}, seed {s['seed']}, data {s['data']}, ladder {s['proxy']})", "",
                  f"Within one candidate, the draws' standard deviation {100 * res['within_sd']:.2f} points (pooled); "
                  f"between the searched candidates' means {100 * res['between_sd']:.2f} points. The search's pick (trial "
                  f"{res['pick']}) scores highest in {res['pick_wins']} of {args.repeats} draws and ranks "
                  f"{res['pick_rank_by_mean']} of {len(res['candidates'])} by its mean.", "",
                  "| trial | starting point | search score | re-scores | mean | sd |", "|---|---|---|---|---|---|"]
        for r in res["candidates"]:
            search = "-" if r["search_score"] is None else f"{100 * r['search_score']:.2f}"
            lines.append(f"| {r['trial']} | {'yes' if r['start'] else ''} | {search} | "
                         f"{' '.join(f'{100 * x:.2f}' for x in r['rescores'])} | {100 * r['mean']:.2f} | {100 * r['sd']:.2f} |")
        lines.append("")
    write_results("proxy_noise", {"top": args.top, "repeats": args.repeats, "cpu": cpu, "runs": results}, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
