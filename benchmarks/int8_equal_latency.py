"""Prune, quantise, or both? At one measured latency on this CPU: unpruned int8, pruned float, pruned int8.

On search_quality.py's protocol (jpeg_protocol.py: the base, the JPEG data and the fine-tune) and its report
(--sq-results, by default the committed benchmarks/results/search_quality.json: its settings and its float rows);
everything this script trains or times it makes into its own --state (it reads no other script's state):
 0. the base, made here as search_quality makes it (the shipped weights fine-tuned --base-epochs of the report's
    settings on the JPEG train set, its seed), or --base-weights; its test top-1 is reported beside the report's;
 1. the unpruned base fine-tuned like every method there (--ft-epochs of its settings, seed 0), then quantised
    (ORT static QDQ, calibrated on 256 JPEG training images: precision.calibration_samples), top-1 of the int8
    file on all 10,000 JPEG test images;
 2. 5 copies of the unpruned model in float32 and in int8 timed in one harness run: what int8 alone buys;
 3. at each search-quality budget (a share of the unpruned float model's measured latency): the pruned float rows
    are search_quality's report's (its autoprune pick, one-shot and progressive, and its best other method: their
    widths and their test top-1, fine-tuned there; their models pruned here from the base and timed here); the
    pruned int8 row is
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

    python benchmarks/int8_equal_latency.py [--state DIR] [--sq-results FILE] [--jpeg FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from autoprune.latency.fingerprint import this_machine
from autoprune.models.onnx_io import OnnxModule
from autoprune.precision import calibration_samples, precision
from autoprune.pruning.prune import prune
from autoprune.pruning.space import Granularity, build_space
from autoprune.study import reopen
from autoprune.data.task import evaluate_top1

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (RESULTS, Pieces, add_state_argument, described, retarget_margin, state_dir,  # noqa: E402
                    write_results)
from harness import UNPRUNED_COPIES, split_reference, timed_beside  # noqa: E402
from jpeg_protocol import (BASE_EPOCHS, MODEL, add_jpeg_argument, digest, jpeg_data, make_base, searched,  # noqa: E402
                           tuned_top1)

FLOAT_ROWS = ("autoprune", "autoprune, progressive")  # the search's pick as search_quality exported it


def rivals(sq: dict) -> list[str]:
    """The report's methods that need no search (its rows not named autoprune...)."""
    methods = {r.get("method", "autoprune") for r in sq["results"].values()}  # timing and search rows have none
    return sorted(m for m in methods if not m.startswith("autoprune"))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sq-results", default=str(RESULTS / "search_quality.json"),
                   help="a search_quality report: its settings (fine-tune protocol, budgets) and its float rows")
    add_jpeg_argument(p)
    add_state_argument(p, "int8_equal_latency")
    p.add_argument("--base-weights", default=None, help="start from these weights (default: made into --state)")
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
    settings, cache = sq["settings"], state_dir(args.state, "int8_equal_latency")
    pieces = Pieces(cache / "pieces.json", args.max_seconds)
    shipped, jpeg = jpeg_data(args.jpeg, cache, settings["seed"])
    base_path = Path(args.base_weights) if args.base_weights else cache / "base.pt"
    base = make_base(shipped, jpeg, base_path, settings.get("base_epochs", BASE_EPOCHS), settings["seed"])
    base_top1 = pieces.get("base_test_top1", lambda: evaluate_top1(base.model, jpeg.test))
    example = base.example_input()
    samples = calibration_samples(jpeg.proxy_train, settings["seed"])

    def timed(models: list, dtypes: list[str]) -> dict:
        return timed_beside(base.model, models, example, args.passes, UNPRUNED_COPIES, dtypes)

    def int8_top1(name: str, model, config: dict | None) -> dict:
        """Fine-tuned as search_quality fine-tunes, then quantised: top-1 of the int8 file and of the float model."""
        def run():
            start = time.time()
            key = digest(config, settings["seed"], settings["ft_epochs"])
            tuned, scored = tuned_top1(model, jpeg, settings["ft_epochs"], settings["seed"], cache / f"ft-{key}.ckpt",
                                       f"{name}, then int8")
            int8 = OnnxModule(precision("int8").onnx_bytes(tuned, samples[0][:1], dynamic_batch=True, samples=samples))
            return {"top1": evaluate_top1(int8, jpeg.test), "float_top1": scored["top1"],
                    "seconds": round(time.time() - start)}

        return pieces.get(f"int8/{digest(config)}", run)

    unpruned_int8 = int8_top1("the unpruned base", base.model, None)
    reference = pieces.get("reference", lambda: timed([base.model] * UNPRUNED_COPIES, ["int8"] * UNPRUNED_COPIES))
    float_ms, int8_shares = split_reference(reference)
    int8_ms = float_ms * float(np.median(int8_shares))
    results = {"unpruned": {"float32_ms": float_ms, "int8_ms": int8_ms, "int8_top1": unpruned_int8,
                            "base_float_top1": base_top1, "report_base_float_top1": sq["base_test_top1"],
                            "load": reference["load"]}}

    fine = build_space(base, Granularity(multiple_of=1, min_keep=0.01))  # any width the float methods chose

    def matched_pick(budget: str, share: float, dtype: str) -> tuple[dict, object, dict]:
        """`autoprune.search --dtype dtype` from the base at `share` of the unpruned float model, its front timed in
        `dtype` with copies of the unpruned float model, and the most accurate member measured within `share`."""
        in_dtype = f"{share * float_ms / (int8_ms if dtype == 'int8' else float_ms):.4f}x"
        margin, tried = "0", []
        for suffix in ("", "-margin"):  # the second only if none of the first front fits: under it by what that missed
            key, out = f"{budget}/{dtype}{suffix.replace('-', '/')}", cache / f"search-{budget}-{dtype}{suffix}"
            search = pieces.get(f"{key}/search", lambda: searched(out, budget=in_dtype, weights=str(base_path),
                                                                  seed=settings["seed"], dtype=dtype, margin=margin))
            (ctx,) = reopen(out)[1].values()  # a search in `dtype` alone
            front = [(m["config"], ctx.prune(m["config"])[0]) for m in search["front"]]
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
        return config, model, {k: v for k, v in search.items() if k != "front"} | {"tried": tried}

    budgets = list(args.budgets or settings["budgets"])
    if args.below_int8 and all(share * float_ms >= int8_ms for share in budgets):  # int8 alone fits every budget
        budgets.insert(0, round(args.below_int8 * int8_ms / float_ms, 3))
    for share in budgets:
        budget = f"{share:g}x"
        rows = {"unpruned int8": {"precision": "int8", "model": base.model, "top1": unpruned_int8["top1"]}}
        in_int8 = share * float_ms / int8_ms  # the budget as a share of the unpruned int8 model
        if in_int8 < 1:
            config, model, search = matched_pick(budget, share, "int8")
            tuned = int8_top1("the int8 search's pick", model, config)
            rows["autoprune int8 (int8)"] = {"precision": "int8", "model": model, "config": config, **tuned,
                                            "search": search}
        sq = json.loads(Path(args.sq_results).read_text())  # read again: search_quality may have run meanwhile
        others = rivals(sq)
        if others and all(f"{budget}/{name}" in sq["results"] for name in (*FLOAT_ROWS, *others)):
            best = max(others, key=lambda m: sq["results"][f"{budget}/{m}"]["top1"][0])
            for name in (*FLOAT_ROWS, best):
                r = sq["results"][f"{budget}/{name}"]
                rows[f"{name} (float32)"] = {"precision": "float32", "top1": r["top1"][0], "config": r["config"],
                                             "model": prune(base.model, fine, r["config"]), "from": "search_quality"}
        else:  # a budget search_quality has no rows at: the float search's pick, fine-tuned here alike
            config, model, search = matched_pick(budget, share, "float32")
            tuned = int8_top1("the float search's pick", model, config)
            rows["autoprune (float32)"] = {"precision": "float32", "model": model, "config": config,
                                           "top1": tuned["float_top1"], "search": search}
            rows["autoprune, quantised (int8)"] = {"precision": "int8", "model": model, "config": config,
                                                   "top1": tuned["top1"], "search": search}
        final = pieces.get(f"{budget}/measured", lambda: timed([r["model"] for r in rows.values()],
                                                               [r["precision"] for r in rows.values()]))
        final_unpruned_ms, final_shares = split_reference(final)
        results[budget] = {"share": share, "in_int8": in_int8, "unpruned_measured_ms": final_unpruned_ms,
                           "load": final["load"], "rows": {
                               name: {**{k: v for k, v in r.items() if k != "model"},
                                      "measured_ms": s * final_unpruned_ms, "measured_share": s}
                               for (name, r), s in zip(rows.items(), final_shares)}}
    report(results, this_machine(), settings, args.passes)


