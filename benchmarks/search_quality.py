"""Does the search beat the best method that needs no search, at equal measured latency, after a real fine-tune?

Protocol (the defaults are the full one; every finished piece is kept in --state/pieces.json and every fine-tune
checkpoints in --cache (default --state/cache), so a run that is stopped or hits --max-seconds continues where it was
when started again; --state holds what a run needs to go on, small enough to carry to another machine: the finished
pieces, the base weights, the table the searches use and their studies; the searches' supernets stay in the
package's cache beside its latency tables, so a run carried to another machine trains them again there):
 1. base: the shipped cifar:resnet56 fine-tuned --base-epochs (1) on the CIFAR-10 JPEG train set, so model and
    data share one domain (or --base-weights FILE);
 2. for each budget (a share of the unpruned model's latency), the methods:
    - autoprune, and autoprune seed 1: `autoprune.search` on the JPEG train set (`--data imagefolder:`, split into
      proxy-train and the 1,000 proxy-val images by the seed) with the package's defaults and seed 0 / 1 (search
      noise): the supernet evaluator (the base fine-tuned once into a weight-shared supernet of every width, each
      seed its own, cached for every budget; a candidate is scored as its slice), the rules (allocation/rules.py:
      uniform, knapsack, knapsack with the streams wide) as the first trials, then sampled widths repaired down the
      table's staircase to the target. The pick is the front's most accurate member; its model is the supernet's
      slice at its widths, the weights export's default fine-tunes;
    - autoprune, ladder: the seed-0 search scored by the proxy ladder instead (evaluator "ladder", the default
      before the supernet: each candidate pruned one-shot from the base and scored by the default ladder); its pick
      is pruned one-shot from the base;
    - autoprune, progressive (and seed 1's): the pick exported with `--schedule progressive`: the schedule below,
      from the base toward the pick's own widths (ConfigGoal), so the same widths, timed as the pick;
    - autoprune, one-shot from base: the seed-0 pick's widths pruned one-shot from the base (the channels HALP's
      importance values least): beside the slice and the progressive export, which start is best for one model;
    - best starting point: the rule whose starting trial of the seed-0 search scored best (what the search would
      return if its sampler added nothing), a slice of that search's supernet as its pick is;
    - knapsack: the one-shot latency-saliency knapsack (HALP's importance), the channels kept chosen by the same
      importance;
    - progressive HALP: HALP's schedule (autoprune/training/schedule.py, LatencyGoal: 30 knapsack events at geometric
      latency targets in the first third of the fine-tune, importance accumulated batch by batch between them,
      masked channels never revived), the same epochs as every other method;
    - uniform L1: one keep ratio for every group (any channel count), L1 filters;
    - global magnitude: torch-pruning's MetaPruner with one global L1 threshold.
    These four rivals are pruned from the base, never from a supernet (the knapsack's channels and HALP's latency
    goals from the ladder search's context);
 3. matched by measurement, in one pass: each method's candidates along its knob (a latency target, 15 rungs from the
    search's target (for a pick or the starting point, the target its trial was fitted to on this machine's clock)
    down to 0.58 of it: a sampled pick's widths repaired down the staircase to each target, a rule's trial (the
    starting point's, or a pick that is one) and the knapsack solved at each; the keep ratio; the global ratio) are
    timed with 5 copies of the unpruned model by the latency benchmark's independent harness (fresh processes,
    shuffled, --passes, each pass kept). A first, placing pass finds the knapsack's rung at the budget; progressive
    HALP is trained at that rung's target and the next 2 narrower ones (its widths are chosen while it trains, so its
    candidates are trained models), and where the widest of them measures more than 5% under the budget's share,
    fitted to this machine's clock as the searches' trials are: trained once more at its target times the budget's
    share (less 2.5%) over its share. The matching pass then times every method's candidates, HALP's included, with
    the copies: a candidate's share is the median over passes of its ms over the copies' median in the same pass (the
    machine's speed moves between passes more than within one), and each method's widest candidate whose share and
    whose ladder's trend there (a line through its shares against their predicted ms) are at or under the budget's
    share is taken. So every model is measured within its budget in that one pass (a model's widths set its latency,
    its weights do not). A stored pass that timed other widths (another run's candidates) is timed again. The picks
    ride the same ladder as the starting point, so the search is judged on the widths it chose, not on where this
    machine's table put the budget line. The table is this machine's own (the default search's, profiled on first use
    and copied into --state, so every search of the run names the same one). Its held-out check and where the
    searches' target really sits (the knapsack ladder's trend at its widest rung) are reported: with a table that
    missed its held-out configs by a MAPE of 23%, the 0.5x fronts, at the predicted budget, measured 0.568-0.666 of
    the unpruned model, so the matched rungs were widths the searches never scored;
 4. every chosen model fine-tuned alike from its own starting weights (the supernet's slice for the supernet
    searches' picks and the best starting point, the base pruned one-shot for the others): --ft-epochs (3) on the
    JPEG train set, same seed, schedule and data, then top-1 on all 10,000 JPEG test images. A fine-tune is stored
    by its widths, seed, epochs and, for a slice, the supernet it came from, so one model two methods share is
    trained once, and a one-shot model from the base keeps the key an earlier run stored it under;
 5. a re-check: the chosen models timed again with the copies after the fine-tunes, reported beside the matching
    pass. Stepping over-budget models down pass after pass (the previous protocol) chased the machine: at 0.5x a
    second pass 1.5 hours after the first put uniform L1's same model at 0.437 of the unpruned model instead of
    0.371, and every stepped-down model higher than before;
 6. the truth's noise: autoprune's pick and the best other method fine-tuned again with seed+1, once every budget
    has its first fine-tunes; the search's noise: the two search seeds' picks; last, the progressive export's own
    noise (the seed-1 search's pick exported progressively, the seed-0 pick's progressive export with seed+1);
 7. the searches' cost: per budget, each search's completed trials and seconds; per seed, its supernet's training,
    timed as the building of the supernet search's context before that seed's first search (the searches then
    find it cached, so their seconds leave it out). Where the package's cache held that supernet already the
    report says so and has no training time; a run killed while a supernet trained resumes it, and times the rest.
No timing pass starts while the machine is loaded (harness.wait_until_quiet). Writes
benchmarks/results/search_quality.{md,json,png}. The searches' studies are search-BUDGET-seedK[-ladder]-widths.db in
--state (an earlier release's studies there, over the knapsack's knobs, are left alone), so an earlier run's state
serves again: its base, table and fine-tunes of the rivals are reused, its searches run anew.

    python benchmarks/search_quality.py [--budgets 0.5 0.35] [--state DIR] [--cache DIR]
"""
from __future__ import annotations

