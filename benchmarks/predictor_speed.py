"""How long one latency prediction takes: the search makes thousands of them.

Median microseconds per `LatencyPredictor.predict` call over random configs of each shipped table's model.
Usage: python benchmarks/predictor_speed.py [--calls 2000]
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
import warnings

from autoprune.latency import LatencyPredictor, LatencyTable
from autoprune.models.specs import load_model
from autoprune.report import table
from autoprune.pruning.space import build_space
from autoprune.assets import SHIPPED_TABLES


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
            rows.append([key, str(len(space.groups)), f"{1e6 * statistics.median(times):.0f}",
                         f"{1e6 * max(times):.0f}"])
    print(table(["model", "groups", "median us/call", "max us/call"], rows))


if __name__ == "__main__":
    main()
