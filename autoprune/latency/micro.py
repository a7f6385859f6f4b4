"""Micro-benchmarks: one layer of the layout at given channel counts, as a module of its own.

A conv micro-model keeps its batch norm and activation (and the residual operand of a fused add as
a second input), so that exported through ONNX, ORT fuses it into the same kernel it runs inside
the whole network.
"""
from __future__ import annotations

import torch
import torch.nn as nn

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU, "hardswish": nn.Hardswish,
               "sigmoid": nn.Sigmoid, "hardsigmoid": nn.Hardsigmoid, "gelu": nn.GELU}


class Fused(nn.Module):
    """layer -> [batch norm] -> [+ residual] -> [activation], as the epilogue names them."""

    def __init__(self, layer: nn.Module, channels: int, epilogue: str):
        super().__init__()
        parts = [] if epilogue == "none" else epilogue.split("+")
        self.layer = layer
        self.bn = nn.BatchNorm2d(channels) if "bn" in parts else None
        self.add = "add" in parts
        acts = [p for p in parts if p in ACTIVATIONS]
        self.act = ACTIVATIONS[acts[0]]() if acts else None
        if self.bn is not None:  # non-trivial statistics, so the folded conv is a real one
            self.bn.running_mean.uniform_(-0.1, 0.1)
            self.bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        x = self.layer(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.add:
            x = x + residual
        return self.act(x) if self.act is not None else x


def micro_model(layer: dict, cin: int, cout: int, batch: int) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The module measuring one table entry and its example inputs."""
    a = layer["attrs"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cin, *layer["hw"], generator=gen) if layer["hw"] else torch.randn(batch, cin, generator=gen)
    if layer["op"] == "conv":
        groups = cin if a["groups"] == "depthwise" else a["groups"]
        conv = nn.Conv2d(cin, cout, a["kernel"], a["stride"], a["padding"], a["dilation"], groups, bias=a["bias"])
        module = Fused(conv, cout, layer["epilogue"]).eval()
    elif layer["op"] == "linear":
        module = Fused(nn.Linear(cin, cout, bias=a["bias"]), cout, layer["epilogue"]).eval()
    elif layer["op"] == "maxpool":
        module = nn.MaxPool2d(a["kernel"], a["stride"], a["padding"], ceil_mode=a["ceil_mode"])
    elif layer["op"] == "avgpool":
        module = nn.AvgPool2d(a["kernel"], a["stride"], a["padding"], ceil_mode=a["ceil_mode"])
    else:
        module = nn.AdaptiveAvgPool2d(a["output"])
    if "add" in layer["epilogue"].split("+"):
        with torch.no_grad():
            residual = torch.randn_like(module.layer(x))
        return module, (x, residual)
    return module, (x,)
