"""Does this machine hold its speed? The limit of every latency figure taken on it.

The unpruned cifar:resnet56 (float32 ONNX, ORT CPU, 1 thread, batch 1) timed by --processes fresh processes
that import only onnxruntime and numpy (harness.steady_blocks), each for --seconds in blocks of 100 consecutive runs
after 50 warm-up runs; the figure is how far the block medians move (min, max, max/min) within a process and across
processes. On a machine that holds its speed they agree within a few percent; where they do not, no table and no harness can be
more exact than that spread. Run it with nothing else on the machine (it waits for a quiet one).
Writes benchmarks/results/machine_steadiness.{md,json}.

    python benchmarks/machine_steadiness.py [--processes 3] [--seconds 8]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from autoprune.latency.fingerprint import this_machine
from autoprune.models.specs import load_model
from autoprune.precision import precision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import described, write_results  # noqa: E402
from harness import steady_blocks, wait_until_quiet  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8.0)
    args = p.parse_args()
    loaded = load_model("cifar:resnet56", weights="shipped")
    load = wait_until_quiet()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet56.onnx"
        path.write_bytes(precision("float32").onnx_bytes(loaded.model, loaded.example_input()))
        runs = [steady_blocks(str(path), args.seconds) for _ in range(args.processes)]
    machine = this_machine()
    every = [m for run in runs for m in run]
    lines = [f"# Machine steadiness: {described(machine)}", "",
             f"Written by `benchmarks/machine_steadiness.py`: cifar:resnet56 float32, ORT CPU, 1 thread, batch 1; "
             f"{args.processes} fresh processes, each {args.seconds:g} s in blocks of 100 runs; load {load:.2f} when "
             "it started.", "", "| process | blocks | min ms | median ms | max ms | max / min |", "|---|---|---|---|---|---|"]
    for k, run in enumerate(runs):
        lines.append(f"| {k} | {len(run)} | {min(run):.3f} | {np.median(run):.3f} | {max(run):.3f} | "
                     f"{max(run) / min(run):.2f} |")
    lines += ["", f"All blocks: {min(every):.3f} to {max(every):.3f} ms (max / min {max(every) / min(every):.2f}); "
              f"the processes' medians from {min(map(np.median, runs)):.3f} to {max(map(np.median, runs)):.3f} ms."]
    write_results("machine_steadiness", {"machine": machine, "settings": vars(args), "load": load,
                                         "block_medians_ms": runs}, lines)


if __name__ == "__main__":
    main()
