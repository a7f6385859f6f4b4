"""Does a fresh default profile predict latency on the machine this runs on? Checked by a timing harness
that shares no code with autoprune's timers.

    python benchmarks/latency_predictor.py                 # all three models, about 15 minutes on 2 cores
    python benchmarks/latency_predictor.py --models cifar:resnet56 --configs 10

Protocol, per model (torchvision:resnet18 and mobilenet_v2 at 224, cifar:resnet56 at 32; ORT CPU, 1 thread,
batch 1; every finished piece is cached under --cache, so an interrupted run resumes):
 1. `autoprune.profile` with its defaults into a new table, from scratch (timed);
 2. --configs validation configs drawn here: half like search candidates (the latency knapsack at a random
    budget of 35-80% with random knob weights, L1 saliency), half uniform (`SearchSpace.random_config` with a
    seed the profile never uses); predicted by the new table;
 3. the harness: each config exported to ONNX; --passes passes, each a fresh Python process that imports only
    onnxruntime and numpy and times every model in a shuffled order: 10 warm-up runs, then the median of 30
    consecutive runs; a config's latency is the median over passes;
 4. MAPE, worst error, share within +-5/+-10%, Kendall's tau of predicted vs measured; the noise floor: tau
    between the medians of the even and the odd passes (the best any predictor can rank here).
 5. with --again (run it an hour or more after the first run): each model profiled once more and the same
    configs timed again by the harness: how far the predictions moved beside how far the measurements did;
 6. with --transfer TABLE... (a table measured elsewhere: another CPU, another onnxruntime; `shipped` for the
    tables inside the package): the same configs predicted by that table as it is, then by the table
    `autoprune.rescale` makes from it here (timed), against the harness's latest measurements (with --again,
    the later ones: the rescale runs then).
Writes benchmarks/results/latency_predictor.{md,json}; records the CPU model.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import subprocess
import tempfile
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import autoprune
from autoprune.allocation.knobs import Allocation
from autoprune.assets import shipped_table_for
from autoprune.latency import LatencyPredictor, LatencyTable
from autoprune.latency.fingerprint import this_machine
from autoprune.latency.layout import model_key
from autoprune.latency.rescale import DEFAULT_CONFIGS, fit_factors, rescale
from autoprune.latency.runner import error_figures, kendall_tau
from autoprune.allocation.knapsack import knapsack
from autoprune.precision import precision
from autoprune.pruning.prune import prune
from autoprune.allocation.saliency import channel_saliency

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Pieces, wait_until_quiet  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("torchvision:resnet18", "torchvision:mobilenet_v2", "cifar:resnet56")
UNIFORM_SEED = 424242  # neither the profile's calibration (0) nor validate's default (12345)

# The independent harness: no autoprune, no shared code; one fresh process per pass.
HARNESS = r"""
import json, random, sys, time
import numpy as np, onnxruntime as ort
files, seed = json.loads(sys.argv[1]), int(sys.argv[2])
options = ort.SessionOptions()
options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
sessions = {}
for f in files:
    s = ort.InferenceSession(f, options, providers=["CPUExecutionProvider"])
    i = s.get_inputs()[0]
    sessions[f] = (s, {i.name: np.random.default_rng(0).standard_normal(i.shape).astype(np.float32)})
order = list(files)
random.Random(seed).shuffle(order)
out = {}
for f in order:
    s, feed = sessions[f]
    for _ in range(10):
        s.run(None, feed)
    times = []
    for _ in range(30):
        t = time.perf_counter()
        s.run(None, feed)
        times.append((time.perf_counter() - t) * 1e3)
    out[f] = float(np.median(times))
