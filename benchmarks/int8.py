"""INT8 on this CPU: does an int8 table predict as well as a float one, what does ORT really run, which widths are
fast in int8, and what does int8 buy over float32?

 1. for each model (--models): a fresh default profile in float32 and in int8 (`autoprune profile --dtype int8`:
    every kernel and calibration model statically quantised by ORT, QDQ U8S8 per-channel), each checked against
    the independent harness (harness.py) on --configs configs (half search-like, half uniform), with the
    harness's own noise floor (table_check.run_model, the protocol of latency_predictor.py's figures);
 2. what ORT runs: the kernels its CPU provider executed for the unpruned int8 model (QLinearConv or Conv);
 3. the staircase: a 3x3 convolution with batch norm and ReLU at 16x16, 64 input channels, timed by the harness
    for every output width 4..64 in float32 and int8: the widths a precision prefers;
 4. speed-up: the unpruned model in float32 and int8, timed by the harness in one run;
 5. what int8 costs in accuracy, on the README's int8 workflow: the embedded default searched in int8
    (--accuracy-budget; candidates scored as ORT runs them quantised), its pick exported with --int8 after
    --finetune-epochs, test top-1 of model.onnx and model.int8.onnx on the shipped test images (run first, as
    it loads the machine; its own latency figures are not reported here).
No timing starts while the machine is loaded (harness.wait_until_quiet). Every finished piece is kept in --state (a
stopped run resumes). Writes benchmarks/results/int8.{md,json,png}.

The user's question at one measured latency (unpruned int8, pruned float, pruned int8, each fine-tuned alike
and scored on all 10,000 JPEG test images) is int8_equal_latency.py's: it runs on search_quality.py's protocol.

    python benchmarks/int8.py [--models cifar:resnet56 torchvision:resnet18] [--state DIR]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

import autoprune
from autoprune.defaults import DEFAULT_MODEL as MODEL_DEFAULT
from autoprune.errors import LatencyCheckFailed
from autoprune.latency.fingerprint import this_machine
from autoprune.models.onnx_io import executed_ops
from autoprune.precision import precision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, Pieces, add_state_argument, described, state_dir, write_results  # noqa: E402
from harness import time_independently, wait_until_quiet  # noqa: E402
from table_check import run_model  # noqa: E402

DTYPES = ("float32", "int8")
WIDTHS = list(range(4, 65))


def staircase_conv(cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(64, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()).eval()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["cifar:resnet56", "torchvision:resnet18"])
    p.add_argument("--configs", type=int, default=20)
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    add_state_argument(p, "int8")
    p.add_argument("--accuracy-budget", default="0.95x", help="the int8 search's budget (step 5)")
    p.add_argument("--finetune-epochs", type=float, default=5.0, help="the int8 export's fine-tune (step 5)")
    p.add_argument("--max-seconds", type=float, default=float("inf"), help="start no new piece after this")
    args = p.parse_args()
    work = state_dir(args.state, "int8")
    pieces = Pieces(work / "pieces.json", args.max_seconds)
    machine = {**this_machine(), "platform": platform.platform()}
    # Step 5 first: it loads the machine, and the timing steps then wait until the load has gone.
    exported = pieces.get("int8-export", lambda: int8_export(work / "int8-search", args))
    quiet = wait_until_quiet()

    tables, ops, speed = {}, {}, {}
    for spec in args.models:
        for dtype in DTYPES:
            args.dtype = dtype
            tables[f"{spec} {dtype}"] = run_model(spec, args, pieces, work)
        loaded = autoprune.api.load(spec)
        example = loaded.example_input()
        ops[spec] = pieces.get(f"{spec}/ops", lambda: executed_ops(precision("int8").onnx_bytes(loaded.model, example),
                                                                   {"input": example.numpy()}))
        speed[spec] = pieces.get(f"{spec}/unpruned", lambda: dict(zip(DTYPES, [
            time_independently([loaded.model], example, args.passes, dtype)[0] for dtype in DTYPES])))

    x = torch.randn(1, 64, 16, 16)
    stairs = pieces.get("staircase", lambda: {dtype: time_independently([staircase_conv(c) for c in WIDTHS], x,
                                                                         args.passes, dtype) for dtype in DTYPES})
    plot(stairs, RESULTS / "int8.png")

    lines = [f"# INT8 on {described(machine)}", "",
             f"Written by `benchmarks/int8.py` (its docstring has the protocol); ONNX Runtime, 1 thread, batch 1; "
             f"load {quiet:.2f} when it started. VNNI: {'yes' if any('vnni' in f for f in machine['isa']) else 'no'}.",
             "", "| model | dtype | profile s | MAPE | worst | within ±10% | Kendall tau | noise floor: tau, MAPE |",
             "|---|---|---|---|---|---|---|---|"]
    for key, f in tables.items():
        spec, dtype = key.rsplit(" ", 1)
        lines.append(f"| {spec} | {dtype} | {f['profile_seconds']:.0f} | {f['mape_pct']:.2f}% | {f['worst_pct']:+.2f}% | "
                     f"{f['within_10pct']:.0%} | {f['kendall_tau']:.3f} | {f['noise_floor_tau']:.3f}, "
                     f"{f['noise_mape_pct']:.2f}% |")
    lines += ["", "Unpruned, timed by the harness in one run, and the kernels ORT executed for the int8 model:", "",
              "| model | float32 ms | int8 ms | speed-up | int8 kernels run |", "|---|---|---|---|---|"]
    for spec in args.models:
        s = speed[spec]
        run = ", ".join(f"{k} {v}" for k, v in sorted(ops[spec].items(), key=lambda kv: -kv[1])
                        if k in ("QLinearConv", "Conv", "FusedConv", "QLinearAdd", "Add", "QGemm", "Gemm"))
        lines.append(f"| {spec} | {s['float32']:.3f} | {s['int8']:.3f} | {s['float32'] / s['int8']:.2f}x | {run} |")
    ratio = np.array(stairs["float32"]) / np.array(stairs["int8"])
    lines += ["", f"Staircase (3x3 conv + BN + ReLU, 64 input channels, 16x16, output widths {WIDTHS[0]}-{WIDTHS[-1]}): "
              f"int8 speed-up over float32 from {ratio.min():.2f}x to {ratio.max():.2f}x; per multiple of 8 "
              f"{_by_multiple(stairs, 8)}; other widths {_by_multiple(stairs, 8, other=True)}.", "",
              "![latency against output channels](int8.png)", "",
              f"The int8 workflow on the embedded default (`autoprune search --budget {args.accuracy_budget} --dtype int8`, "
              f"{exported['trials']} trials, score: {exported['score']}; then `autoprune export --int8 "
              f"--finetune-epochs {args.finetune_epochs:g}` of trial {exported['trial']}): test top-1 on the shipped "
              f"{exported['test_images']} test images float32 {exported['test']['float32']:.2%}, int8 "
              f"{exported['test']['int8']:.2%} ({100 * (exported['test']['int8'] - exported['test']['float32']):+.2f} "
              f"points); the unpruned shipped model: {exported['unpruned_test']:.2%}.", "",
              "The equal-latency accuracy comparison (unpruned int8, pruned float, pruned int8, fine-tuned alike) "
              "is `benchmarks/int8_equal_latency.py`'s (results/int8_equal_latency.md)."]
    write_results("int8", {"machine": machine, "settings": vars(args), "tables": tables, "ops": ops, "unpruned": speed,
                           "staircase": {"widths": WIDTHS, **stairs}, "int8_export": exported}, lines)
    return 0


def int8_export(out: Path, args) -> dict:
    """Step 5: search the embedded default in int8, export the pick with --int8; both precisions' test top-1."""
    result = autoprune.search(budget=args.accuracy_budget, dtype="int8", out=str(out), seed=args.seed)
    try:
        autoprune.export(str(out), finetune_epochs=args.finetune_epochs, int8=True, seed=args.seed)
    except LatencyCheckFailed:  # timed beside other work or not, the accuracies are what this step reports
        pass
    report = json.loads((out / "export" / "report.json").read_text())
    from autoprune.data.sources import load_data

    test_images = len(load_data("cifar10-mini", autoprune.api.load(MODEL_DEFAULT)).test)
    return {"trials": result.trials, "score": result.extra["score"], "trial": report["trial"],
            "pick_score": report["proxy_accuracy"], "unpruned_test": report["unpruned_test_accuracy"],
            "test": {name: p["test_accuracy"] for name, p in report["precisions"].items()}, "test_images": test_images}


def _by_multiple(stairs: dict, step: int, other: bool = False) -> str:
    idx = [i for i, w in enumerate(WIDTHS) if (w % step == 0) != other]
    ratio = np.array(stairs["float32"])[idx] / np.array(stairs["int8"])[idx]
    return f"median {np.median(ratio):.2f}x"


def plot(stairs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for dtype in DTYPES:
        ax.plot(WIDTHS, 1e3 * np.array(stairs[dtype]), marker=".", label=dtype)
    for w in range(8, WIDTHS[-1] + 1, 8):
        ax.axvline(w, color="grey", linewidth=0.5, alpha=0.4)
    ax.set_xlabel("output channels (3x3 conv + BN + ReLU, 64 in, 16x16)")
    ax.set_ylabel("measured latency (us, ORT CPU, 1 thread)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