import argparse
import copy
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch_pruning as tp

from autoprune.allocation.rules import at_target, one_shot_knapsack
from autoprune.pruning.graph import CUSTOM_PRUNERS
from autoprune.latency.fingerprint import this_machine
from autoprune.latency.table import disturbed
from autoprune.pruning.prune import prune
from autoprune.training.schedule import ConfigGoal, LatencyGoal, progressive_finetune
from autoprune.pruning.space import Granularity, build_space
from autoprune.study import reopen
from autoprune.study.context import build_context
from autoprune.study.evaluators import LADDER, SUPERNET, supernet_dir
from autoprune.study.result import RULE, completed, is_start
from autoprune.study.settings import SearchSettings
from autoprune.data.task import evaluate_top1

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, Pieces, add_state_argument, bisect, described, state_dir, write_results  # noqa: E402
from harness import UNPRUNED_COPIES, split_reference, timed_beside  # noqa: E402
from jpeg_protocol import (BASE_EPOCHS, FT_EPOCHS, MODEL, add_jpeg_argument, digest, jpeg_data, jpeg_folder,  # noqa: E402
                           make_base, searched, tuned_top1 as jpeg_tuned_top1)

NAME = "search_quality"  # the report's, and the state folder's by default
# The searched rows: (search seed, evaluator). The default search's two seeds give the claim and the search noise.
SEARCHES = {"autoprune": (0, SUPERNET), "autoprune seed 1": (1, SUPERNET), "autoprune, ladder": (0, LADDER)}
CLAIMED = ("autoprune", "autoprune seed 1")
# A pick exported progressively keeps its widths: the pick's model, timed as the pick.
PROGRESSIVE_EXPORT = {f"{name}, progressive": name for name in CLAIMED}
# The seed-0 pick's widths pruned one-shot from the base: with the slice and the progressive export, the three
# starts an export could take for the same widths and the same epochs.
ONE_SHOT_EXPORT = {"autoprune, one-shot from base": "autoprune"}
SAME_WIDTHS = {**PROGRESSIVE_EXPORT, **ONE_SHOT_EXPORT}  # rows timed as the pick whose widths they share
RIVALS = ("best starting point", "knapsack", "progressive HALP", "uniform L1", "global magnitude")
METHODS = (*CLAIMED, "autoprune, ladder", *SAME_WIDTHS, *RIVALS)
TIMED = [m for m in METHODS if m not in SAME_WIDTHS]
# The rows whose model is a slice of a supernet, by the seed of the search that trained it; every other row's model
# starts from the base.
SLICES = {**{name: seed for name, (seed, evaluator) in SEARCHES.items() if evaluator == SUPERNET},
          "best starting point": 0}