print(json.dumps(out))
"""


def draw_configs(loaded, space, predictor, n: int, seed: int) -> list[dict]:
    """Half search-like (knapsack at random budgets and knob weights), half uniform."""
    rng = random.Random(seed)
    saliency = channel_saliency(loaded.model, space, None, "l1")
    unpruned = predictor.predict(space.full_config())
    allocation = Allocation.for_model(loaded.model, space, predictor, saliency, unpruned, loaded.example_input())
    configs = []
    # Where a precision prunes to little (int8: per-call costs stay), a budget is never below what the space reaches.
    narrowest = predictor.predict(space.narrowest_config())
    for _ in range(n // 2):
        weights = allocation.weights({k: rng.uniform(0.25, 4.0) for k in allocation.knobs()})
        budget = max(rng.uniform(0.35, 0.8) * unpruned, 1.02 * narrowest)
        configs.append({"kind": "search-like", "config": knapsack(space, predictor, saliency, budget, weights)})
    uniform = random.Random(UNIFORM_SEED)
    configs += [{"kind": "uniform", "config": space.random_config(uniform)} for _ in range(n - n // 2)]
    return configs


def harness_pass(files: list[str], seed: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", HARNESS, json.dumps(files), str(seed)], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout)


def transfer(spec: str, table_arg: str, loaded, space, configs, measured, pieces: Pieces, work: Path) -> dict | None:
    """A table from elsewhere on this machine: its predictions as they are and after `rescale` here."""
    path = shipped_table_for(spec) if table_arg == "shipped" else Path(table_arg)
    table = LatencyTable.load(path) if path is not None else None
    if table is None or model_key(space) not in table.models:
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        theirs = LatencyPredictor(table, space)
    digest = hashlib.sha1(path.read_bytes()).hexdigest()[:10]  # a table replaced under the same name is new work
    here = work / f"{spec.replace(':', '_')}-rescaled-{path.stem}-{digest}.json"

    def timed_rescale() -> dict:
        start = time.time()
        _, fit = rescale(loaded, space, table, here)  # it copies the table's data: `theirs` is unchanged
        return {"seconds": round(time.time() - start, 1), "scale": fit["scale"], "factors": fit["factors"]}

    done = pieces.get(f"{spec}/rescale2:{path.name}:{digest}", timed_rescale)
    ours = LatencyPredictor(LatencyTable.load(here), space)
    # The same table scaled by the one factor fitted on the same models timed (the unpruned one's ratio is
    # the median one's stand-in only when they agree): the rescale of the previous release, for comparison.
    stored = LatencyTable.load(here).model(model_key(space))["validation"]
    one = fit_factors(theirs.coef, [theirs.features(c) for c in rescale_configs(space)], stored["measured_ms"],
                      terms=False)
    one_factor = [one["compute"] * theirs.predict(c["config"]) for c in configs]
    device = table.device
    return {"table": table_arg if table_arg == "shipped" else path.name,
            "measured_on": f"{device.get('cpu')}, {', '.join(device.get('isa') or [])}, {device.get('backend')} "
                           f"{device.get('backend_version')}, {str(device.get('date', '?'))[:10]}",
            "warned": [str(w.message) for w in caught], **done, "one_factor_scale": round(one["compute"], 4),
            "before": error_figures([theirs.predict(c["config"]) for c in configs], measured),
            "one_factor": error_figures(one_factor, measured),
            "after": error_figures([ours.predict(c["config"]) for c in configs], measured)}


def rescale_configs(space) -> list[dict]:
    """The configs `rescale` times with its defaults (the unpruned model first)."""
    rng = random.Random(0)
    return [space.full_config()] + [space.random_config(rng) for _ in range(DEFAULT_CONFIGS - 1)]


def pass_medians(passes: list, keys) -> list[float]:
    """Each model's latency over the harness passes (each a dict by file or a list by index, `keys` the models'):
    the median of its per-pass medians."""
    return [float(np.median([p[k] for p in passes])) for k in keys]


def harness_runs(models: list, example, passes: int = 5, dtype: str | list[str] = "float32") -> list[list[float]]:
    """Each pass's ms of every model (in the models' order) by the independent harness: exported to ONNX (in
    `dtype`, one for all or one per model), timed in `passes` shuffled fresh-process passes, all models together
    (a drift of the machine spreads over all of them)."""
    dtypes = [dtype] * len(models) if isinstance(dtype, str) else dtype
    with tempfile.TemporaryDirectory(prefix="harness-") as tmp:
        files = [str(Path(tmp) / f"m{i:03d}.onnx") for i in range(len(models))]
        for model, path, name in zip(models, files, dtypes):
            Path(path).write_bytes(precision(name).onnx_bytes(model, example))
        return [[run[f] for f in files] for run in (harness_pass(files, seed) for seed in range(passes))]


def time_independently(models: list, example, passes: int = 5, dtype: str | list[str] = "float32") -> list[float]:
    """Each model's ms by the independent harness: the median of its per-pass medians."""
    return pass_medians(harness_runs(models, example, passes, dtype), range(len(models)))


