"""Does a fresh default profile predict latency on the machine this runs on? Checked by a timing harness
that shares no code with autoprune's timers.

    python benchmarks/latency_predictor.py                 # all three models, about 15 minutes on 2 cores
    python benchmarks/latency_predictor.py --models cifar:resnet56 --configs 10
    python benchmarks/latency_predictor.py --depth        # configs that also remove residual blocks

Protocol, per model (torchvision:resnet18 and mobilenet_v2 at 224, cifar:resnet56 at 32; ORT CPU, 1 thread,
batch 1; every finished piece is kept under --state, so an interrupted run resumes):
 1. `autoprune.profile` with its defaults into a new table, from scratch (timed);
 2. --configs validation configs drawn here: half like search candidates (the latency knapsack at a random
    budget of 35-80% with random knob weights, L1 saliency), half uniform (`SearchSpace.random_config` with a
    seed the profile never uses); predicted by the new table;
 3. the harness (harness.py): each config exported to ONNX; --passes passes, each a fresh Python process that
    imports only onnxruntime and numpy and times every model in a shuffled order: 10 warm-up runs, then the median
    of 30 consecutive runs; a config's latency is the median over passes;
 4. MAPE, worst error, share within +-5/+-10%, Kendall's tau of predicted vs measured; the noise floor: tau
    between the medians of the even and the odd passes (the best any predictor can rank here).
 5. with --again (run it an hour or more after the first run): each model profiled once more and the same
    configs timed again by the harness: how far the predictions moved beside how far the measurements did;
 6. with --transfer TABLE... (a table measured elsewhere: another CPU, another onnxruntime; `shipped` for the
    tables inside the package): the same configs predicted by that table as it is, then by the table
    `autoprune.rescale` makes from it here (timed), against the harness's latest measurements (with --again,
    the later ones: the rescale runs then).
With --depth, the profile and the configs are of the space with its removable residual blocks (`profile --depth`:
its calibration configs remove about half of them; the validation configs here a quarter in the search-like ones,
half in the uniform ones): whether a table predicts models with whole blocks removed.
Writes benchmarks/results/latency_predictor.{md,json} (with --depth: latency_predictor-depth.*); records the CPU model.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from autoprune.latency.fingerprint import this_machine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, Pieces, add_state_argument, state_dir  # noqa: E402
from table_check import run_model  # noqa: E402

MODELS = ("torchvision:resnet18", "torchvision:mobilenet_v2", "cifar:resnet56")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--configs", type=int, default=20)
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    add_state_argument(p, "latency_predictor")
    p.add_argument("--transfer", nargs="+", default=[], metavar="TABLE",
                   help="tables measured elsewhere (`shipped`: the package's) to check as they are and rescaled here")
    p.add_argument("--again", action="store_true",
                   help="profile each model once more (run it an hour after the first run) and compare predictions")
    p.add_argument("--depth", action="store_true", help="configs that also remove residual blocks (models that have any)")
    p.add_argument("--max-seconds", type=float, default=float("inf"), help="start no new piece after this")
    args = p.parse_args()
    work = state_dir(args.state, "latency_predictor")
    pieces = Pieces(work / "pieces.json", args.max_seconds)
    machine = {**this_machine(), "platform": platform.platform()}
    results = {spec: run_model(spec, args, pieces, work) for spec in args.models}
    RESULTS.mkdir(exist_ok=True)
    name = "latency_predictor" + ("-depth" if args.depth else "")
    (RESULTS / f"{name}.json").write_text(json.dumps({"machine": machine, "settings": vars(args),
                                                                "models": results}, indent=1))
    rows = ["| model | profile s | MAPE | worst | within ±5% | within ±10% | Kendall tau | noise floor: tau | "
            "noise floor: MAPE, worst |", "|---|---|---|---|---|---|---|---|---|"]
    for spec, f in results.items():
        rows.append(f"| {spec} | {f['profile_seconds']:.0f} | {f['mape_pct']:.2f}% | {f['worst_pct']:+.2f}% | "
                    f"{f['within_5pct']:.0%} | {f['within_10pct']:.0%} | {f['kendall_tau']:.3f} | "
                    f"{f['noise_floor_tau']:.3f} | {f['noise_mape_pct']:.2f}%, {f['noise_worst_pct']:+.2f}% |")
    by_kind = ["| model | configs | MAPE | worst | Kendall tau |", "|---|---|---|---|---|"]
    for spec, f in results.items():
        for kind in ("search-like", "uniform"):
            k = f[kind]
            by_kind.append(f"| {spec} | {kind} ({k['n']}) | {k['mape_pct']:.2f}% | {k['worst_pct']:+.2f}% | "
                           f"{k['kendall_tau']:.3f} |")
    transfer_rows = [
        f"| {spec} | {t['table']} ({t['measured_on']}) | {'yes' if t['warned'] else 'no'} | "
        f"{t['before']['mape_pct']:.2f}% | {t['before']['kendall_tau']:.3f} | {t['one_factor_scale']:.3f} | "
        f"{t['one_factor']['mape_pct']:.2f}% | {t['seconds']:.0f} | "
        f"{', '.join(f'{k} {v:.3f}' for k, v in t['factors'].items())} | {t['after']['mape_pct']:.2f}% | "
        f"{t['after']['within_10pct']:.0%} | {t['after']['kendall_tau']:.3f} | {f['mape_pct']:.2f}% |"
        for spec, f in results.items() for t in f.get("transfer", [])]
    if transfer_rows:
        by_kind += ["", "Tables measured elsewhere, used here as they are, scaled by one factor, and after `autoprune "
                    "rescale` here (its compute and overhead terms refitted from the same 8 models timed here), beside "
                    f"the fresh profile; same configs, against the {'later ' if args.again else ''}measurements above:",
                    "", "| model | table (measured on) | warned | MAPE | tau | one factor | MAPE | rescale s | factors | "
                    "MAPE rescaled | within ±10% | tau | fresh profile's MAPE |",
                    "|---|---|---|---|---|---|---|---|---|---|---|---|---|", *transfer_rows]
    again = []
    for spec, f in results.items():
        if "again" in f:
            a = f["again"]
            again.append(f"| {spec} | {a['minutes_later']} | {a['seconds']:.0f} | {a['predictions']['median_pct']:.2f}%, "
                         f"{a['predictions']['max_pct']:.2f}% | {a['truth']['median_pct']:.2f}%, "
                         f"{a['truth']['max_pct']:.2f}% | {a['new_table']['mape_pct']:.2f}% | "
                         f"{a['first_table']['mape_pct']:.2f}% |")
    if again:
        by_kind += ["", "The same model profiled again later, and the same configs timed again by the harness then: how "
                    "far the two tables' predictions moved, how far the harness's own measurements moved, and each "
                    "table's MAPE against the later measurements:", "",
                    "| model | minutes later | profile s | predictions moved: median, largest | measurements moved: "
                    "median, largest | later table's MAPE | first table's MAPE |", "|---|---|---|---|---|---|---|",
                    *again]
    text = (f"# Latency predictor on {machine['cpu']} ({machine['cores']} cores, ISA {', '.join(machine['isa'])})\n\n"
            f"Written by `benchmarks/latency_predictor.py` (its docstring has the protocol): a fresh default profile "
            f"per model, {args.configs} validation configs each (half search-like, half uniform"
            + (", residual blocks removed too: blocks removed per config "
               + "; ".join(f"{s} {min(f['blocks_removed'])}-{max(f['blocks_removed'])}" for s, f in results.items())
               if args.depth else "") + "), timed by an "
            f"independent harness in {args.passes} fresh-process passes (10 warm-up runs, median of 30 consecutive "
            f"runs, shuffled order). Error = (predicted - measured) / measured. Noise floor: the medians of the "
            f"even passes against those of the odd passes, as if one were a prediction of the other.\n\n" + "\n".join(rows)
            + "\n\nBy kind of config:\n\n" + "\n".join(by_kind) + "\n")
    (RESULTS / f"{name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