# The round each fine-tune runs in (before it, one is used only where a previous run stored it): every method first,
# then the repeats that measure the main comparison's noise, then the progressive export's own noise.
ROUND = {"autoprune seed 1, progressive": 2}
REPEAT_ROUND = {"autoprune, progressive": 2}  # the others' repeats: round 1
TARGET_STEPS = [1.0 - 0.03 * i for i in range(15)]  # each ladder's target as shares of its widest
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
    add_state_argument(p, NAME)
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


def tag(name: str) -> str:
    """A search's name in its files and pieces: new names for the widths search, so that an earlier release's studies
    (over the knapsack's knobs, search-BUDGET-seedK.db) are never reopened."""
    seed, evaluator = SEARCHES[name]
    return f"seed{seed}" + ("" if evaluator == SUPERNET else f"-{evaluator}") + "-widths"


def ladder(trial, context) -> tuple:
    """A trial's candidates as Candidates takes them: (its study's context, its config at a target, the target it
    was made at: fitted to this machine's clock, or the search's). A rule's trial is its rule solved at the target,
    a sampled one its widths repaired down to it, as the search made them (study/objective.py)."""
    rule, config = trial.user_attrs.get(RULE), trial.user_attrs["config"]

    def make(target: float) -> dict:
        return at_target(rule, config, context.widths, context.predictor, context.saliency, target)

    return context, make, trial.user_attrs.get("target_ms", context.target_ms)


def best_start(study) -> dict:
    """The rule whose starting trial scored best in `study`, that trial, and every rule's score."""
    starts = [t for t in completed(study) if is_start(t)]
    best = max(starts, key=lambda t: (t.value, -t.number))
    return {"trial": best.number, "rule": best.user_attrs[RULE], "score": best.value,
            "starts": {t.user_attrs[RULE]: {"trial": t.number, "score": t.value} for t in starts}}


def supernet_cost(settings: SearchSettings) -> dict:
    """The seconds a supernet search's context takes to build, and whether its supernet was trained then (else the
    package's cache held it already, and the seconds are not its training)."""
    before = set(supernet_dir().glob("supernet-*.pt"))
    start = time.time()
    build_context(settings)
    return {"seconds": round(time.time() - start), "trained": set(supernet_dir().glob("supernet-*.pt")) != before}