def timed_beside(reference, models: list, example, passes: int, copies: int, dtypes: list[str] | None = None) -> dict:
    """`models` (in `dtypes`, default float32) and `copies` float32 copies of `reference` timed in one harness run
    once the machine is quiet, every pass kept: the stored form split_reference reads, so one unlucky measurement
    of the reference cannot move every model's share."""
    load = wait_until_quiet()
    runs = harness_runs([reference] * copies + models, example, passes,
                        ["float32"] * copies + (dtypes or ["float32"] * len(models)))
    return {"runs": [[round(ms, 4) for ms in run] for run in runs], "load": load, "unpruned_copies": copies}


def split_reference(timed: dict) -> tuple[float, list[float]]:
    """(the reference's ms, the other models' shares of it) of a timed_beside run: per pass (shares_of_reference),
    or, in the earlier form that stored only each model's median ("ms"), from the medians."""
    copies = timed["unpruned_copies"]
    if "runs" in timed:
        return shares_of_reference(timed["runs"], copies)
    reference = float(np.median(timed["ms"][:copies]))
    return reference, [ms / reference for ms in timed["ms"][copies:]]


def shares_of_reference(runs: list[list[float]], copies: int) -> tuple[float, list[float]]:
    """(the reference's ms, each other model's share of it) from harness runs whose first `copies` models are copies
    of the reference: a share is the median over passes of the model's ms over the copies' median in the same pass,
    so that the machine's speed, which moves between passes more than within one, cancels."""
    per_pass = np.array(runs)
    reference = np.median(per_pass[:, :copies], axis=1, keepdims=True)
    return float(np.median(reference)), [float(x) for x in np.median(per_pass[:, copies:] / reference, axis=0)]


