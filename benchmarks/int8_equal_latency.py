"""Prune, quantise, or both? At one measured latency on this CPU: unpruned int8, pruned float, pruned int8.

Runs on search_quality.py's cache and results (its base model, JPEG data and fine-tune protocol; run it first):
 1. the unpruned base fine-tuned like every method there (--ft-epochs of its settings, seed 0), then quantised
    (ORT static QDQ, calibrated on 256 JPEG training images: precision.calibration_samples), top-1 of the int8
    file on all 10,000 JPEG test images;
 2. 5 copies of the unpruned model in float32 and in int8 timed in one harness run: what int8 alone buys;
 3. at each search-quality budget (a share of the unpruned float model's measured latency): the pruned float rows
    are search_quality's (its autoprune pick and its best method, fine-tuned there); the pruned int8 row is
    `autoprune.search --dtype int8` from the same base at that latency in int8 terms (the share times the float
    over int8 unpruned ratio measured in 2), its front timed in int8 with 5 copies of the unpruned float model and
    the most accurate member within the budget taken (if none is, searched again with the --margin the fastest
    missed it by: common.retarget_margin), fine-tuned one-shot like the float pick, then quantised and
    scored as in 1 (where int8 alone is within the budget, the unpruned int8 model is the int8 row's rival too);
 3b. where int8 alone fits every one of those budgets, also at --below-int8 (0.85) of the unpruned int8 model's
    measured latency, where it does not and pruning is needed in either precision: the int8 row as in 3, and the
    float row made here the same way (`autoprune.search` in float32 at that share of the float model, its front
    timed in float32, the most accurate member within taken, fine-tuned alike), scored in float32 and, quantised
    after its fine-tune, in int8 (prune in float, then quantise: what a user without an int8 search would do);
 4. every row of a budget timed in its precision with 5 copies of the unpruned float model in one harness run (a
    row's share of the unpruned model taken pass by pass, as search_quality takes it).
No timing pass starts while the machine is loaded. Writes benchmarks/results/int8_equal_latency.{md,json}.

    python benchmarks/int8_equal_latency.py [--sq-cache DIR] [--cache DIR]
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import autoprune
from autoprune.data.sources import load_data
from autoprune.latency.fingerprint import this_machine
from autoprune.models.specs import load_model
from autoprune.models.onnx_io import OnnxModule
from autoprune.precision import calibration_samples, precision
from autoprune.training.finetune import finetune
from autoprune.pruning.prune import prune
from autoprune.pruning.space import Granularity, build_space
from autoprune.study import reopen
from autoprune.data.task import evaluate_top1

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, Pieces, jpeg_folder, retarget_margin, write_results  # noqa: E402
from latency_predictor import split_reference, timed_beside  # noqa: E402
from search_quality import MODEL, RIVALS, UNPRUNED_COPIES, digest  # noqa: E402

FLOAT_ROWS = ("autoprune", "autoprune, progressive")  # the search's pick as search_quality exported it


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sq-cache", default="/tmp/autoprune-search-quality", help="search_quality.py's --cache")
    p.add_argument("--sq-results", default=str(RESULTS / "search_quality.json"))
    p.add_argument("--cache", default="/tmp/autoprune-int8-equal-latency")
    p.add_argument("--budgets", type=float, nargs="+", default=None, help="some of search_quality's (default: all)")
    p.add_argument("--below-int8", type=float, default=0.85,
                   help="where int8 alone fits every budget, also compare at this share of the unpruned int8 "
                        "model's measured latency (0: not)")
    # 7 passes left two copies of one architecture 22% apart on an EPYC whose speed moves by 1.3x; 21: 2%.
    p.add_argument("--passes", type=int, default=21)
    p.add_argument("--threads", type=int, default=2, help="torch threads for the fine-tunes (1: two runs side by side)")
    p.add_argument("--max-seconds", type=float, default=float("inf"), help="start no new piece after this")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    sq = json.loads(Path(args.sq_results).read_text())
    settings, sq_cache, cache = sq["settings"], Path(args.sq_cache), Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    pieces = Pieces(cache / "pieces.json", args.max_seconds)
    base_path = Path(settings["base_weights"]) if settings["base_weights"] else sq_cache / "base.pt"
    shipped = load_model(MODEL, weights="shipped")
    jpeg = load_data(f"imagefolder:{jpeg_folder(settings['jpeg'], sq_cache)}", shipped, seed=settings["seed"])
    base = load_model(MODEL, weights=base_path)
    example = base.example_input()
    samples = calibration_samples(jpeg.proxy_train, settings["seed"])

    def timed(models: list, dtypes: list[str]) -> dict:
        return timed_beside(base.model, models, example, args.passes, UNPRUNED_COPIES, dtypes)

    def int8_top1(name: str, model, config: dict | None) -> dict:
        """Fine-tuned as search_quality fine-tunes, then quantised: top-1 of the int8 file and of the float model."""
        def run():
            start = time.time()
            print(f"fine-tuning {name} ({settings['ft_epochs']:g} epochs), then int8", flush=True)
            key = digest(config, settings["seed"], settings["ft_epochs"])
            tuned = finetune(copy.deepcopy(model), jpeg, epochs=settings["ft_epochs"], seed=settings["seed"],
                             checkpoint=str(cache / f"ft-{key}.ckpt"), progress=False).eval()
            int8 = OnnxModule(precision("int8").onnx_bytes(tuned, samples[0][:1], dynamic_batch=True, samples=samples))
            return {"top1": evaluate_top1(int8, jpeg.test), "float_top1": evaluate_top1(tuned, jpeg.test),
                    "seconds": round(time.time() - start)}

        return pieces.get(f"int8/{digest(config)}", run)

    unpruned_int8 = int8_top1("the unpruned base", base.model, None)
    reference = pieces.get("reference", lambda: timed([base.model] * UNPRUNED_COPIES, ["int8"] * UNPRUNED_COPIES))
    float_ms, int8_shares = split_reference(reference)
    int8_ms = float_ms * float(np.median(int8_shares))
    results = {"unpruned": {"float32_ms": float_ms, "int8_ms": int8_ms, "int8_top1": unpruned_int8,
                            "base_float_top1": sq["base_test_top1"], "load": reference["load"]}}

    fine = build_space(base, Granularity(multiple_of=1, min_keep=0.01))  # any width the float methods chose

    def matched_pick(budget: str, share: float, dtype: str) -> tuple[dict, object, dict]:
        """`autoprune.search --dtype dtype` from the base at `share` of the unpruned float model, its front timed in
        `dtype` with copies of the unpruned float model, and the most accurate member measured within `share`."""
        in_dtype = f"{share * float_ms / (int8_ms if dtype == 'int8' else float_ms):.4f}x"
        margin, tried = "0", []
        for suffix in ("", "-margin"):  # the second only if none of the first front fits: under it by what that missed
            key, out = f"{budget}/{dtype}{suffix.replace('-', '/')}", cache / f"search-{budget}-{dtype}{suffix}"
            searched = pieces.get(f"{key}/search", lambda: search_in(dtype, in_dtype, base_path, out, settings["seed"],
                                                                     margin))
            _, ctx = reopen(out)
            front = [(m["config"], ctx.prune(m["config"])[0]) for m in searched["front"]]
            ladder = pieces.get(f"{key}/ladder", lambda: timed([m for _, m in front], [dtype] * len(front)))
            unpruned_ms, ladder_shares = split_reference(ladder)
            fits = [i for i, s in enumerate(ladder_shares) if s <= share]
            pick = fits[0] if fits else int(np.argmin(ladder_shares))
            config, model = front[pick]
            tried.append({"margin": margin, "measured_share": ladder_shares[pick], "fits": bool(fits)})
            if fits:
                break
            margin = retarget_margin(ladder_shares[pick] * unpruned_ms, share * unpruned_ms,
                                     ctx.predictor.predict(config), ctx.target_ms)
        return config, model, {k: v for k, v in searched.items() if k != "front"} | {"tried": tried}

    budgets = list(args.budgets or settings["budgets"])
    if args.below_int8 and all(share * float_ms >= int8_ms for share in budgets):  # int8 alone fits every budget
        budgets.insert(0, round(args.below_int8 * int8_ms / float_ms, 3))
    for share in budgets:
        budget = f"{share:g}x"
        rows = {"unpruned int8": {"precision": "int8", "model": base.model, "top1": unpruned_int8["top1"]}}
        in_int8 = share * float_ms / int8_ms  # the budget as a share of the unpruned int8 model
        if in_int8 < 1:
            config, model, searched = matched_pick(budget, share, "int8")
            tuned = int8_top1("the int8 search's pick", model, config)
            rows["autoprune int8 (int8)"] = {"precision": "int8", "model": model, "config": config, **tuned,
                                            "search": searched}
        sq = json.loads(Path(args.sq_results).read_text())  # read again: search_quality may have run meanwhile
        if all(f"{budget}/{name}" in sq["results"] for name in (*FLOAT_ROWS, *RIVALS)):
            best = max(RIVALS, key=lambda m: sq["results"][f"{budget}/{m}"]["top1"][0])
            for name in (*FLOAT_ROWS, best):
                r = sq["results"][f"{budget}/{name}"]
                rows[f"{name} (float32)"] = {"precision": "float32", "top1": r["top1"][0], "config": r["config"],
                                             "model": prune(base.model, fine, r["config"]), "from": "search_quality"}
        else:  # a budget search_quality has no rows at: the float search's pick, fine-tuned here alike
            config, model, searched = matched_pick(budget, share, "float32")
            tuned = int8_top1("the float search's pick", model, config)
            rows["autoprune (float32)"] = {"precision": "float32", "model": model, "config": config,
                                           "top1": tuned["float_top1"], "search": searched}
            rows["autoprune, quantised (int8)"] = {"precision": "int8", "model": model, "config": config,
                                                   "top1": tuned["top1"], "search": searched}
        final = pieces.get(f"{budget}/measured", lambda: timed([r["model"] for r in rows.values()],
                                                               [r["precision"] for r in rows.values()]))
        final_unpruned_ms, final_shares = split_reference(final)
        results[budget] = {"share": share, "in_int8": in_int8, "unpruned_measured_ms": final_unpruned_ms,
                           "load": final["load"], "rows": {
                               name: {**{k: v for k, v in r.items() if k != "model"},
                                      "measured_ms": s * final_unpruned_ms, "measured_share": s}
                               for (name, r), s in zip(rows.items(), final_shares)}}
    report(results, this_machine(), settings, args.passes)


def search_in(dtype: str, budget: str, base_path: Path, out: Path, seed: int, margin: str = "0") -> dict:
    start = time.time()
    result = autoprune.search(budget=budget, out=str(out), weights=str(base_path), seed=seed, dtype=dtype,
                              margin=margin)
    front = [{"trial": m.trial, "score": m.proxy_accuracy, "config": m.config, "predicted_ms": m.predicted_ms}
             for m in result.front]  # most accurate first
    return {"front": front, "seconds": round(time.time() - start), "trials": result.trials,
            "score": result.extra["score"]}


def report(results: dict, machine: dict, settings: dict, passes: int) -> None:
    u = results["unpruned"]
    pct = lambda x: f"{100 * x:.2f}%"  # noqa: E731
    lines = [f"# Prune, quantise, or both: {MODEL} on {machine['cpu']} ({machine['cores']} cores, ISA "
             f"{' '.join(machine['isa'])})", "",
             "Written by `benchmarks/int8_equal_latency.py` (its docstring has the protocol) from "
             f"`search_quality.py`'s base and fine-tunes: every model fine-tuned {settings['ft_epochs']:g} epochs on "
             "the JPEG train set, top-1 on all 10,000 JPEG test images, int8 = ONNX Runtime static QDQ calibrated on "
             "256 training images; latency by the independent harness (ORT CPU, 1 thread, batch 1; each budget's rows "
             f"timed together in {passes} passes).", "",
             f"Unpruned: float32 {u['float32_ms']:.3f} ms, int8 {u['int8_ms']:.3f} ms ({u['float32_ms'] / u['int8_ms']:.2f}x "
             f"faster, {u['int8_ms'] / u['float32_ms']:.2f}x of float); int8 top-1 {pct(u['int8_top1']['top1'])} "
             f"(the same fine-tune in float32: {pct(u['int8_top1']['float_top1'])}).", ""]
    for key, b in results.items():
        if key == "unpruned":
            continue
        lines += [f"## At {key} of the unpruned float model: at most {b['share'] * b['unpruned_measured_ms']:.3f} ms "
                  f"measured (the budget is {b['in_int8']:.2f}x of the unpruned int8 model; load {b['load']:.2f})", "",
                  "| model | precision | test top-1 | measured ms | measured / unpruned float | within |",
                  "|---|---|---|---|---|---|"]
        for name, r in sorted(b["rows"].items(), key=lambda kv: -kv[1]["top1"]):
            lines.append(f"| {name} | {r['precision']} | {pct(r['top1'])} | {r['measured_ms']:.3f} | "
                         f"{r['measured_share']:.3f} | {'yes' if r['measured_share'] <= b['share'] else 'NO'} |")
        if any("from" not in r for r in b["rows"].values() if r["precision"] == "float32"):
            lines += ["", "The float32 rows at this budget were searched and fine-tuned here (search_quality.py has no "
                      "rows at it), one-shot like the int8 row."]
        within = {n: r for n, r in b["rows"].items() if r["measured_share"] <= b["share"]}
        if within:
            win = max(within, key=lambda n: within[n]["top1"])
            others = [n for n in within if n != win]
            runner = max(others, key=lambda n: within[n]["top1"]) if others else None
            lines += ["", f"Within the budget, {win} wins" + (
                f", {100 * (within[win]['top1'] - within[runner]['top1']):.2f} points over {runner}." if runner else ".")]
        lines.append("")
    write_results("int8_equal_latency", {"machine": machine, "passes": passes, "results": results}, lines)


if __name__ == "__main__":
    main()