def machine_table(base_path: Path, state: Path) -> Path:
    """This machine's own table, the one a default search uses (profiled on first use), copied into the run's state
    and named by every search: a run carried to another machine goes on with the latencies it started with."""
    path = state / "table.json"
    if not path.exists():
        profiled = build_context(SearchSettings(weights=str(base_path), evaluator=LADDER))  # no supernet to train
        shutil.copyfile(profiled.predictor.table.path, path)
    return path


class Candidates:
    """Each method's candidates along its knob, most kept first: (knob, config, model)."""

    def __init__(self, base, fine, ctx, ladders: dict, share: float):
        """`ladders`: per method that is made at a latency target, (its context, make(target) -> config, its widest
        target); its models are its context's (`prune`: a supernet's slice or the base pruned one-shot). `ctx`: the
        rivals', pruned from the base."""
        self.rows: dict[str, list[tuple]] = {}
        for name, (context, make, widest) in ladders.items():
            self.rows[name] = []
            for step in TARGET_STEPS:
                target = step * widest
                if target < context.min_ms:  # a pick fitted far under its budget: its ladder ends where widths do
                    break
                config = make(target)
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

    def timed(self) -> list[tuple]:
        """Every candidate as (config, model), in the order the matching reads the shares."""
        return [(config, model) for rows in self.rows.values() for _, config, model in rows]

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
    state = state_dir(args.state, NAME)  # absolute: the studies store the base's and table's paths
    cache = Path(args.cache) if args.cache else state / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    pieces = Pieces(state / "pieces.json", args.max_seconds)
    shipped, jpeg = jpeg_data(args.jpeg, cache, args.seed)
    # The searches train and score on the JPEG train set as a user with CIFAR-10 would pass it: the folder's path
    # names the data in the supernet's cache key, so give --jpeg the folder supernet_fidelity.py unpacked to share its
    # supernet.
    data = f"imagefolder:{jpeg_folder(args.jpeg, cache)}"
    base_path = Path(args.base_weights) if args.base_weights else state / "base.pt"
    base = make_base(shipped, jpeg, base_path, args.base_epochs, args.seed, cache / "base.ckpt")
    fine = build_space(base, Granularity(multiple_of=1, min_keep=0.01))
    pieces.get("base_test_top1", lambda: evaluate_top1(base.model, jpeg.test))
    table = machine_table(base_path, state)

    def tuned_top1(name: str, model, config: dict, seed: int, stored_only: bool = False) -> dict | None:
        # Widths alone do not name a model: a slice starts from its supernet's weights, not the base's (a model
        # pruned one-shot from the base keeps the key earlier runs stored it under).
        origin = ["supernet slice", SLICES[name]] if name in SLICES else []
        key = digest(config, seed, args.ft_epochs, *origin)
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

    def timed_with_unpruned(key: str, models: list[tuple]) -> dict:
        """The (config, model) pairs and the unpruned copies in one harness run, stored as `key`, with the widths
        it timed; timed again where the stored run timed other widths (another run's candidates, or a matching
        pass timed before HALP's fitted model). A run carried on elsewhere says where each pass ran."""
        widths = digest([config for config, _ in models])

        def run():
            return {**timed_beside(base.model, [model for _, model in models], base.example_input(), args.passes,
                                   UNPRUNED_COPIES), "machine": this_machine(), "widths": widths}

        if pieces.get(key, run).get("widths") != widths:
            pieces.drop(key)
        return pieces.get(key, run)

    results, machine = {}, this_machine()
    for round_ in range(3):  # a run cut short has the main comparison
        for share in args.budgets:
            budget = f"{share:g}x"
            outs = {name: cache / f"search-{budget}-{tag(name)}" for name in SEARCHES}
            stores = {name: f"sqlite:///{state / f'search-{budget}-{tag(name)}.db'}" for name in SEARCHES}
            searches = {}
            for name, (seed, evaluator) in SEARCHES.items():
                settings = dict(model=MODEL, weights=str(base_path), data=data, table=str(table), budget=budget,
                                seed=seed, evaluator=evaluator)
                if evaluator == SUPERNET:  # trained here before its first search, so that its cost is timed alone
                    pieces.get(f"supernet-seed{seed}", lambda: supernet_cost(SearchSettings(**settings)))
                searches[name] = pieces.get(f"{budget}/search-{tag(name)}",
                                            lambda: searched(outs[name], storage=stores[name], **settings))
            studies = {name: reopen(outs[name], stores[name]) for name in SEARCHES}
            contexts = {name: next(iter(lanes.values())) for name, (_, lanes) in studies.items()}  # float32 alone
            # The rivals are pruned from the base: the ladder search's context prunes it one-shot by the saliency.
            ctx = contexts["autoprune, ladder"]
            validation = ctx.predictor.table.model(ctx.predictor.key)["validation"]
            start = best_start(studies["autoprune"][0])
            # Each pick and the starting point made again at descending targets from the one its trial was fitted
            # to on this machine's clock (study/timing.py); the knapsack from the searches' target.
            ladders = {name: ladder(studies[name][0].trials[searches[name]["front"][0]["trial"]], contexts[name])
                       for name in SEARCHES}
            ladders["best starting point"] = ladder(studies["autoprune"][0].trials[start["trial"]],
                                                    contexts["autoprune"])
            ladders["knapsack"] = (ctx, lambda target: one_shot_knapsack(ctx.widths, ctx.predictor, ctx.saliency,
                                                                         target), ctx.target_ms)
            candidates = Candidates(base, fine, ctx, ladders, share)

            # The placing pass: where the knapsack's ladder meets the budget, so progressive HALP trains at that rung
            # and the next narrower ones.
            placing = timed_with_unpruned(f"{budget}/ladder", candidates.timed())
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
            widest_config = halp_runs[widest][1]["config"]
            halp_placing = timed_with_unpruned(f"{budget}/halp_placing",
                                               [(widest_config, prune(base.model, ctx.space, widest_config))])
            widest_share = split_reference(halp_placing)[1][0]
            if widest_share < share * (1 - HALP_CLOSE):
                train_halp(widest * share * (1 - HALP_CLOSE / 2) / widest_share)
            candidates.rows["progressive HALP"] = [(target, run["config"], prune(base.model, ctx.space, run["config"]))
                                                   for target, (_, run) in sorted(halp_runs.items(), reverse=True)]
            # The matching pass: every method's candidates (HALP's trained ones included) and the unpruned copies in
            # one harness run; each method's model is chosen there, so every model is measured within the budget in
            # one pass (a model's widths, not its fine-tuned weights, set its latency).
            matching = timed_with_unpruned(f"{budget}/matching", candidates.timed())
            unpruned_ms, shares = split_reference(matching)
            chosen = candidates.matched(shares, share)
            scores = {name: [tuned_top1(name, chosen[name]["model"], chosen[name]["config"], args.seed)]
                      for name in candidates.rows if name != "progressive HALP"}
            goals["progressive HALP"], halp = halp_runs[chosen["progressive HALP"]["knob"]]
            scores["progressive HALP"] = [halp]
            for name, pick in ONE_SHOT_EXPORT.items():
                chosen[name] = {**chosen[pick], "model": ctx.prune(chosen[pick]["config"])[0]}
                scores[name] = [tuned_top1(name, chosen[name]["model"], chosen[name]["config"], args.seed)]
            for name, pick in PROGRESSIVE_EXPORT.items():
                goals[name] = ConfigGoal(chosen[pick]["config"])
                chosen[name] = chosen[pick]
                done = progressive_top1(name, ctx, goals[name], args.seed, stored_only=round_ < ROUND.get(name, 0))
                scores[name] = [done] if done is not None else []
            # A re-check after the fine-tunes: the same models timed again, to show how far one pass is from another.
            recheck = timed_with_unpruned(f"{budget}/recheck",
                                          [(chosen[name]["config"], chosen[name]["model"]) for name in TIMED])
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
                    "trend_share": c["trend_share"], "recheck_share": rechecked[SAME_WIDTHS.get(name, name)],
                    "predicted_ms": ctx.predictor.predict(c["config"]), "knob": c["knob"], "config": c["config"],
                    # Where its fine-tune started: readers that prune a row's config from the base skip the slices.
                    "start": f"supernet slice, search seed {SLICES[name]}" if name in SLICES else "base",
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
                                                                for name in ladders},
                                           "ladders": {name: len(rows) for name, rows in candidates.rows.items()}}
            results[f"{budget}/search"] = {name: {k: v for k, v in s.items() if k != "front"} | {
                "pick": {"trial": s["front"][0]["trial"], "origin": s["front"][0]["origin"],
                         "score": s["front"][0]["score"], "target_ms": chosen[name]["knob"]}}
                for name, s in searches.items()}
            results[f"{budget}/search"]["best_start"] = start
            # Once every budget has its results: a report of some would overwrite the others' stored one.
            if all(f"{b:g}x/timing" in results for b in args.budgets):
                report(args, sorted(args.budgets, reverse=True), pieces.done, results, machine)


