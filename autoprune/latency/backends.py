"""Backends a table can be measured on, and timers for the torch ones.

ORT backends are timed by the standalone runner in a fresh process (runner.ort_timed); torch
backends are timed here, in process, on the modules themselves. CUDA timing uses CUDA events
around the call and waits for the event, so the GPU's queue is not mistaken for its speed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import AutopruneError


@dataclass(frozen=True)
class Backend:
    name: str
    runtime: str  # "ort" or "torch"
    cuda: bool

    @property
    def provider(self) -> str:
        return "CUDAExecutionProvider" if self.cuda else "CPUExecutionProvider"

    @property
    def device(self) -> torch.device:
        return torch.device("cuda" if self.cuda else "cpu")


BACKENDS = {
    "ort-cpu": Backend("ort-cpu", "ort", False),
    "torch-cpu": Backend("torch-cpu", "torch", False),
    "ort-cuda": Backend("ort-cuda", "ort", True),
    "torch-cuda": Backend("torch-cuda", "torch", True),
}
DTYPES = {"float32": torch.float32, "float16": torch.float16}


def get_backend(name: str, dtype: str = "float32", here: bool = True) -> Backend:
    """The named backend; with `here`, checks that this machine can run it."""
    if name not in BACKENDS:
        raise AutopruneError(f"unknown backend '{name}' (choose from {', '.join(BACKENDS)})")
    backend = BACKENDS[name]
    if dtype not in DTYPES:
        raise AutopruneError(f"unknown dtype '{dtype}' (choose from {', '.join(DTYPES)})")
    if dtype != "float32" and backend.name != "torch-cuda":
        raise AutopruneError(f"dtype {dtype} is supported on torch-cuda only; {name} tables are float32")
    if here:
        _check_available(backend)
    return backend


def _check_available(backend: Backend) -> None:
    if backend.cuda and not torch.cuda.is_available() and backend.runtime == "torch":
        raise AutopruneError(f"backend {backend.name} needs a CUDA GPU, and torch sees none on this machine")
    if backend.runtime == "ort":
        import onnxruntime as ort

        if backend.provider not in ort.get_available_providers():
            raise AutopruneError(
                f"backend {backend.name} needs onnxruntime with {backend.provider}; this one has "
                f"{', '.join(ort.get_available_providers())} (install onnxruntime-gpu on a CUDA machine)"
            )


def version(backend: Backend) -> str:
    if backend.runtime == "ort":
        import onnxruntime as ort

        return ort.__version__
    return torch.__version__ + (f"+cuda{torch.version.cuda}" if backend.cuda else "")


def gpu_name(backend: Backend) -> str | None:
    return torch.cuda.get_device_name() if backend.cuda and torch.cuda.is_available() else None


def torch_timed(module: nn.Module, inputs: tuple[torch.Tensor, ...], backend: Backend, dtype: str = "float32"):
    """A callable running `module` once on `inputs` and returning the elapsed ms."""
    module = module.eval().to(backend.device, DTYPES[dtype])
    inputs = tuple(x.to(backend.device, DTYPES[dtype]) for x in inputs)

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

    return cuda if backend.cuda else cpu
