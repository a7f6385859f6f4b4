"""ONNX export and ONNX Runtime sessions: the deployed form whose outputs and latency count."""
from __future__ import annotations

import collections
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn

OPSET = 17


def to_onnx_bytes(model: nn.Module, example_input: torch.Tensor | tuple[torch.Tensor, ...],
                  dynamic_batch: bool = False) -> bytes:
    """Exports with the TorchScript-based exporter: seconds faster than dynamo and enough for CNNs.

    A tuple of inputs (e.g. a conv micro-benchmark with its residual operand) becomes inputs
    `input`, `input1`, ... Models that are timed keep the fixed shapes the tables were measured with;
    the deployable export takes any batch size (`dynamic_batch`).
    """
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    names = ["input"] + [f"input{i}" for i in range(1, len(inputs))]
    axes = {name: {0: "batch"} for name in names + ["output"]} if dynamic_batch else None
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), inputs, buffer, input_names=names, output_names=["output"],
            opset_version=OPSET, dynamo=False, dynamic_axes=axes,
        )
    return buffer.getvalue()


def export_onnx(model: nn.Module, example_input: torch.Tensor, path: str | Path, dynamic_batch: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_onnx_bytes(model, example_input, dynamic_batch))
    return path


def ort_session(model_bytes_or_path: bytes | str | Path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = str(model_bytes_or_path) if isinstance(model_bytes_or_path, Path) else model_bytes_or_path
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_onnx(session: ort.InferenceSession, x: torch.Tensor) -> np.ndarray:
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def executed_ops(model_bytes_or_path: bytes | str | Path, feeds: dict[str, np.ndarray]) -> dict[str, int]:
    """How many nodes of each kernel type ONNX Runtime's CPU provider ran for one inference (from its profiler),
    after its own fusions: e.g. whether a quantised model's convolutions really run as QLinearConv."""
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    source = str(model_bytes_or_path) if isinstance(model_bytes_or_path, Path) else model_bytes_or_path
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    session.run(None, feeds)
    trace = session.end_profiling()
    try:
        events = json.loads(Path(trace).read_text())
    finally:
        os.remove(trace)
    return dict(collections.Counter(e["args"]["op_name"] for e in events
                                    if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")))


class OnnxModule(nn.Module):
    """An ONNX model run by ONNX Runtime behind nn.Module's call, so that the scores that take a module (top-1, a
    user's metric) score the deployed file itself, e.g. its int8 form."""

    def __init__(self, model_bytes_or_path: bytes | str | Path, threads: int = 1):
        super().__init__()
        self.session = ort_session(model_bytes_or_path, threads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(run_onnx(self.session, x.float().contiguous()))