def lead(results: dict, budget: str, export: str = "") -> dict:
    """The pick's lead over the best rival when exported one-shot (`export` "") or progressively (", progressive")."""
    top1 = {m: results[f"{budget}/{m}"]["top1"] or [float("nan")] for m in METHODS}  # [] before its round
    pick, pick_seed1 = (name + export for name in CLAIMED)
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
             f"candidates and 5 copies of the unpruned model in one run. The searches: the package's defaults (the "
             "supernet evaluator, the rules as the first trials) with seeds 0 and 1, and seed 0 scored by the proxy "
             "ladder (autoprune, ladder). Starting weights: the supernet searches' picks and the best starting point "
             "are fine-tuned from their supernet's slice, every other one-shot row from the base pruned one-shot, "
             "the progressive rows from the base.", "",
             "Supernets (one per search seed, trained once for every budget; timed as the building of the search's "
             "context before its first search): " + "; ".join(
                 f"seed {seed} {cost['seconds']} s" if cost["trained"]
                 else f"seed {seed} cached already by an earlier run (not timed)"
                 for seed, cost in {seed: done[f"supernet-seed{seed}"] for seed in sorted(set(SLICES.values()))}.items())
             + ".", ""]
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
        runs = results[f"{budget}/search"]
        start = runs["best_start"]
        lines += ["Searches (the supernet searches' seconds leave their supernet's training out): " + "; ".join(
                      f"{name} {s['trials']} trials completed ({s['stopped_early']} stopped early) in {s['seconds']} s, "
                      f"its pick trial {s['pick']['trial']} ({s['pick']['origin']}; {s['score']} {s['pick']['score']:.3f})"
                      for name, s in {name: runs[name] for name in SEARCHES}.items())
                  + ". The seed-0 search's starting points scored " + ", ".join(
                      f"{rule} {s['score']:.3f} (trial {s['trial']})" for rule, s in start["starts"].items())
                  + f": the best starting point is {start['rule']}'s.", ""]
    lines.append(f"![search quality]({NAME}.png)")
    write_results(NAME, {"settings": vars(args), "machine": machine, "base_test_top1": done["base_test_top1"],
                         "summary": summary, "results": results}, lines)
    plot(results, budgets, RESULTS / f"{NAME}.png")


def plot(results: dict, budgets: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(budgets), figsize=(5.5 * len(budgets), 4.2), squeeze=False)
    # One look per method in every panel, so a method is found by its look across budgets.
    markers, colors = dict(zip(METHODS, "o*dXh^sPDv")), dict(zip(METHODS, plt.get_cmap("tab10").colors))
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