def report(results: dict, machine: dict, settings: dict, passes: int) -> None:
    u = results["unpruned"]
    pct = lambda x: f"{100 * x:.2f}%"  # noqa: E731
    lines = [f"# Prune, quantise, or both: {MODEL} on {described(machine)}", "",
             "Written by `benchmarks/int8_equal_latency.py` (its docstring has the protocol) on `search_quality.py`'s "
             f"protocol, its float rows from search_quality's report: every model fine-tuned {settings['ft_epochs']:g} epochs on "
             "the JPEG train set, top-1 on all 10,000 JPEG test images, int8 = ONNX Runtime static QDQ calibrated on "
             "256 training images; latency by the independent harness (ORT CPU, 1 thread, batch 1; each budget's rows "
             f"timed together in {passes} passes).", "",
             f"Unpruned: float32 {u['float32_ms']:.3f} ms, int8 {u['int8_ms']:.3f} ms ({u['float32_ms'] / u['int8_ms']:.2f}x "
             f"faster, {u['int8_ms'] / u['float32_ms']:.2f}x of float); int8 top-1 {pct(u['int8_top1']['top1'])} "
             f"(the same fine-tune in float32: {pct(u['int8_top1']['float_top1'])}). The base, made here: "
             f"{pct(u['base_float_top1'])} (search_quality's report: {pct(u['report_base_float_top1'])}).", ""]
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
