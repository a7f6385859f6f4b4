"""End-to-end latency of whole models on a table's backend: what validation and export compare against.

ORT models are timed by the runner in a fresh process that only runs ORT, interleaved over rounds
(DESIGN.md: timing in the process that just pruned and exported came out 5-8% slower and drifted).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import AutopruneError
from ..onnx_io import export_onnx
from . import backends, runner


def measure_models_ms(models: list[nn.Module], example_input: torch.Tensor, backend: str, threads: int = 1,
                      rounds: int = 7, per_round: int = 3, dtype: str = "float32") -> list[tuple[float, float]]:
    """(median ms, relative spread) of each model, timed interleaved."""
    be = backends.get_backend(backend, dtype)
    if be.runtime == "torch":
        torch.set_num_threads(threads)
        runs = [backends.torch_timed(m, (example_input,), be, dtype) for m in models]
        stats = runner.time_models(runs, rounds=rounds, per_round=per_round)
        return [(s["ms"], s["spread"]) for s in stats]
    with tempfile.TemporaryDirectory(prefix="autoprune-measure-") as tmp:
        files = [str(export_onnx(m, example_input, Path(tmp) / f"m{i:03d}.onnx")) for i, m in enumerate(models)]
        out = Path(tmp) / "stats.json"
        cmd = [sys.executable, str(Path(runner.__file__)), "--time", *files, "--json", str(out),
               "--threads", str(threads), "--provider", be.provider, "--rounds", str(rounds),
               "--per-round", str(per_round)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise AutopruneError(f"timing the models failed: {last}")
        stats = json.loads(out.read_text())
    return [(s["ms"], s["spread"]) for s in stats]


def measure_model_ms(model: nn.Module, example_input: torch.Tensor, backend: str, threads: int = 1,
                     rounds: int = 7, per_round: int = 3, dtype: str = "float32") -> tuple[float, float]:
    """(median ms, relative spread) of one forward pass of `model` on `backend`."""
    return measure_models_ms([model], example_input, backend, threads, rounds, per_round, dtype)[0]
