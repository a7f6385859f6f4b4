"""Rescale: adapt a table measured on another machine to this one in seconds, instead of profiling again.

The unpruned model and a few pruned configs are timed end to end here; the one factor that best maps the
table's predictions onto these measurements (their median ratio) scales the model's calibration. Moving
between CPUs mostly changes latency by a common factor (a table from one CPU ranked another's configs at
tau 0.94 with a constant bias), which one factor absorbs; the ranking stays the table's.
"""
from __future__ import annotations

import copy
import random
import statistics
import sys
import warnings
from pathlib import Path

from ..models import LoadedModel
from ..prune import prune
from ..space import SearchSpace
from .backends import get_backend
from .measure import measure_models_ms
from .predict import ForeignTableWarning, LatencyPredictor
from .runner import SCHEMA_VERSION, device_block, error_figures
from .table import LatencyTable

DEFAULT_CONFIGS = 8


def rescale(loaded: LoadedModel, space: SearchSpace, table: LatencyTable, out: str | Path,
            configs: int = DEFAULT_CONFIGS, seed: int = 0) -> tuple[LatencyTable, dict]:
    """Writes to `out` a table for this machine holding the model's layout with its calibration scaled;
    returns it and {"scale", "before", "after"} (error figures on the timed configs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForeignTableWarning)  # a foreign table is what this is for
        predictor = LatencyPredictor(table, space)
    rng = random.Random(seed)
    chosen = [space.full_config()] + [space.random_config(rng) for _ in range(max(1, configs - 1))]
    predicted = [predictor.predict(c) for c in chosen]
    print(f"timing {len(chosen)} models end to end on {table.backend} here", file=sys.stderr)
    stats = measure_models_ms([prune(loaded.model, space, c) for c in chosen], loaded.example_input(table.batch),
                              table.backend, table.threads, dtype=table.device["dtype"])
    measured = [ms for ms, _ in stats]
    scale = statistics.median(m / p for m, p in zip(measured, predicted))
    scaled = [p * scale for p in predicted]
    figures = {"scale": round(scale, 4), "before": error_figures(predicted, measured),
               "after": error_figures(scaled, measured)}

    data = copy.deepcopy(table.data)
    data["version"] = SCHEMA_VERSION  # the calibration below is written in this version's form
    model = data["models"][predictor.key]
    calibration = model["calibration"]
    calibration.pop("features", None)  # a version 1 table's names: they key the coefficients now
    calibration["coef"] = {name: c * scale for name, c in predictor.coef.items()}
    calibration["rescaled"] = {"scale": scale, "configs": len(chosen), "seed": seed}
    # Its held-out figures were the other machine's; these configs (one factor fitted on them) stand in.
    model["validation"] = {**figures["after"], "seed": seed, "from": "rescale",
                           "predicted_ms": [round(p, 4) for p in scaled], "measured_ms": [round(m, 4) for m in measured]}
    data["models"] = {predictor.key: model}
    backend = get_backend(table.backend)
    device = table.device
    data["device"] = {**device_block(device["backend"], backend.version(), device["threads"], device["batch"],
                                     device["dtype"], backend.gpu_name()), "rescaled_from": device}
    rescaled = LatencyTable(data, Path(out))
    rescaled.save()
    return rescaled, figures
