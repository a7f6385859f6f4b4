"""Rescale: adapt a table measured on another machine to this one in seconds, instead of profiling again.

The unpruned model and a few pruned configs are timed end to end here. Moving between CPUs changes the
kernels' speed and the per-call overhead by different amounts (AVX-512 vs AVX2 speeds up convolutions, not
the calls between them), so the calibration's terms are refitted in two parts: its compute terms (the
kernels' ms) and its overhead terms (weight and activation MB, the kernels run, the constant), each by the factor that best
maps the table's predictions onto the measurements (least squares on relative error). The ranking within
each part stays the table's. With fewer than MIN_TWO_TERMS models, or when the two parts cannot be told apart
(a factor that comes out non-positive), one factor scales them all: the median ratio measured / predicted.
"""
from __future__ import annotations

import copy
import random
import statistics
import sys
import warnings
from pathlib import Path

import numpy as np

from ..models.specs import LoadedModel
from ..pruning.prune import prune
from ..pruning.space import SearchSpace
from .backends import get_backend
from .measure import measure_models_ms
from .predict import ForeignTableWarning, LatencyPredictor
from .runner import CALIBRATION_FEATURES, SCHEMA_VERSION, device_block, error_figures
from .table import LatencyTable

DEFAULT_CONFIGS = 8
# The calibration's features, split into the parts that move apart between machines.
TERMS = {"compute": ("dense_ms", "depthwise_ms"), "overhead": ("weight_mb", "activation_mb", "kernels", "const")}
# Two factors from fewer models than this would fit the timing noise.
MIN_TWO_TERMS = 4


def fit_factors(coef: dict[str, float], features: list[dict[str, float]], measured: list[float],
                terms: bool = True) -> dict[str, float]:
    """{term: factor} mapping `coef`'s predictions of `features` onto `measured`; one shared factor unless
    `terms` and there are enough models to tell the parts apart."""
    parts = np.asarray([[sum(coef[n] * f[n] for n in names) for names in TERMS.values()] for f in features])
    y = np.asarray(measured, float)
    one = statistics.median(y / parts.sum(axis=1))
    if terms and len(y) >= MIN_TWO_TERMS:
        factors, *_ = np.linalg.lstsq(parts / y[:, None], np.ones_like(y), rcond=None)
        if (factors > 0).all():
            return {term: float(f) for term, f in zip(TERMS, factors)}
    return {term: float(one) for term in TERMS}


def scaled_coef(coef: dict[str, float], factors: dict[str, float]) -> dict[str, float]:
    term_of = {name: term for term, names in TERMS.items() for name in names}
    return {name: coef[name] * factors[term_of[name]] for name in CALIBRATION_FEATURES}


def rescale(loaded: LoadedModel, space: SearchSpace, table: LatencyTable, out: str | Path,
            configs: int = DEFAULT_CONFIGS, seed: int = 0, terms: bool = True) -> tuple[LatencyTable, dict]:
    """Writes to `out` a table for this machine holding the model's layout with its calibration refitted;
    returns it and {"factors", "scale", "before", "after"} (error figures on the timed configs; "scale" is the
    unpruned model's measured / predicted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForeignTableWarning)  # a foreign table is what this is for
        predictor = LatencyPredictor(table, space)
    rng = random.Random(seed)
    chosen = [space.full_config()] + [space.random_config(rng) for _ in range(max(1, configs - 1))]
    features = [predictor.features(c) for c in chosen]
    predicted = [predictor.predict(c) for c in chosen]
    print(f"timing {len(chosen)} models end to end on {table.backend} here", file=sys.stderr)
    stats = measure_models_ms([prune(loaded.model, space, c) for c in chosen], loaded.example_input(table.batch),
                              table.backend, table.threads, precision=table.precision)
    measured = [ms for ms, _ in stats]
    factors = fit_factors(predictor.coef, features, measured, terms)
    coef = scaled_coef(predictor.coef, factors)
    refitted = [sum(coef[n] * f[n] for n in CALIBRATION_FEATURES) for f in features]
    figures = {"factors": {t: round(f, 4) for t, f in factors.items()}, "scale": round(refitted[0] / predicted[0], 4),
               "before": error_figures(predicted, measured), "after": error_figures(refitted, measured)}

    data = copy.deepcopy(table.data)
    data["version"] = SCHEMA_VERSION  # the calibration below is written in this version's form
    model = data["models"][predictor.key]
    calibration = model["calibration"]
    calibration.pop("features", None)  # a version 1 table's names: they key the coefficients now
    calibration["coef"] = coef
    calibration["rescaled"] = {"factors": factors, "configs": len(chosen), "seed": seed}
    # Its held-out figures were the other machine's; these configs (the factors fitted on them) stand in.
    model["validation"] = {**figures["after"], "seed": seed, "from": "rescale",
                           "predicted_ms": [round(p, 4) for p in refitted], "measured_ms": [round(m, 4) for m in measured]}
    data["models"] = {predictor.key: model}
    backend = get_backend(table.backend, table.precision)
    device = table.device
    data["device"] = {**device_block(device["backend"], backend.version(), device["threads"], device["batch"],
                                     device["dtype"], backend.gpu_name()), "rescaled_from": device}
    rescaled = LatencyTable(data, Path(out))
    rescaled.save()
    return rescaled, figures
