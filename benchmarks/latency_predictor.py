"""Reproduces the predictor's validation figures of autoprune/assets/latency_tables/README.md on this machine.

    flock /work/cpu.lock python benchmarks/latency_predictor.py            # validate the shipped tables
    flock /work/cpu.lock python benchmarks/latency_predictor.py --profile  # profile fresh tables first (timed)

For each model: 30 random pruned configs (seed as in the README), predicted by the table vs measured end
to end with ONNX Runtime on the CPU, 1 thread, batch 1, in a fresh process, interleaved over rounds.
Where the table stores a validation of the same configs, the last columns compare the two measurement
passes of the same models: their Kendall tau (the ceiling for the predictor's) and the median ratio
new/stored (how far the machine drifted between passes).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from autoprune.assets import SHIPPED_TABLES
from autoprune.latency import LatencyTable
from autoprune.latency.profile import profile
from autoprune.latency.layout import model_key
from autoprune.latency.runner import kendall_tau
from autoprune.latency.validate import DEFAULT_SEED, validate
from autoprune.models import load_model
from autoprune.space import build_space

ROOT = Path(__file__).resolve().parent.parent
MODELS = {
    "torchvision:resnet18": SHIPPED_TABLES / "ort-cpu-resnet18.json",
    "torchvision:mobilenet_v2": SHIPPED_TABLES / "ort-cpu-mobilenet_v2.json",
}


def _repeatability(stored: dict, new: dict, seed: int) -> tuple[str, str]:
    """Agreement of this pass's measurements with the table's stored pass of the same configs."""
    old = stored.get("measured_ms")
    if not old or stored.get("seed") != seed or len(old) != len(new["measured_ms"]):
        return "-", "-"
    ratio = sorted(n / o for n, o in zip(new["measured_ms"], old))[len(old) // 2]
    return f"{kendall_tau(old, new['measured_ms']):.3f}", f"{(ratio - 1) * 100:+.1f}%"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--profile", action="store_true", help="profile fresh tables first and report the time")
    parser.add_argument("--plots", default=None, help="folder for predicted-vs-measured PNGs")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.models:
            loaded = load_model(spec)
            space = build_space(loaded)
            path, seconds = MODELS[spec], None
            if args.profile:
                path = Path(tmp) / path.name
                start = time.time()
                profile(loaded, space, "ort-cpu", path)
                seconds = time.time() - start
            table = LatencyTable.load(path, backend="ort-cpu", batch=1)
            plot = Path(args.plots) / f"{spec.split(':')[1]}.png" if args.plots else None
            stored = table.model(model_key(space)).get("validation", {})
            f = validate(loaded, space, table, args.samples, args.seed, save=False, plot=plot)
            rows.append((spec, len(table.entries), seconds, f, _repeatability(stored, f, args.seed)))
    print("| model | entries | profile s | MAPE % | worst % | within 5% | within 10% | Kendall tau "
          "| re-measured tau | drift |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for spec, n, seconds, f, (tau, drift) in rows:
        took = f"{seconds:.0f}" if seconds is not None else "-"
        print(f"| {spec} | {n} | {took} | {f['mape_pct']:.2f} | {f['worst_pct']:+.2f} | {f['within_5pct']:.0%} | "
              f"{f['within_10pct']:.0%} | {f['kendall_tau']:.3f} | {tau} | {drift} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
