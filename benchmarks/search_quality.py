"""Does the search beat the best method that needs no search, at equal measured latency, after a real fine-tune?

Protocol (the defaults are the full one; every finished piece is kept in --state/pieces.json and every fine-tune
checkpoints in --cache (default --state/cache), so a run that is stopped or hits --max-seconds continues where it was
when started again; --state holds all a run needs to go on, small enough to carry to another machine: the finished
pieces, the base weights, the table the searches use and their studies):
 1. base: the shipped cifar:resnet56 fine-tuned --base-epochs (1) on the CIFAR-10 JPEG train set, so model and
    data share one domain (or --base-weights FILE);
 2. for each budget (a share of the unpruned model's latency), the methods:
    - autoprune, and autoprune seed 1: `autoprune.search` with default settings and --seed 0 / 1 (search noise),
      or with --proxy's ladder (another ladder's run keeps its own state, by default search_quality-LADDER);
      the pick is the front's most accurate member, its knobs (the search's parameters) exported one-shot
      (export's default);
    - autoprune, progressive (and seed 1's): the same pick exported with `--schedule progressive`: the schedule
      below toward the pick's own widths (ConfigGoal), so the same model, timed as the pick;
    - best starting point: the fixed starting point of the seed-0 study that scored best (what the search
      would return if its sampler added nothing);
    - knapsack: the one-shot latency-saliency knapsack (HALP's importance, every knob at 1), the channels kept
      chosen by the same importance;
    - progressive HALP: HALP's schedule (autoprune/schedule.py, LatencyGoal: 30 knapsack events at geometric
      latency targets in the first third of the fine-tune, importance accumulated batch by batch between them,
      masked channels never revived), from the unpruned base, the same epochs as every other method;
    - uniform L1: one keep ratio for every group (any channel count), L1 filters;
    - global magnitude: torch-pruning's MetaPruner with one global L1 threshold;
 3. matched by measurement, in one pass: each method's candidates along its knob (the knapsack's latency target,
    15 rungs from the search's target (for a pick or the starting point, the target its trial was fitted to on
    this machine's clock) down to 0.58 of it, under the picks' knobs, the starting point's and the
    knapsack's; the keep ratio; the global ratio) are timed with 5 copies of the unpruned model by the latency
    benchmark's independent harness (fresh processes, shuffled, --passes, each pass kept). A first, placing pass
    finds the knapsack's rung at the budget; progressive HALP is trained at that rung's target and the next 2
    narrower ones (its widths are chosen while it trains, so its candidates are trained models), and where the
    widest of them measures more than 5% under the budget's share, fitted to this machine's clock as the searches'
    trials are: trained once more at its target times the budget's share (less 2.5%) over its share. The matching pass
    then times every method's candidates, HALP's included, with the copies: a candidate's share is the median over
    passes of its ms over the copies' median in the same pass (the machine's speed moves between passes more than
    within one), and each method's widest candidate whose share and whose ladder's trend there (a line through
    its shares against their predicted ms) are at or under the budget's share is taken. So every model is measured
    within its budget in that one pass (a model's widths set its latency, its fine-tuned weights do not). The picks
    ride the same ladder as the starting point, so the search is judged on the widths its knobs choose, not on
    where this machine's table put the budget line. The table is this machine's own (the default search's, profiled
    on first use and copied into --state, so every search of the run names the same one). Its held-out check and
    where the searches' target really sits (the knapsack ladder's trend at its widest rung) are reported: with a
    table that missed its held-out configs by a MAPE of 23%, the 0.5x fronts, at the predicted budget, measured
    0.568-0.666 of the unpruned model, so the matched rungs were widths the searches never scored;
 4. every chosen model fine-tuned alike: --ft-epochs (3) on the JPEG train set, same seed, schedule and data,
    then top-1 on all 10,000 JPEG test images (a config two methods share is trained once);
 5. a re-check: the chosen models timed again with the copies after the fine-tunes, reported beside the matching
    pass. Stepping over-budget models down pass after pass (the previous protocol) chased the machine: at 0.5x a
    second pass 1.5 hours after the first put uniform L1's same model at 0.437 of the unpruned model instead of
    0.371, and every stepped-down model higher than before;
 6. the truth's noise: autoprune's pick and the best other method fine-tuned again with seed+1, once every budget
    has its first fine-tunes; the search's noise: the two search seeds' picks; last, the progressive export's own
    noise (the seed-1 search's pick exported progressively, the seed-0 pick's progressive export with seed+1).
No timing pass starts while the machine is loaded (harness.wait_until_quiet). Writes
benchmarks/results/search_quality.{md,json,png} (another --proxy's: search_quality-LADDER.*, its state by default in
a folder of that name).

    python benchmarks/search_quality.py [--budgets 0.5 0.35] [--state DIR] [--cache DIR]
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import re
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import torch
import torch_pruning as tp

from autoprune.pruning.graph import CUSTOM_PRUNERS
from autoprune.latency.fingerprint import this_machine
from autoprune.latency.table import disturbed
from autoprune.training.proxies import DEFAULT_PROXY
from autoprune.pruning.prune import prune
from autoprune.training.schedule import ConfigGoal, LatencyGoal, progressive_finetune
from autoprune.pruning.space import Granularity, build_space
from autoprune.study import reopen
from autoprune.study.context import build_context
from autoprune.study.settings import SearchSettings
from autoprune.data.task import evaluate_top1

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, Pieces, add_state_argument, bisect, described, state_dir, write_results  # noqa: E402
from harness import UNPRUNED_COPIES, split_reference, timed_beside  # noqa: E402
from jpeg_protocol import (BASE_EPOCHS, FT_EPOCHS, MODEL, add_jpeg_argument, digest, jpeg_data,  # noqa: E402
                           make_base, searched, tuned_top1 as jpeg_tuned_top1)

SEARCHED = ("autoprune", "autoprune seed 1")
# A pick exported progressively keeps its widths: the pick's model, timed as the pick.
PROGRESSIVE_EXPORT = {f"{name}, progressive": name for name in SEARCHED}
RIVALS = ("best starting point", "knapsack", "progressive HALP", "uniform L1", "global magnitude")
METHODS = (*SEARCHED, *PROGRESSIVE_EXPORT, *RIVALS)
TIMED = [m for m in METHODS if m not in PROGRESSIVE_EXPORT]  # in the order harness runs were stored before
# The round each fine-tune runs in (before it, one is used only where a previous run stored it): every method first,
# then the repeats that measure the main comparison's noise, then the progressive export's own noise.
ROUND = {"autoprune seed 1, progressive": 2}
REPEAT_ROUND = {"autoprune, progressive": 2}  # the others' repeats: round 1
TARGET_STEPS = [1.0 - 0.03 * i for i in range(15)]  # the knapsack's target as shares of the search's target
# Progressive HALP trains at the knapsack's rung the placing pass matched and the next narrower ones: its widths
# are chosen while it trains, so its candidates are trained models (its final widths land off the knapsack's at the
# same target, either side: 0.553 against 0.542 of the unpruned model at 0.5x with an earlier table, 0.291 against
# 0.342 at 0.35x with this machine's).
HALP_RUNGS = 3
HALP_CLOSE = 0.05  # HALP's widest model this far under the line is trained once more nearer it (passes differ by ~4%)
LEAD = 1.0  # points of test top-1 the pick must win by (and by more than twice the noise)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_jpeg_argument(p)
    add_state_argument(p, "search_quality[-LADDER]")
    p.add_argument("--cache", default=None,
                   help="the unpacked images, checkpoints and the searches' outputs (default: --state/cache)")
    p.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.35])
    p.add_argument("--base-weights", default=None, help="skip step 1 and start from these weights")
    p.add_argument("--base-epochs", type=float, default=BASE_EPOCHS)
    p.add_argument("--ft-epochs", type=float, default=FT_EPOCHS)
    p.add_argument("--passes", type=int, default=61, help="independent-harness passes per timing (about 6 s each for 100 models; 21 left single rungs of a ladder +-8%% off its trend on the unsteady EPYC)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads for the fine-tunes (1: two runs side by side)")
    p.add_argument("--max-seconds", type=float, default=float("inf"), help="start no new piece after this")
    p.add_argument("--proxy", default=DEFAULT_PROXY,
                   help="the searches' proxy ladder (another ladder's run: its own state, by default)")
    return p.parse_args()


def global_magnitude(model, space, loaded, ratio: float):
    pruned = copy.deepcopy(model).eval()
    pruner = tp.pruner.MetaPruner(
        pruned, loaded.example_input(), importance=tp.importance.MagnitudeImportance(p=1), global_pruning=True,
        pruning_ratio=ratio, max_pruning_ratio=0.875, ignored_layers=[pruned.linear],
        customized_pruners=CUSTOM_PRUNERS,
    )
    pruner.step()
    modules = dict(pruned.named_modules())
    return pruned, {g.name: modules[g.name].out_channels for g in space.groups}


def best_start(storage: str) -> dict:
    """The starting point of the study in `storage` with the best final score, and its knobs."""
    study = optuna.load_study(study_name="autoprune", storage=storage)
    starts = [t for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)) if "fixed_params" in t.system_attrs]
    best = max(starts, key=lambda t: (t.value, -t.number))
    return {"trial": best.number, "knobs": best.params, "score": best.value,
            "starts": {t.number: t.value for t in starts}}


def fitted(trial: optuna.trial.FrozenTrial, ctx) -> dict:
    """A trial's knobs and the knapsack target they were solved at (fitted to the clock, or the search's)."""
    return {"knobs": trial.params, "target_ms": trial.user_attrs.get("target_ms", ctx.target_ms)}


def machine_table(base_path: Path, state: Path) -> Path:
    """This machine's own table, the one a default search uses (profiled on first use), copied into the run's state
    and named by every search: a run carried to another machine goes on with the latencies it started with."""
    path = state / "table.json"
    if not path.exists():
        shutil.copyfile(build_context(SearchSettings(weights=str(base_path))).predictor.table.path, path)
    return path


def report_name(proxy: str) -> str:
    """The report's name, and its state folder's by default: another ladder's run is kept beside the default's."""
    return "search_quality" + ("" if proxy == DEFAULT_PROXY else "-" + re.sub(r"[^a-z0-9-]+", "_", proxy))


class Candidates:
    """Each method's candidates along its knob, most kept first: (knob, config, model)."""

    def __init__(self, base, fine, contexts: dict, picks: dict, start: dict, share: float):
        self.rows: dict[str, list[tuple]] = {}
        ctx = contexts[0]
        # The picks' and the starting point's knobs (knob weights: the search's parameters) at descending knapsack
        # targets, each with its own study's allocation: the search is judged on the widths its knobs choose, not
        # on where the table of this machine put the budget line.
        # A trial fitted to this machine's clock starts its ladder at the target its fit found (study/timing.py).
        knobs = {**{name: (contexts[seed], picks[seed]["knobs"], picks[seed]["target_ms"])
                    for seed, name in enumerate(SEARCHED)},
                 "best starting point": (ctx, start["knobs"], start["target_ms"]), "knapsack": (ctx, {}, ctx.target_ms)}
        for name, (context, params, widest) in knobs.items():
            self.rows[name] = []
            for step in TARGET_STEPS:
                target = step * widest
                if target < context.min_ms:  # a pick fitted far under its budget: its ladder ends where widths do
                    break
                config = dataclasses.replace(context.allocation, budget_ms=target).config(params)
                self.rows[name].append((target, config, context.prune(config)[0]))
        predicted_target = share * ctx.unpruned_ms

        def uniform_at(keep: float):
            config = {g.name: max(1, round(keep * g.channels)) for g in fine.searchable}
            return config, prune(base.model, fine, config)

        # Odd widths are predicted from neighbouring kernels: the ladders reach well past the predicted match
        # (at 0.5x uniform L1's widest rung of -8..+4 points measured 0.405 of the unpruned model).
        keep = bisect(lambda k: ctx.predictor.predict(uniform_at(k)[0]) <= predicted_target, 1.0, 0.05)
        self.rows["uniform L1"] = [(k, *uniform_at(k)) for k in
                                   sorted({round(min(keep + d / 100, 1.0), 3) for d in range(-8, 15)}, reverse=True)]
        ratio = bisect(lambda r: ctx.predictor.predict(global_magnitude(base.model, ctx.space, base, r)[1])
                       <= predicted_target, 0.0, 0.875)
        self.rows["global magnitude"] = []
        for r in sorted({round(min(max(ratio + d / 100, 0.0), 0.875), 3) for d in range(-6, 15)}):
            model, config = global_magnitude(base.model, ctx.space, base, r)
            self.rows["global magnitude"].append((r, config, model))
        self.predictor = ctx.predictor

    def models(self) -> list:
        return [model for rows in self.rows.values() for _, _, model in rows]

    def matched(self, shares: list[float], share: float) -> dict[str, dict]:
        """Per method, the candidate that keeps the most while its measured share and its ladder's trend there (a
        line through the ladder's shares against their predicted ms) are both at or under `share`: a rung that
        only measured lucky is not taken (were it, a method with more rungs near the line would have more tries)."""
        chosen, i = {}, 0
        for name, rows in self.rows.items():
            measured = np.array(shares[i:i + len(rows)])
            i += len(rows)
            predicted = np.array([self.predictor.predict(config) for _, config, _ in rows])
            trend = np.polyval(np.polyfit(predicted, measured, 1), predicted) if len(rows) > 2 else measured
            fits = [j for j in range(len(rows)) if measured[j] <= share and trend[j] <= share]
            measured_fits = [j for j in range(len(rows)) if measured[j] <= share]
            j = (fits or measured_fits or [int(np.argmin(measured))])[0]
            knob, config, model = rows[j]
            chosen[name] = {"knob": knob, "config": config, "model": model, "index": j,
                            "matched_share": float(measured[j]), "trend_share": float(trend[j]),
                            "widest_share": float(measured[0]), "widest_trend_share": float(trend[0])}
        return chosen


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="kernel .* is not in the table")  # the baselines' odd widths
    state = state_dir(args.state, report_name(args.proxy))  # absolute: the studies store the base's and table's paths
    cache = Path(args.cache) if args.cache else state / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    pieces = Pieces(state / "pieces.json", args.max_seconds)
    shipped, jpeg = jpeg_data(args.jpeg, cache, args.seed)
    base_path = Path(args.base_weights) if args.base_weights else state / "base.pt"
    base = make_base(shipped, jpeg, base_path, args.base_epochs, args.seed, cache / "base.ckpt")
    fine = build_space(base, Granularity(multiple_of=1, min_keep=0.01))
    pieces.get("base_test_top1", lambda: evaluate_top1(base.model, jpeg.test))
    if pieces.get("proxy", lambda: args.proxy) != args.proxy:  # one state, one ladder: its searches are stored
        raise SystemExit(f"{state} holds a run whose searches used the ladder {pieces.done['proxy']}: give this one "
                         "another --state")

    def tuned_top1(name: str, model, config: dict, seed: int, stored_only: bool = False) -> dict | None:
        # Widths alone do not name a model: the seed-1 search's saliency keeps other channels for the same widths
        # (seed 0's models keep the key they were stored under).
        search_seed = SEARCHED.index(name) if name in SEARCHED else 0
        key = digest(config, seed, args.ft_epochs, *([f"search seed {search_seed}"] if search_seed else []))
        if stored_only:
            return pieces.done.get(f"finetune/{key}")

        return pieces.get(f"finetune/{key}", lambda: jpeg_tuned_top1(model, jpeg, args.ft_epochs, seed,
                                                                     cache / f"ft-{key}.ckpt", name)[1])

    def progressive_top1(name: str, ctx, goal, seed: int, stored_only: bool = False) -> dict | None:
        key = digest("progressive", *goal.identity().values(), seed, args.ft_epochs)
        if stored_only:
            return pieces.done.get(f"progressive/{key}")

        def run():
            start = time.time()
            print(f"{name}: progressive toward {goal.identity()} ({args.ft_epochs:g} epochs, seed {seed})", flush=True)
            tuned, config, _ = progressive_finetune(base.model, ctx.space, goal, jpeg, args.ft_epochs, seed=seed,
                                                    progress=False, checkpoint=str(cache / f"ft-{key}.ckpt"))
            return {"top1": evaluate_top1(tuned, jpeg.test), "config": config, "seconds": round(time.time() - start)}

        return pieces.get(f"progressive/{key}", run)

    def timed_with_unpruned(models: list) -> dict:  # a run carried on elsewhere says where each pass ran
        return {**timed_beside(base.model, models, base.example_input(), args.passes, UNPRUNED_COPIES),
                "machine": this_machine()}

    results, machine = {}, this_machine()
    for round_ in range(3):  # a run cut short has the main comparison
        for share in args.budgets:
            budget = f"{share:g}x"
            outs = {seed: cache / f"search-{budget}-seed{seed}" for seed in (0, 1)}
            stores = {seed: f"sqlite:///{state / f'search-{budget}-seed{seed}.db'}" for seed in (0, 1)}
            searches = {seed: pieces.get(f"{budget}/search-seed{seed}", lambda seed=seed: searched(
                outs[seed], budget=budget, storage=stores[seed], weights=str(base_path),
                table=str(machine_table(base_path, state)), seed=seed, proxy=args.proxy)) for seed in (0, 1)}
            start = pieces.get(f"{budget}/best_start", lambda: best_start(stores[0]))
            studies = {seed: reopen(outs[seed], stores[seed]) for seed in (0, 1)}
            ctx = studies[0][1]
            validation = ctx.predictor.table.model(ctx.predictor.key)["validation"]
            picks = {seed: fitted(studies[seed][0].trials[searches[seed]["front"][0]["trial"]], studies[seed][1])
                     for seed in (0, 1)}
            candidates = Candidates(base, fine, {seed: c for seed, (_, c) in studies.items()}, picks,
                                    fitted(studies[0][0].trials[start["trial"]], ctx), share)

            def candidates_timed(key: str, *depending: str) -> dict:
                """Every candidate and the unpruned copies in one harness run, stored as `key`; timed again (the
                pieces `depending` on it dropped too) where the stored run timed other candidates: another run's
                ladders, or a matching pass timed before HALP's fitted model."""
                timed = pieces.get(key, lambda: timed_with_unpruned(candidates.models()))
                if len(split_reference(timed)[1]) != len(candidates.models()):
                    pieces.drop(key, *depending)
                    timed = pieces.get(key, lambda: timed_with_unpruned(candidates.models()))
                return timed

            # The placing pass: where the knapsack's ladder meets the budget, so progressive HALP trains at that rung
            # and the next narrower ones.
            placing = candidates_timed(f"{budget}/ladder")
            knapsack_rung = candidates.matched(split_reference(placing)[1], share)["knapsack"]["index"]
            goals, halp_runs = {}, {}

            def train_halp(target: float) -> None:
                goal = LatencyGoal(ctx.predictor, target)
                halp_runs[target] = (goal, progressive_top1("progressive HALP", ctx, goal, args.seed))

            for target, _, _ in candidates.rows["knapsack"][knapsack_rung:knapsack_rung + HALP_RUNGS]:
                train_halp(target)
            # HALP fitted to this machine's clock, as each search trial is: where its widest trained model lands well
            # under the line, it is trained once more at a target moved toward the line.
            widest = max(halp_runs)
            halp_placing = pieces.get(f"{budget}/halp_placing", lambda: timed_with_unpruned(
                [prune(base.model, ctx.space, halp_runs[widest][1]["config"])]))
            widest_share = split_reference(halp_placing)[1][0]
            if widest_share < share * (1 - HALP_CLOSE):
                train_halp(widest * share * (1 - HALP_CLOSE / 2) / widest_share)
            candidates.rows["progressive HALP"] = [(target, run["config"], prune(base.model, ctx.space, run["config"]))
                                                   for target, (_, run) in sorted(halp_runs.items(), reverse=True)]
            # The matching pass: every method's candidates (HALP's trained ones included) and the unpruned copies in
            # one harness run; each method's model is chosen there, so every model is measured within the budget in
            # one pass (a model's widths, not its fine-tuned weights, set its latency).
            matching = candidates_timed(f"{budget}/matching", f"{budget}/recheck")
            unpruned_ms, shares = split_reference(matching)
            chosen = candidates.matched(shares, share)
            scores = {name: [tuned_top1(name, chosen[name]["model"], chosen[name]["config"], args.seed)]
                      for name in candidates.rows if name != "progressive HALP"}
            goals["progressive HALP"], halp = halp_runs[chosen["progressive HALP"]["knob"]]
            scores["progressive HALP"] = [halp]
            for name, pick in PROGRESSIVE_EXPORT.items():
                goals[name] = ConfigGoal(chosen[pick]["config"])
                chosen[name] = chosen[pick]
                done = progressive_top1(name, ctx, goals[name], args.seed, stored_only=round_ < ROUND.get(name, 0))
                scores[name] = [done] if done is not None else []
            # A re-check after the fine-tunes: the same models timed again, to show how far one pass is from another.
            recheck = pieces.get(f"{budget}/recheck",
                                 lambda: timed_with_unpruned([chosen[name]["model"] for name in TIMED]))
            recheck_unpruned_ms, recheck_shares = split_reference(recheck)
            rechecked = dict(zip(TIMED, recheck_shares))

            def again_with(name: str):
                if name in goals:
                    return lambda stored_only: progressive_top1(name, ctx, goals[name], args.seed + 1, stored_only)
                return lambda stored_only: tuned_top1(name, chosen[name]["model"], chosen[name]["config"],
                                                      args.seed + 1, stored_only)

            # The truth's own noise: the pick (either export) and the best of the rest, fine-tuned with another seed.
            best = max(RIVALS, key=lambda n: scores[n][0]["top1"])
            for name in ("autoprune", best, "autoprune, progressive"):
                repeat = again_with(name)(stored_only=round_ < REPEAT_ROUND.get(name, 1))
                if repeat is not None and scores[name]:
                    scores[name].append(repeat)

            for name in METHODS:
                c = chosen[name]
                results[f"{budget}/{name}"] = {
                    "budget": budget, "share": share, "method": name, "top1": [s["top1"] for s in scores[name]],
                    "measured_ms": c["matched_share"] * unpruned_ms, "measured_share": c["matched_share"],
                    "trend_share": c["trend_share"], "recheck_share": rechecked[PROGRESSIVE_EXPORT.get(name, name)],
                    "predicted_ms": ctx.predictor.predict(c["config"]), "knob": c["knob"], "config": c["config"],
                }
            results[f"{budget}/timing"] = {"unpruned_measured_ms": unpruned_ms, "load": matching["load"],
                                           "machine": matching.get("machine", machine),
                                           "recheck_machine": recheck.get("machine", machine),
                                           "passes": len(matching["runs"]),
                                           "recheck_unpruned_ms": recheck_unpruned_ms, "recheck_load": recheck["load"],
                                           "unpruned_predicted_ms": ctx.unpruned_ms, "search_target_ms": ctx.target_ms,
                                           "table": str(ctx.predictor.table.path),
                                           "table_validation": {k: validation[k] for k in
                                                                ("n", "mape_pct", "within_10pct", "kendall_tau")},
                                           "table_disturbed": disturbed(validation),
                                           # The knapsack's widest rung is at the searches' target: where the
                                           # widths they scored really sit.
                                           "search_target_share": chosen["knapsack"]["widest_trend_share"],
                                           # The searches' picks there: the widths they scored, as measured.
                                           "at_search_target": {name: {"measured": chosen[name]["widest_share"],
                                                                       "trend": chosen[name]["widest_trend_share"]}
                                                                for name in (*SEARCHED, "best starting point",
                                                                             "knapsack")},
                                           "ladders": {name: len(rows) for name, rows in candidates.rows.items()}}
            results[f"{budget}/search"] = {seed: {k: v for k, v in s.items() if k != "front"} | {
                "pick": {"trial": s["front"][0]["trial"], "knobs": picks[seed]["knobs"], "score": s["front"][0]["score"],
                         "target_ms": chosen[SEARCHED[seed]]["knob"]}} for seed, s in searches.items()}
            results[f"{budget}/search"]["best_start"] = start
            # Once every budget has its results: a report of some would overwrite the others' stored one.
            if all(f"{b:g}x/timing" in results for b in args.budgets):
                report(args, sorted(args.budgets, reverse=True), pieces.done, results, machine)