def run_model(spec: str, args, pieces: Pieces, work: Path) -> dict:
    """A fresh default profile of `spec` in args.dtype, against the harness on args.configs configs."""
    dtype = getattr(args, "dtype", "float32")
    slug = spec.replace(":", "_") + ("" if dtype == "float32" else f"-{dtype}")
    table_path = work / f"{slug}.json"
    spec_key = spec if dtype == "float32" else f"{spec}/{dtype}"

    def fresh_profile(path: Path) -> dict:
        path.unlink(missing_ok=True)
        start = time.time()
        autoprune.profile(spec, path, dtype=dtype)
        return {"seconds": round(time.time() - start, 1), "at": time.time()}

    profiled = pieces.get(f"{spec_key}/profile", lambda: fresh_profile(table_path))
    loaded = autoprune.api.load(spec)
    space = autoprune.inspect(spec, dtype=dtype)  # the configs a search in this precision would consider
    predictor = LatencyPredictor(LatencyTable.load(table_path), space)
    configs = pieces.get(f"{spec_key}/configs", lambda: draw_configs(loaded, space, predictor, args.configs, args.seed))
    files = []
    for i, c in enumerate(configs):
        path = work / slug / f"c{i:02d}.onnx"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(precision(dtype).onnx_bytes(prune(loaded.model, space, c["config"]), loaded.example_input()))
        files.append(str(path))
    passes = [pieces.get(f"{spec_key}/pass{p}", lambda p=p: harness_pass(files, args.seed + p))
              for p in range(args.passes)]
    measured = pass_medians(passes, files)
    halves = [pass_medians(passes[k::2], files) for k in (0, 1)]
    predicted = [predictor.predict(c["config"]) for c in configs]
    # The harness against itself: its even passes' medians as a "prediction" of its odd passes'.
    noise = error_figures(halves[0], halves[1])
    figures = {**error_figures(predicted, measured), "noise_floor_tau": round(kendall_tau(*halves), 4),
               "noise_mape_pct": noise["mape_pct"], "noise_worst_pct": noise["worst_pct"],
               "profile_seconds": profiled["seconds"], "entries": len(predictor.table.entries)}
    for kind in ("search-like", "uniform"):
        idx = [i for i, c in enumerate(configs) if c["kind"] == kind]
        figures[kind] = error_figures([predicted[i] for i in idx], [measured[i] for i in idx])
    if args.again:  # the same model profiled and timed again later: do the tables move more than the truth?
        again_path = work / f"{slug}-again.json"
        again = pieces.get(f"{spec}/profile-again", lambda: fresh_profile(again_path))
        later_passes = [pieces.get(f"{spec}/again-pass{p}", lambda p=p: harness_pass(files, args.seed + 100 + p))
                        for p in range(args.passes)]
        later = pass_medians(later_passes, files)
        other = LatencyPredictor(LatencyTable.load(again_path), space)
        predicted_later = [other.predict(c["config"]) for c in configs]

        def moved(after: list[float], before: list[float]) -> dict:
            change = [abs(a / b - 1) * 100 for a, b in zip(after, before)]
            return {"median_pct": round(float(np.median(change)), 2), "max_pct": round(max(change), 2)}

        figures["again"] = {"minutes_later": round((again["at"] - profiled.get("at", again["at"])) / 60),
                            "seconds": again["seconds"], "predictions": moved(predicted_later, predicted),
                            "truth": moved(later, measured), "new_table": error_figures(predicted_later, later),
                            "first_table": error_figures(predicted, later),
                            "predicted_ms": [round(p, 4) for p in predicted_later],
                            "measured_ms": [round(m, 4) for m in later]}
    latest = later if args.again else measured
    transfers = [transfer(spec, t, loaded, space, configs, latest, pieces, work) for t in args.transfer]
    figures["transfer"] = [t for t in transfers if t is not None]
    figures["predicted_ms"] = [round(p, 4) for p in predicted]
    figures["measured_ms"] = [round(m, 4) for m in measured]
    return figures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--configs", type=int, default=20)
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default="/tmp/autoprune-latency-predictor")
    p.add_argument("--transfer", nargs="+", default=[], metavar="TABLE",
                   help="tables measured elsewhere (`shipped`: the package's) to check as they are and rescaled here")
    p.add_argument("--again", action="store_true",
                   help="profile each model once more (run it an hour after the first run) and compare predictions")
    p.add_argument("--max-seconds", type=float, default=float("inf"), help="start no new piece after this")
    args = p.parse_args()
    work = Path(args.cache)
    work.mkdir(parents=True, exist_ok=True)
    pieces = Pieces(work / "pieces.json", args.max_seconds)
    machine = {**this_machine(), "platform": platform.platform()}
    results = {spec: run_model(spec, args, pieces, work) for spec in args.models}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latency_predictor.json").write_text(json.dumps({"machine": machine, "settings": vars(args),
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
            f"per model, {args.configs} validation configs each (half search-like, half uniform), timed by an "
            f"independent harness in {args.passes} fresh-process passes (10 warm-up runs, median of 30 consecutive "
            f"runs, shuffled order). Error = (predicted - measured) / measured. Noise floor: the medians of the "
            f"even passes against those of the odd passes, as if one were a prediction of the other.\n\n" + "\n".join(rows)
            + "\n\nBy kind of config:\n\n" + "\n".join(by_kind) + "\n")
    (RESULTS / "latency_predictor.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
