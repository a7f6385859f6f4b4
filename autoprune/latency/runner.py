#!/usr/bin/env python3
"""Standalone latency runner: measures a profiling job and writes an autoprune latency table.

It needs only python3, numpy and onnxruntime (no torch, no autoprune), so the same file measures on
this machine (autoprune runs it in a fresh process, which times steadier than the process that just
pruned and exported) and on a remote device from a kit:

    python3 runner.py [JOB_DIR] --out table.json [--threads 1]
    python3 runner.py --time a.onnx b.onnx --json out.json   # end-to-end medians of whole models

A job directory holds manifest.json (written by `autoprune profile`), the micro-benchmark ONNX files
and the calibration models. Every measured entry is appended to JOB_DIR/measured.jsonl at once, so
an interrupted run continues where it stopped. autoprune imports the measuring loops, the
calibration (its features, fit and coefficients by name) and the error figures from here, so remote and
local tables are made and read the same way.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

try:  # as part of autoprune
    from .fingerprint import this_machine
    from .signature import Signature
except ImportError:  # standalone, beside these two files in a kit (or run as a script, even with python -I)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fingerprint import this_machine
    from signature import Signature

SCHEMA = "autoprune-latency-table"
# 2: a calibration's coefficients are stored by feature name. Version 1 tables (a list beside the list of
# their "features") are still read, by calibration_coef.
SCHEMA_VERSION = 2


class RunnerError(Exception):
    """A problem the person running the job must fix; printed as one line."""


# ---------------------------------------------------------------- timing loops

def _progress(total: int, desc: str):
    """tqdm where installed (it is with autoprune); a plain ETA line on bare devices."""
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="entry", file=sys.stderr, dynamic_ncols=True)
    except ImportError:
        return _PlainProgress(total, desc)


class _PlainProgress:
    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.done, self.start, self.shown = total, desc, 0, time.time(), 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.time()
        if now - self.shown > 5 or self.done == self.total:
            self.shown = now
            eta = (now - self.start) / max(self.done, 1) * (self.total - self.done)
            print(f"{self.desc}: {self.done}/{self.total}, ETA {eta:.0f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def summarize(samples: list[float]) -> dict:
    """Median and relative interquartile spread of timing samples (ms)."""
    a = np.asarray(samples, dtype=float)
    med = float(np.median(a))
    q1, q3 = np.percentile(a, [25, 75])
    return {"ms": med, "spread": float((q3 - q1) / med) if med > 0 else 0.0, "n": int(a.size)}


def measure_entries(keys, make_timed, warmup: int, repeats: int, log_path: Path | None, desc: str) -> dict:
    """Times each key's micro-benchmark once; `make_timed(key)` returns a callable that runs it once and
    returns the elapsed milliseconds. Results already in `log_path` are kept and not re-measured."""
    results = read_log(log_path) if log_path else {}
    todo = [k for k in keys if k not in results]
    bar = _progress(len(todo), desc)
    try:
        for key in todo:
            run = make_timed(key)
            for _ in range(warmup):
                run()
            results[key] = summarize([run() for _ in range(repeats)])
            if log_path:
                with open(log_path, "a") as f:  # one line per entry: an interruption loses at most one
                    f.write(json.dumps({"key": key, **results[key]}) + "\n")
            bar.update(1)
    finally:
        bar.close()
    return {k: results[k] for k in keys}


def read_log(path: Path) -> dict:
    out = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
                out[rec.pop("key")] = rec
            except (ValueError, KeyError, AttributeError):
                continue  # a line cut by an interruption
    return out


# Whole models are timed as deployment benchmarks do (onnxruntime_perf_test, trtexec): warm-up runs, then
# consecutive runs of one model, their median: steady-state latency. Rounds repeat that in a new random order
# of the models, so a drift of the machine spreads over all of them, and the median of the rounds' medians
# shrugs off a round that a neighbour's load disturbed.
STEADY = {"warmup": 5, "rounds": 3, "per_round": 20}


def time_models(runs: list, warmup: int = STEADY["warmup"], rounds: int = STEADY["rounds"],
                per_round: int = STEADY["per_round"], seed: int = 0) -> list[dict]:
    """Steady-state latency of several models: {"ms": median of the rounds' medians, "spread", "n", "rounds_ms": each
    round's median, for ratios taken round by round}."""
    medians: list[list[float]] = [[] for _ in runs]
    samples: list[list[float]] = [[] for _ in runs]
    order = list(range(len(runs)))
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for i in order:
            for _ in range(warmup):
                runs[i]()
            times = [runs[i]() for _ in range(per_round)]
            medians[i].append(float(np.median(times)))
            samples[i].extend(times)
    return [{**summarize(s), "ms": float(np.median(m)), "rounds_ms": m} for s, m in zip(samples, medians)]


def ort_timed(path: str | Path, threads: int, provider: str = "CPUExecutionProvider"):
    """A callable running the ONNX model once on fixed random inputs and returning the elapsed ms."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=[provider])
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal([int(d) for d in i.shape]).astype(np.float32) for i in session.get_inputs()}
    run = session.run

    def timed() -> float:
        start = time.perf_counter()
        run(None, feeds)
        return (time.perf_counter() - start) * 1e3

    return timed


# ---------------------------------------------------------------- statistics

def kendall_tau(x, y) -> float:
    """Kendall's tau-b (ties counted as in scipy), written out because the runner may not have scipy."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    iu = np.triu_indices(len(x), 1)
    dx, dy = dx[iu], dy[iu]
    denom = np.sqrt(np.count_nonzero(dx) * np.count_nonzero(dy))
    return float(np.sum(dx * dy) / denom) if denom else 0.0


def error_figures(predicted, measured) -> dict:
    """The predictor's error on end-to-end measurements, as README and tables report it."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    err = (p - m) / m * 100
    return {
        "n": int(m.size),
        "mape_pct": round(float(np.mean(np.abs(err))), 3),
        "worst_pct": round(float(err[np.argmax(np.abs(err))]), 3),
        "within_5pct": round(float(np.mean(np.abs(err) <= 5)), 4),
        "within_10pct": round(float(np.mean(np.abs(err) <= 10)), 4),
        "kendall_tau": round(kendall_tau(p, m), 4),
    }


# ---------------------------------------------------------------- the calibration

# Calibration: measured ~ a*dense + b*depthwise + c*weight_MB + d*activation_MB + e, where dense and
# depthwise sum the entries of each kind of kernel. What each term models (DESIGN.md, and validation):
# a lone micro-benchmark keeps its weights in cache while the network streams them (weight MB); a
# micro-model pays ORT's layout conversions at its input and output (activation MB); memory-bound
# depthwise kernels run at another speed inside the network than alone (their own slope); each
# micro-benchmark's entry carries a run's fixed cost that the network pays once a pass, not once a kernel
# (the kernels a config runs: constant over widths, fewer where blocks are removed, benchmarks/results/
# latency_predictor-depth.md); the constant is the per-pass overhead and the layers between.
CALIBRATION_FEATURES = ["dense_ms", "depthwise_ms", "weight_mb", "activation_mb", "kernels", "const"]
# Features added after a release: its tables were fitted without them, as if their coefficient were 0.
LATER_FEATURES = ("kernels",)


def kernel_feature(key: str) -> str:
    """The feature a kernel's entry adds to: depthwise kernels have a slope of their own."""
    return "depthwise_ms" if Signature.parse(key).depthwise else "dense_ms"


def zero_features() -> dict[str, float]:
    """Calibration features by name before a config's kernels and MB are added; the constant's is 1."""
    return {name: 1.0 if name == "const" else 0.0 for name in CALIBRATION_FEATURES}


def config_features(entries: dict, keys: list[str], weight_mb: float, activation_mb: float) -> dict[str, float]:
    """A config's calibration features by name (CALIBRATION_FEATURES)."""
    features = {**zero_features(), "weight_mb": weight_mb, "activation_mb": activation_mb, "kernels": len(keys)}
    for key in keys:
        features[kernel_feature(key)] += entries[key]["ms"]
    return features


def calibrated_ms(coef: dict[str, float], features: dict[str, float]) -> float:
    """The calibration applied to a config's features, each coefficient to the feature of its name."""
    return sum(coef[name] * features[name] for name in CALIBRATION_FEATURES)


def calibration_coef(calibration: dict) -> dict[str, float] | None:
    """A stored calibration's coefficients by feature name, or None if it holds none readable. Version 1
    stored them as a list beside the list of their "features": the names make that form unambiguous."""
    coef, names = calibration.get("coef"), calibration.get("features")
    if isinstance(coef, list) and isinstance(names, list) and len(coef) == len(names):
        coef = dict(zip(names, coef))
    if not isinstance(coef, dict):
        return None
    return {**{name: 0.0 for name in LATER_FEATURES}, **coef}


def fit_calibration(features: list[dict[str, float]], measured) -> dict:
    """Least-squares fit of what the sum of entries misses; stores the fit's own residuals.

    The fit minimizes relative errors (each row divided by its measurement): budgets and the error
    figures are relative, and an absolute fit lets the largest configs decide the constant, which
    then misses the smallest ones (resnet18: worst validation error 12.8% absolute, 8.5% relative).
    A feature that does not vary over the configs (no depthwise kernels in a ResNet) gets the
    minimum-norm coefficient 0 from lstsq, so one feature set serves every model.
    """
    X = np.asarray([[f[name] for name in CALIBRATION_FEATURES] for f in features], float)
    y = np.asarray(measured, float)
    coef, *_ = np.linalg.lstsq(X / y[:, None], np.ones_like(y), rcond=None)
    fitted = X @ coef
    return {
        "coef": {name: float(c) for name, c in zip(CALIBRATION_FEATURES, coef)},
        "configs": int(y.size),
        "residuals_pct": [round(float(r), 3) for r in (fitted - y) / y * 100],
        "fit": error_figures(fitted, y),
    }


# ---------------------------------------------------------------- the table file

def device_block(backend: str, backend_version: str, threads: int, batch: int, dtype: str, gpu: str | None) -> dict:
    """What the table was measured on, read from the machine running this (fingerprint.py: CPU model, cores,
    ISA flags, GPU), with the software that timed it."""
    return {
        **this_machine(gpu),
        "os": platform.platform(),
        "python": platform.python_version(),
        "backend": backend,
        "backend_version": backend_version,
        "threads": threads,
        "batch": batch,
        "dtype": dtype,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def merge_into(path: Path, device: dict, settings: dict, entries: dict, model_key: str, model: dict) -> dict:
    """Adds entries and a model to the table at `path` (created if absent); a table never mixes backends,
    thread counts, batch sizes or dtypes, because its entries would not be comparable."""
    if path.is_file():
        try:
            table = json.loads(path.read_text())
        except ValueError as exc:
            raise RunnerError(f"{path} exists but is not valid JSON ({exc}); choose another --out") from exc
        if not isinstance(table, dict) or table.get("schema") != SCHEMA:
            raise RunnerError(f"{path} exists and is not an autoprune latency table; choose another --out")
        old = table.get("device", {})
        for field in ("backend", "threads", "batch", "dtype"):
            if old.get(field) != device[field]:
                raise RunnerError(
                    f"{path} holds {field}={old.get(field)!r}, this run measures {device[field]!r}: use another --out"
                )
        table["version"] = SCHEMA_VERSION  # the model written now is in this version's form; older ones still read
    else:
        table = {"schema": SCHEMA, "version": SCHEMA_VERSION, "entries": {}, "models": {}}
    table["device"] = device
    table["settings"] = settings
    table["entries"].update(entries)
    table["entries"] = dict(sorted(table["entries"].items()))
    table["models"][model_key] = model
    write_json(path, table)
    return table


def write_json(path: Path, data: dict) -> None:
    """Writes via a temporary file so an interruption never leaves a truncated table behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------- a profiling job

def run_job(job: Path, out: Path, threads: int | None = None, make_timed=None, backend_version: str | None = None,
            gpu: str | None = None) -> dict:
    """Measures the job's entries and calibration models, fits, validates and merges into `out`.

    `make_timed(path)` defaults to ONNX Runtime on the manifest's provider; autoprune passes torch
    timers for the torch backends.
    """
    manifest = json.loads((job / "manifest.json").read_text())
    settings = manifest["settings"]
    threads = threads or manifest["threads"]
    if make_timed is None:
        import onnxruntime as ort

        provider = manifest["provider"]
        if provider not in ort.get_available_providers():
            raise RunnerError(f"onnxruntime here has no {provider} (it has {', '.join(ort.get_available_providers())})")
        make_timed = lambda path: ort_timed(job / path, threads, provider)  # noqa: E731
        backend_version = ort.__version__
        gpu = _nvidia_gpu_name() if provider == "CUDAExecutionProvider" else None
    files = manifest["entries"]
    entries = measure_entries(
        list(files), lambda key: make_timed(files[key]), settings["warmup"], settings["repeats"],
        job / "measured.jsonl", "entries",
    )
    known = dict(manifest.get("known_entries", {}))
    known.update(entries)
    model = dict(manifest["model"])
    for part in ("calibration", "validation"):
        configs = manifest.get(part, [])
        if not configs:
            continue
        measured = _measure_configs(job, part, configs, make_timed, settings)
        features = [config_features(known, c["keys"], c["weight_mb"], c["activation_mb"]) for c in configs]
        if part == "calibration":
            model["calibration"] = fit_calibration(features, measured)
        else:
            predicted = [calibrated_ms(model["calibration"]["coef"], f) for f in features]
            model["validation"] = {**error_figures(predicted, measured), "seed": manifest.get("validation_seed"),
                                   "predicted_ms": [round(p, 4) for p in predicted],
                                   "measured_ms": [round(m, 4) for m in measured]}
    device = device_block(manifest["backend"], backend_version, threads, manifest["batch"], manifest["dtype"], gpu)
    return merge_into(out, device, settings, entries, manifest["model_key"], model)


def _nvidia_gpu_name() -> str | None:
    """The GPU's name without torch: nvidia-smi ships with the driver."""
    import subprocess

    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def _measure_configs(job: Path, part: str, configs: list, make_timed, settings: dict) -> list[float]:
    """End-to-end medians of whole pruned models, cached in the job so a resumed run reuses them."""
    cache = job / f"{part}.json"
    ids = [c["file"] for c in configs]
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("files") == ids:
            return saved["ms"]
    print(f"{part}: timing {len(configs)} whole models end to end", file=sys.stderr, flush=True)
    stats = time_models([make_timed(f) for f in ids], settings.get("model_warmup", STEADY["warmup"]),
                        settings["rounds"], settings["per_round"])
    ms = [s["ms"] for s in stats]
    write_json(cache, {"files": ids, "ms": ms, "stats": stats})
    return ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure an autoprune latency job (needs numpy and onnxruntime).")
    parser.add_argument("job", nargs="?", default=str(Path(__file__).resolve().parent), help="job directory")
    parser.add_argument("--out", help="table file to write or grow")
    parser.add_argument("--threads", type=int, default=None, help="override the job's thread count")
    parser.add_argument("--time", nargs="+", metavar="ONNX", help="only time these whole models end to end")
    parser.add_argument("--json", help="with --time: where to write the medians")
    parser.add_argument("--provider", default="CPUExecutionProvider")
    parser.add_argument("--warmup", type=int, default=STEADY["warmup"], help="untimed runs before each round's")
    parser.add_argument("--rounds", type=int, default=STEADY["rounds"])
    parser.add_argument("--per-round", type=int, default=STEADY["per_round"], help="consecutive timed runs")
    args = parser.parse_args(argv)
    try:
        if args.time:
            runs = [ort_timed(p, args.threads or 1, args.provider) for p in args.time]
            stats = time_models(runs, args.warmup, args.rounds, args.per_round)
            text = json.dumps({"device": this_machine(_nvidia_gpu_name() if "CUDA" in args.provider else None),
                               "files": [Path(p).name for p in args.time], "stats": stats})
            Path(args.json).write_text(text) if args.json else print(text)
            return 0
        job = Path(args.job)
        if not (job / "manifest.json").is_file():
            raise RunnerError(f"no manifest.json in {job}: run this inside an unpacked autoprune kit")
        out = Path(args.out or job / "table.json")
        table = run_job(job, out, args.threads)
    except RunnerError as exc:
        print(f"runner: error: {exc}", file=sys.stderr)
        return 2
    model = table["models"][json.loads((job / "manifest.json").read_text())["model_key"]]
    print(f"wrote {out} ({len(table['entries'])} entries)")
    if "validation" in model:
        v = model["validation"]
        print(f"validation on {v['n']} held-out configs: MAPE {v['mape_pct']:.2f}%, worst {v['worst_pct']:+.1f}%, "
              f"within 10% {v['within_10pct']:.0%}, Kendall tau {v['kendall_tau']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