def lead(results: dict, budget: str, export: str = "") -> dict:
    """The pick's lead over the best rival when exported one-shot (`export` "") or progressively (", progressive")."""
    top1 = {m: results[f"{budget}/{m}"]["top1"] or [float("nan")] for m in METHODS}  # [] before its round
    pick, pick_seed1 = (name + export for name in SEARCHED)
    best = max(RIVALS, key=lambda m: top1[m][0])
    finetune_noise = max([abs(v[0] - v[1]) for v in top1.values() if len(v) > 1], default=float("nan"))
    search_noise = abs(top1[pick][0] - top1[pick_seed1][0])
    noise = finetune_noise + search_noise
    needed = float("nan") if np.isnan(noise) else max(LEAD / 100, 2 * noise)
    return {"pick": pick, "pick_matched_share": results[f"{budget}/{pick}"]["measured_share"],
            "best_rival": best, "lead": top1[pick][0] - top1[best][0],
            "lead_seed1": top1[pick_seed1][0] - top1[best][0], "finetune_noise": finetune_noise,
            "search_noise": search_noise, "needed": needed}


def report(args, budgets: list[float], done: dict, results: dict, machine: dict) -> None:
    pct = lambda x: "-" if np.isnan(x) else f"{100 * x:.2f}%"  # noqa: E731
    points = lambda x, form="+.2f": "not yet measured" if np.isnan(x) else f"{100 * x:{form}}"  # noqa: E731
    lines = [f"# Search quality: {MODEL}", "",
             "Written by `benchmarks/search_quality.py` (its docstring has the protocol). Base: shipped weights "
             "fine-tuned on the "
             f"JPEG train set ({pct(done['base_test_top1'])} on all 10,000 JPEG test images). Every method "
             f"fine-tuned {args.ft_epochs:g} epochs (seed {args.seed}; `seed+1`: again with seed {args.seed + 1}), "
             "top-1 on all 10,000 JPEG test images; measured by the independent harness (ORT CPU, 1 thread, batch 1, "
             f"{args.passes} passes; a model's share of the unpruned model taken pass by pass), all of a budget's "
             f"candidates and 5 copies of the unpruned model in one run. The searches' proxy ladder: {args.proxy}.", ""]
    summary = {}
    for share in budgets:
        budget = f"{share:g}x"
        timing = results[f"{budget}/timing"]
        lines += [f"## Budget {budget}: at most {share * timing['unpruned_measured_ms']:.3f} ms measured "
                  f"(unpruned {timing['unpruned_measured_ms']:.3f} ms measured, {timing['unpruned_predicted_ms']:.3f} ms "
                  f"predicted; load {timing['load']:.2f} when timed)", "",
                  f"Timed on {described(timing['machine'])}" + ("." if timing["recheck_machine"] == timing["machine"]
                                                                 else f"; re-checked on {described(timing['recheck_machine'])}."),
                  "",
                  f"Table: the searching machine's own ({Path(timing['table']).name}); its {timing['table_validation']['n']} "
                  f"held-out configs: MAPE {timing['table_validation']['mape_pct']:.2f}%, "
                  f"{timing['table_validation']['within_10pct']:.0%} within +-10%, Kendall tau "
                  f"{timing['table_validation']['kendall_tau']:.3f}"
                  + ("; it fails the held-out check (over 8% MAPE or under 90% within +-10%) after the cache's "
                     "profiles, so this machine's speed moves while it is timed" if timing["table_disturbed"] else "")
                  + f". The searches' target ({timing['search_target_ms']:.3f} ms predicted) measures "
                  f"{timing['search_target_share']:.3f} of the unpruned model (the knapsack ladder's trend there); "
                  "the widest rung of each ladder, at that target, measures "
                  + ", ".join(f"{name} {at['measured']:.3f} (trend {at['trend']:.3f})"
                              for name, at in timing["at_search_target"].items()) + ".", "",
                  f"Matching pass: every method's candidates ({', '.join(f'{n} {k}' for n, k in timing['ladders'].items())}; "
                  f"progressive HALP's are trained at the knapsack's {HALP_RUNGS} rungs nearest the line and, where the "
                  f"widest of them measured over {HALP_CLOSE:.0%} under it, once more at a target moved toward it) and "
                  f"{UNPRUNED_COPIES} copies of the unpruned model timed together; each method's widest candidate whose "
                  f"share and whose ladder's trend there are within {share:g}x is taken. Re-check: the chosen models "
                  f"timed again after the fine-tunes (unpruned {timing['recheck_unpruned_ms']:.3f} ms, load "
                  f"{timing['recheck_load']:.2f}), to show how far one pass is from another.", "",
                  "| method | test top-1 | seed+1 | measured ms | measured / unpruned | within | trend | re-check | "
                  "predicted ms |", "|---|---|---|---|---|---|---|---|---|"]
        for name in METHODS:
            r = results[f"{budget}/{name}"]
            top1 = r["top1"] + [float("nan")] * (2 - len(r["top1"]))
            lines.append(f"| {name} | {pct(top1[0])} | {pct(top1[1])} | "
                         f"{r['measured_ms']:.3f} | {r['measured_share']:.3f} | "
                         f"{'yes' if r['measured_share'] <= share else 'NO'} | {r['trend_share']:.3f} | "
                         f"{r['recheck_share']:.3f} | {r['predicted_ms']:.3f} |")
        summary[budget] = {}
        lines.append("")
        for export, label in (("", "one-shot"), (", progressive", "progressive")):
            gap = summary[budget][label] = lead(results, budget, export)
            matched = gap["pick_matched_share"]
            verdict = (f"is not a claim: the pick was not matched (it measured {matched:.3f} of the unpruned model in "
                       "the matching pass)" if matched > share
                       else "cannot be judged yet (its noise is not measured)" if np.isnan(gap["needed"])
                       else "holds" if gap["lead"] >= gap["needed"]
                       else f"falls short by {100 * (gap['needed'] - gap['lead']):.2f} points")
            lines += [f"{label.capitalize()} export: {gap['pick']} {points(gap['lead'])} points over the best other method "
                      f"({gap['best_rival']}); the seed-1 search's pick {points(gap['lead_seed1'])}. Noise (points): "
                      f"fine-tune seeds {points(gap['finetune_noise'], '.2f')}, search seeds {points(gap['search_noise'], '.2f')}; "
                      f"the claim needs max({LEAD:g}, 2 x their sum) = {points(gap['needed'], '.2f')} points: it {verdict}.",
                      ""]
        searched = results[f"{budget}/search"]
        lines += [f"Searches: {searched[0]['seconds']} s / {searched[1]['seconds']} s, "
                  f"{searched[0]['trials']} / {searched[1]['trials']} trials completed ({searched[0]['stopped_early']} / "
                  f"{searched[1]['stopped_early']} stopped early); picks: trial {searched[0]['pick']['trial']} "
                  f"(proxy {searched[0]['pick']['score']:.3f}) / trial {searched[1]['pick']['trial']} (proxy "
                  f"{searched[1]['pick']['score']:.3f}); seed 0's starting points scored "
                  + ", ".join(f"{s:.3f} (trial {t})" for t, s in searched["best_start"]["starts"].items()) + ".",
                  ""]
    name = report_name(args.proxy)
    lines.append(f"![search quality]({name}.png)")
    write_results(name, {"settings": vars(args), "machine": machine, "base_test_top1": done["base_test_top1"],
                         "summary": summary, "results": results}, lines)
    plot(results, budgets, RESULTS / f"{name}.png")


def plot(results: dict, budgets: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(budgets), figsize=(5.5 * len(budgets), 4.2), squeeze=False)
    # One look per method in every panel, so a method is found by its look across budgets.
    markers, colors = dict(zip(METHODS, "o*Xh^sPDv")), dict(zip(METHODS, plt.get_cmap("tab10").colors))
    for ax, share in zip(axes[0], budgets):
        budget = f"{share:g}x"
        for method in METHODS:
            r = results[f"{budget}/{method}"]
            if not r["top1"]:
                continue
            top1 = 100 * np.array(r["top1"])
            ax.errorbar(r["measured_share"], top1.mean(), yerr=(top1.max() - top1.min()) / 2 if len(top1) > 1 else None,
                        marker=markers[method], color=colors[method], linestyle="none", capsize=3, label=method)
        ax.axvline(share, color="grey", linestyle="--", linewidth=1)
        ax.set_title(f"budget {budget} (dashed: the budget)")
        ax.set_xlabel("measured latency / unpruned measured (ORT CPU)")
        ax.set_ylabel("test top-1 after fine-tuning (%; bar: two seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
