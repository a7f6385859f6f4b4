"""Backends a table can be measured on: one small base class, one subclass per runtime, a registry by name.

Callers ask the backend (what it needs here, its version and GPU, which precisions it times, whether its jobs
are ONNX files a kit can carry, how it times models and jobs) rather than branching on its name, so a new
backend is one subclass and one line in BACKENDS.

ORT backends time ONNX files with the standalone runner in a fresh process that only runs ORT (DESIGN.md:
timing in the process that just pruned and exported came out 5-8% slower and drifted), so a kit can do
the same on another device. torch backends time the modules themselves, in this process. CUDA timing
uses CUDA events around the call and waits for the event, so the GPU's queue is not mistaken for its speed.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import AutopruneError
from ..precision import FLOAT32, PRECISIONS, Precision
from . import runner

RUNNER = Path(runner.__file__)


class LatencyBackend(ABC):
    """Where latencies come from: what it needs on a machine, and how it times models and profiling jobs."""

    writes_onnx = False  # its jobs are ONNX files the standalone runner times (and so can travel in a kit)

    def __init__(self, name: str, cuda: bool):
        self.name, self.cuda = name, cuda

    @property
    def precisions(self) -> tuple[Precision, ...]:
        """The precisions it times."""
        return (FLOAT32,)

    @property
    def provider(self) -> str:
        """ONNX Runtime's provider for this device: a timing kit runs ORT whatever runtime made the table."""
        return "CUDAExecutionProvider" if self.cuda else "CPUExecutionProvider"

    @abstractmethod
    def check_available(self) -> None:
        """Raises AutopruneError, in one line, when this machine cannot run the backend."""

    @abstractmethod
    def version(self) -> str:
        """The runtime's version, recorded in every table it measures."""

    def gpu_name(self) -> str | None:
        return torch.cuda.get_device_name() if self.cuda and torch.cuda.is_available() else None

    @abstractmethod
    def time_models(self, models: list[nn.Module], example: torch.Tensor, threads: int, rounds: int, per_round: int,
                    precision: Precision) -> list[dict]:
        """{"ms", "spread"} of each model, timed interleaved over rounds."""

    @abstractmethod
    def measure_job(self, job: Path, out: Path, threads: int, make_timed) -> None:
        """Measures a profiling job into the table `out`; `make_timed(ident)` times an entry in this process."""


class OrtBackend(LatencyBackend):
    writes_onnx = True

    @property
    def precisions(self) -> tuple[Precision, ...]:
        return (FLOAT32,) if self.cuda else (FLOAT32, PRECISIONS["int8"])  # ORT's int8 convolutions are CPU kernels (MLAS)

    def check_available(self) -> None:
        import onnxruntime as ort

        if self.provider not in ort.get_available_providers():
            raise AutopruneError(
                f"backend {self.name} needs onnxruntime with {self.provider}; this one has "
                f"{', '.join(ort.get_available_providers())} (install onnxruntime-gpu on a CUDA machine)"
            )

    def version(self) -> str:
        import onnxruntime as ort

        return ort.__version__

    def time_models(self, models, example, threads, rounds, per_round, precision) -> list[dict]:
        with tempfile.TemporaryDirectory(prefix="autoprune-measure-") as tmp:
            files = []
            for i, m in enumerate(models):
                files.append(str(Path(tmp) / f"m{i:03d}.onnx"))
                Path(files[-1]).write_bytes(precision.onnx_bytes(m, example))
            out = Path(tmp) / "stats.json"
            _run_runner(["--time", *files, "--json", str(out), "--threads", str(threads), "--provider",
                         self.provider, "--rounds", str(rounds), "--per-round", str(per_round)], "timing the models")
            return json.loads(out.read_text())["stats"]

    def measure_job(self, job, out, threads, make_timed) -> None:
        _run_runner([str(job), "--out", str(out)], "measuring", f"; run the same command again to resume from {job}",
                    show=True)


def _run_runner(args: list[str], what: str, hint: str = "", show: bool = False) -> None:
    """The runner in a fresh process; `show` lets its progress through to the user, else its last line of
    stderr is the error's reason."""
    # Shown, the runner's report goes to stderr with its progress: stdout is the command's result.
    streams = {"stdout": sys.stderr.fileno() if _has_fileno(sys.stderr) else None} if show else {"capture_output": True}
    done = subprocess.run([sys.executable, str(RUNNER), *args], text=True, **streams)
    if done.returncode != 0:
        last = "" if show else ": " + (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise AutopruneError(f"{what} failed (runner exit {done.returncode}{last}){hint}")


def _has_fileno(stream) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):  # a captured stream (pytest, a notebook)
        return False
    return True


class TorchBackend(LatencyBackend):
    @property
    def device(self) -> torch.device:
        return torch.device("cuda" if self.cuda else "cpu")

    @property
    def precisions(self) -> tuple[Precision, ...]:
        return (FLOAT32, PRECISIONS["float16"]) if self.cuda else (FLOAT32,)  # torch on a CPU: float16 is not deployed

    def check_available(self) -> None:
        if self.cuda and not torch.cuda.is_available():
            raise AutopruneError(f"backend {self.name} needs a CUDA GPU, and torch sees none on this machine")

    def version(self) -> str:
        return torch.__version__ + (f"+cuda{torch.version.cuda}" if self.cuda else "")

    def time_models(self, models, example, threads, rounds, per_round, precision) -> list[dict]:
        torch.set_num_threads(threads)
        runs = [self.timed(m, (example,), precision) for m in models]
        return runner.time_models(runs, rounds=rounds, per_round=per_round)

    def measure_job(self, job, out, threads, make_timed) -> None:
        torch.set_num_threads(threads)
        try:
            runner.run_job(job, out, threads, make_timed, self.version(), self.gpu_name())
        except runner.RunnerError as exc:
            raise AutopruneError(str(exc)) from exc

    def timed(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], precision: Precision = FLOAT32):
        """A callable running `module` once on `inputs` and returning the elapsed ms."""
        module, inputs = precision.cast(module, inputs, self.device)

        @torch.inference_mode()
        def cpu() -> float:
            start = time.perf_counter()
            module(*inputs)
            return (time.perf_counter() - start) * 1e3

        @torch.inference_mode()
        def cuda() -> float:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            module(*inputs)
            end.record()
            end.synchronize()
            return begin.elapsed_time(end)

        return cuda if self.cuda else cpu


BACKENDS: dict[str, LatencyBackend] = {
    "ort-cpu": OrtBackend("ort-cpu", cuda=False),
    "torch-cpu": TorchBackend("torch-cpu", cuda=False),
    "ort-cuda": OrtBackend("ort-cuda", cuda=True),
    "torch-cuda": TorchBackend("torch-cuda", cuda=True),
}


def get_backend(name: str, precision: Precision = FLOAT32, here: bool = True) -> LatencyBackend:
    """The named backend, refused where it cannot time `precision`; with `here`, checks that this machine can
    run it."""
    if name not in BACKENDS:
        raise AutopruneError(f"unknown backend '{name}' (choose from {', '.join(BACKENDS)})")
    backend = BACKENDS[name]
    if precision not in backend.precisions:
        able = [n for n, b in BACKENDS.items() if precision in b.precisions]
        raise AutopruneError(f"dtype {precision} is supported on {', '.join(able)} only; {name} tables are "
                             f"{', '.join(map(str, backend.precisions))}")
    if here:
        backend.check_available()
    return backend
