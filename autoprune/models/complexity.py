"""MACs and parameter counts, from fvcore."""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # fvcore scripts a helper with the deprecated torch.jit
    from fvcore.nn import FlopCountAnalysis, parameter_count


def _analysis(model: nn.Module, example_input: torch.Tensor) -> FlopCountAnalysis:
    # fvcore counts one "flop" per multiply-accumulate, i.e. MACs.
    analysis = FlopCountAnalysis(model.eval(), example_input)
    return analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


def macs_by_module(model: nn.Module, example_input: torch.Tensor) -> dict[str, int]:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return dict(_analysis(model, example_input).by_module())


def count_macs(model: nn.Module, example_input: torch.Tensor) -> int:
    return int(macs_by_module(model, example_input)[""])


def count_params(model: nn.Module) -> int:
    return int(parameter_count(model)[""])
