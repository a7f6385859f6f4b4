"""The check of a latency table against the independent harness (harness.py) that latency_predictor.py and int8.py
share: a fresh default profile of a model in a precision, validation configs drawn like a search's and uniformly, their
predictions against the harness's measurements, the harness's own noise floor; optionally the same model profiled and
timed again later, and tables from elsewhere used here as they are and rescaled here."""
from __future__ import annotations

import hashlib
import random
import time
import warnings
from pathlib import Path

import numpy as np

import autoprune
from autoprune.allocation.saliency import channel_saliency
from autoprune.allocation.widths import WidthSpace
from autoprune.assets import shipped_table_for
from autoprune.latency import LatencyPredictor, LatencyTable
from autoprune.latency.layout import model_key
from autoprune.latency.rescale import DEFAULT_CONFIGS, fit_factors, rescale
from autoprune.latency.runner import error_figures, kendall_tau
from autoprune.precision import precision
from autoprune.pruning.prune import prune

from common import Pieces, search_like
from harness import harness_pass, pass_medians

UNIFORM_SEED = 424242  # neither the profile's calibration (0) nor validate's default (12345)


def draw_configs(loaded, space, predictor, n: int, seed: int) -> list[dict]:
    """Half search-like (random points of the search's width space repaired to random budgets), half uniform."""
    rng = random.Random(seed)
    saliency = channel_saliency(loaded.model, space, None, "l1")
    widths = WidthSpace.for_model(loaded.model, space, loaded.example_input())
    configs = [{"kind": "search-like", "config": search_like(widths, predictor, saliency, rng, 0.35, 0.8)}
               for _ in range(n // 2)]
    uniform = random.Random(UNIFORM_SEED)
    configs += [{"kind": "uniform", "config": space.random_config(uniform)} for _ in range(n - n // 2)]
    return configs


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


def run_model(spec: str, args, pieces: Pieces, work: Path) -> dict:
    """A fresh default profile of `spec` in args.dtype, against the harness on args.configs configs (with args.depth,
    the profile and the configs of the space with its removable blocks)."""
    dtype = getattr(args, "dtype", "float32")
    depth = getattr(args, "depth", False)
    slug = spec.replace(":", "_") + ("" if dtype == "float32" else f"-{dtype}") + ("-depth" if depth else "")
    table_path = work / f"{slug}.json"
    spec_key = (spec if dtype == "float32" else f"{spec}/{dtype}") + ("/depth" if depth else "")

    def fresh_profile(path: Path) -> dict:
        path.unlink(missing_ok=True)
        start = time.time()
        autoprune.profile(spec, path, dtype=dtype, depth=depth)
        return {"seconds": round(time.time() - start, 1), "at": time.time()}

    profiled = pieces.get(f"{spec_key}/profile", lambda: fresh_profile(table_path))
    loaded = autoprune.api.load(spec)
    space = autoprune.inspect(spec, dtype=dtype, depth=depth)  # the configs a search in this precision would consider
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
    if depth:
        figures["blocks_removed"] = [len(space.removed_blocks(c["config"])) for c in configs]
    again_too = getattr(args, "again", False)
    if again_too:  # the same model profiled and timed again later: do the tables move more than the truth?
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
    latest = later if again_too else measured
    transfers = [transfer(spec, t, loaded, space, configs, latest, pieces, work)
                 for t in getattr(args, "transfer", [])]
    figures["transfer"] = [t for t in transfers if t is not None]
    figures["predicted_ms"] = [round(p, 4) for p in predicted]
    figures["measured_ms"] = [round(m, 4) for m in measured]
    return figures
