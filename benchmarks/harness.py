"""The benchmarks' one timing harness: it shares no code with autoprune's timers.

Every model is exported to ONNX and timed in fresh Python processes that import only onnxruntime and numpy (ORT CPU,
1 thread, batch 1):
- a pass (`harness_pass`, HARNESS): every model in a shuffled order, 10 warm-up runs, then the median of 30
  consecutive runs; a model's latency is the median over passes (`time_independently`);
- beside a reference (`timed_beside`): copies of the unpruned model in every pass, and each model's share of it
  taken pass by pass (`split_reference`), so that the machine's speed, which moves between passes more than within
  one, cancels;
- steadiness (`steady_blocks`, BLOCKS): one model for a while in blocks of 100 runs, how far the block medians move.
No timing starts while the machine is loaded (`wait_until_quiet`).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from autoprune.precision import precision

# Copies of the unpruned model timed beside the models whose shares of it are taken. The 0.35x ladder of 2026-12-02
# measured the unpruned model at 1.516 ms and the final pass, minutes later, at 1.308 ms, while the pruned models
# agreed within a few percent: the limit needs more than one measurement of it.
UNPRUNED_COPIES = 5

# One pass: every model, in a shuffled order; 10 warm-up runs, then the median of 30 consecutive runs.
HARNESS = r"""
import json, random, sys, time
import numpy as np, onnxruntime as ort
files, seed = json.loads(sys.argv[1]), int(sys.argv[2])
options = ort.SessionOptions()
options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
sessions = {}
for f in files:
    s = ort.InferenceSession(f, options, providers=["CPUExecutionProvider"])
    i = s.get_inputs()[0]
    sessions[f] = (s, {i.name: np.random.default_rng(0).standard_normal(i.shape).astype(np.float32)})
order = list(files)
random.Random(seed).shuffle(order)
out = {}
for f in order:
    s, feed = sessions[f]
    for _ in range(10):
        s.run(None, feed)
    times = []
    for _ in range(30):
        t = time.perf_counter()
        s.run(None, feed)
        times.append((time.perf_counter() - t) * 1e3)
    out[f] = float(np.median(times))
print(json.dumps(out))
"""

# Steadiness: one model for `seconds` after 50 warm-up runs, the median of each block of 100 consecutive runs.
BLOCKS = r"""
import json, sys, time
import numpy as np, onnxruntime as ort
path, seconds = sys.argv[1], float(sys.argv[2])
options = ort.SessionOptions()
options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
i = session.get_inputs()[0]
feed = {i.name: np.random.default_rng(0).standard_normal(i.shape).astype(np.float32)}
for _ in range(50):
    session.run(None, feed)
medians, end = [], time.time() + seconds
while time.time() < end:
    times = []
    for _ in range(100):
        t = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t) * 1e3)
    medians.append(float(np.median(times)))
print(json.dumps(medians))
"""


def wait_until_quiet(limit: float = 0.6, patience_s: float = 1800) -> float:
    """Waits until the 1-minute load average is under `limit` (nothing else running) before a timing pass, so
    that no figure is timed beside another job; returns the load it started at (recorded with the figures)."""
    start = time.time()
    while True:
        load = float(Path("/proc/loadavg").read_text().split()[0])
        if load < limit or time.time() - start > patience_s:
            if load >= limit:
                print(f"warning: timing at load {load:.2f} after waiting {patience_s:.0f} s for a quiet machine")
            return load
        time.sleep(15)


def _run(script: str, *argv: str) -> object:
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def harness_pass(files: list[str], seed: int) -> dict[str, float]:
    """One fresh-process pass over ONNX files: each file's median ms."""
    return _run(HARNESS, json.dumps(files), str(seed))


def steady_blocks(path: str, seconds: float) -> list[float]:
    """One fresh process timing one ONNX file for `seconds`: the median ms of each block of 100 runs."""
    return _run(BLOCKS, path, str(seconds))


def pass_medians(passes: list, keys) -> list[float]:
    """Each model's latency over the harness passes (each a dict by file or a list by index, `keys` the models'):
    the median of its per-pass medians."""
    return [float(np.median([p[k] for p in passes])) for k in keys]


def harness_runs(models: list, example, passes: int = 5, dtype: str | list[str] = "float32") -> list[list[float]]:
    """Each pass's ms of every model (in the models' order) by the independent harness: exported to ONNX (in
    `dtype`, one for all or one per model), timed in `passes` shuffled fresh-process passes, all models together
    (a drift of the machine spreads over all of them)."""
    dtypes = [dtype] * len(models) if isinstance(dtype, str) else dtype
    with tempfile.TemporaryDirectory(prefix="harness-") as tmp:
        files = [str(Path(tmp) / f"m{i:03d}.onnx") for i in range(len(models))]
        for model, path, name in zip(models, files, dtypes):
            Path(path).write_bytes(precision(name).onnx_bytes(model, example))
        return [[run[f] for f in files] for run in (harness_pass(files, seed) for seed in range(passes))]


def time_independently(models: list, example, passes: int = 5, dtype: str | list[str] = "float32") -> list[float]:
    """Each model's ms by the independent harness: the median of its per-pass medians."""
    return pass_medians(harness_runs(models, example, passes, dtype), range(len(models)))


def timed_beside(reference, models: list, example, passes: int, copies: int, dtypes: list[str] | None = None) -> dict:
    """`models` (in `dtypes`, default float32) and `copies` float32 copies of `reference` timed in one harness run
    once the machine is quiet, every pass kept: the stored form split_reference reads, so one unlucky measurement
    of the reference cannot move every model's share."""
    load = wait_until_quiet()
    runs = harness_runs([reference] * copies + models, example, passes,
                        ["float32"] * copies + (dtypes or ["float32"] * len(models)))
    return {"runs": [[round(ms, 4) for ms in run] for run in runs], "load": load, "unpruned_copies": copies}


def split_reference(timed: dict) -> tuple[float, list[float]]:
    """(the reference's ms, the other models' shares of it) of a timed_beside run: per pass (shares_of_reference),
    or, in the earlier form that stored only each model's median ("ms"), from the medians."""
    copies = timed["unpruned_copies"]
    if "runs" in timed:
        return shares_of_reference(timed["runs"], copies)
    reference = float(np.median(timed["ms"][:copies]))
    return reference, [ms / reference for ms in timed["ms"][copies:]]


def shares_of_reference(runs: list[list[float]], copies: int) -> tuple[float, list[float]]:
    """(the reference's ms, each other model's share of it) from harness runs whose first `copies` models are copies
    of the reference: a share is the median over passes of the model's ms over the copies' median in the same pass,
    so that the machine's speed, which moves between passes more than within one, cancels."""
    per_pass = np.array(runs)
    reference = np.median(per_pass[:, :copies], axis=1, keepdims=True)
    return float(np.median(reference)), [float(x) for x in np.median(per_pass[:, copies:] / reference, axis=0)]
