"""How long one latency prediction takes: the search makes thousands of them.

Median microseconds per `LatencyPredictor.predict` call over random configs of each shipped table's model.

    python benchmarks/predictor_speed.py [--calls 2000]

Writes benchmarks/results/predictor_speed.{md,json}.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

from autoprune.assets import SHIPPED_TABLES
from autoprune.latency import LatencyPredictor, LatencyTable
from autoprune.latency.fingerprint import this_machine
from autoprune.models.specs import load_model
from autoprune.pruning.space import build_space

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import described, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = []
    for path in sorted(SHIPPED_TABLES.glob("*.json")):
        latency_table = LatencyTable.load(path)
        for key in latency_table.models:
            spec, _, shape = key.partition("@")
            space = build_space(load_model(spec, input_shape=shape))
            predictor = LatencyPredictor(latency_table, space)
            rng = random.Random(0)
            configs = [space.random_config(rng) for _ in range(args.calls)]
            predictor.predict(configs[0])  # builds the per-layer memo once, as a search does
            times = []
            for config in configs:
                start = time.perf_counter()
                predictor.predict(config)
                times.append(time.perf_counter() - start)
            rows.append({"table": path.name, "model": key, "groups": len(space.groups),
                         "median_us": round(1e6 * statistics.median(times), 1), "max_us": round(1e6 * max(times), 1)})
    machine = this_machine()
    lines = ["# One latency prediction", "",
             f"Written by `benchmarks/predictor_speed.py` on {described(machine)}: microseconds per "
             f"`LatencyPredictor.predict` call, {args.calls} random configs of each shipped table's model (after one "
             "call that builds the per-layer memo, as a search does).", "",
             "| table | model | groups | median us/call | max us/call |", "|---|---|---|---|---|"]
    lines += [f"| {r['table']} | {r['model']} | {r['groups']} | {r['median_us']:.0f} | {r['max_us']:.0f} |"
              for r in rows]
    write_results("predictor_speed", {"machine": machine, "calls": args.calls, "rows": rows}, lines)


if __name__ == "__main__":
    main()
