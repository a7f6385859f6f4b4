"""The numeric precision a model is deployed in: one object, resolved by name, carried by tables and studies.

  float32  the trained model as it is
  float16  weights and inputs cast (torch-cuda)
  int8     the float model exported to ONNX, then statically quantised by ONNX Runtime's own tools: shape
           inference and graph optimisation first (`quant_pre_process`, as ORT advises), then QDQ with
           per-channel signed int8 weights and unsigned int8 activations (U8S8), calibrated on sample inputs

Why U8S8 and not ORT's suggested S8S8: on ORT 1.32's CPU provider, with S8 activations the QDQ convolutions
followed by a ReLU (the quantiser folds the ReLU into the range) are not fused and run as float Conv between
Dequantize/Quantize pairs: 28 of CIFAR ResNet-56's 55 convolutions, and no residual Add becomes QLinearAdd.
With U8 activations all 55 run as QLinearConv and all 27 Adds as QLinearAdd (`executed_ops`, tests/test_precision.py).

A precision says what a model costs per value and how it is made to run that way; backends say which ones
they time (backends.py).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn as nn

from .defaults import DTYPE
from .errors import AutopruneError
from .models.onnx_io import OnnxModule, to_onnx_bytes
from .pruning.space import Granularity
from .data.task import Batches

# Inputs the quantiser calibrates its activation ranges on when none are given: enough for latency, where only
# the graph matters; accuracy needs real images (`samples`).
RANDOM_CALIBRATION = 4
CALIBRATION_BATCHES, CALIBRATION_BATCH_SIZE = 8, 32  # 256 training images: an int8 model's activation ranges


@dataclass(frozen=True)
class Precision:
    name: str
    bytes_per_value: int
    torch_dtype: torch.dtype  # what a module and its inputs are cast to where torch runs it
    quantised: bool = False  # made by quantising the float model's ONNX export (ORT only)
    # The multiple a search space rounds its widths to by default in this precision (None: k/8 of each width), and
    # the fewest channels it keeps where narrower layers run no faster.
    channel_multiple: int | None = None
    least_channels: int = 1

    def __str__(self) -> str:  # how tables, reports and file names spell it
        return self.name

    def granularity(self, steps: int, multiple_of: int | None, min_keep: float) -> Granularity:
        """The search space's allowed widths: the user's multiple, else k/steps of each width rounded to this
        precision's preferred multiple."""
        if multiple_of is not None:
            return Granularity(steps, multiple_of, min_keep)
        return Granularity(steps, None, min_keep, align=self.channel_multiple, least=self.least_channels)

    def cast(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], device) -> tuple[nn.Module, tuple]:
        if self.quantised:
            raise AutopruneError(f"{self.name} models run in ONNX Runtime: use --backend ort-cpu")
        return module.eval().to(device, self.torch_dtype), tuple(x.to(device, self.torch_dtype) for x in inputs)

    def onnx_bytes(self, model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...],
                   dynamic_batch: bool = False, samples: Iterable[torch.Tensor] | None = None) -> bytes:
        """The model's ONNX export in this precision; `samples` (input batches) calibrate an int8 model."""
        data = to_onnx_bytes(model, example, dynamic_batch)
        if not self.quantised:
            return data
        inputs = example if isinstance(example, tuple) else (example,)
        return quantise_static(data, _calibration_feeds(inputs, samples))

    def deployed(self, model: nn.Module, samples: list[torch.Tensor]) -> nn.Module:
        """The model as it is deployed in this precision, behind nn.Module's call, so that a score that takes a
        module (top-1, a user's metric) scores what runs: an int8 model is ORT running the export quantised on
        `samples` (input batches); the others are scored as the float model (a float16 cast keeps its answers)."""
        if not self.quantised:
            return model
        return OnnxModule(self.onnx_bytes(model, samples[0][:1], dynamic_batch=True, samples=samples))


def calibration_samples(images: Batches, seed: int = 0) -> list[torch.Tensor]:
    """Training batches an int8 model's activation ranges are fitted on, as a user's own calibration takes them."""
    return [x for x, _ in islice(images.batches(CALIBRATION_BATCH_SIZE, shuffle=True, seed=seed), CALIBRATION_BATCHES)]


def _calibration_feeds(inputs: tuple[torch.Tensor, ...], samples) -> list[dict[str, np.ndarray]]:
    names = ["input"] + [f"input{i}" for i in range(1, len(inputs))]  # onnx_io's names
    if samples is not None:
        return [{names[0]: x.numpy().astype(np.float32)} for x in samples]
    rng = np.random.default_rng(0)
    return [{n: rng.standard_normal(tuple(x.shape)).astype(np.float32) for n, x in zip(names, inputs)}
            for _ in range(RANDOM_CALIBRATION)]


def quantise_static(onnx_bytes: bytes, feeds: list[dict[str, np.ndarray]]) -> bytes:
    """ORT's static QDQ quantisation (uint8 activations, per-channel int8 weights) of a float ONNX model."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quant_pre_process,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter(feeds)

        def get_next(self):
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory(prefix="autoprune-int8-") as tmp:
        plain, prepared, quantised = (Path(tmp) / n for n in ("float.onnx", "prepared.onnx", "int8.onnx"))
        plain.write_bytes(onnx_bytes)
        quant_pre_process(str(plain), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(quantised), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return quantised.read_bytes()


PRECISIONS: dict[str, Precision] = {
    "float32": Precision("float32", 4, torch.float32),
    "float16": Precision("float16", 2, torch.float16),
    # ORT's x86 int8 convolutions take their fast kernel at output widths of 16 or more in multiples of 8 (4 with
    # AVX-512): benchmarks/int8.py's 3x3 conv, 64 in, 16x16, on an AVX-512 VNNI EPYC: 8 channels 19.2 us, 16:
    # 14.8 us, 23: 23.4 us, 24: 17.6 us.
    "int8": Precision("int8", 1, torch.float32, quantised=True, channel_multiple=8, least_channels=16),
}


FLOAT32 = PRECISIONS["float32"]


def precision(name: str | Precision | None = None) -> Precision:
    """The precision a user's or a file's name means (None: the default, defaults.DTYPE): the one place a dtype
    name is read."""
    if isinstance(name, Precision):
        return name
    name = DTYPE if name is None else name
    if name not in PRECISIONS:
        raise AutopruneError(f"unknown dtype '{name}' (choose from {', '.join(PRECISIONS)})")
    return PRECISIONS[name]
