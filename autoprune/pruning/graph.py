"""The torch-pruning dependency graph, with autoprune's own layers registered and failures explained."""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch_pruning as tp

from ..errors import UnsupportedModelError
from .pruners import CUSTOM_PRUNERS


def _channel_shuffles(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """Names the layers whose output is split by a view and then transposed: a channel shuffle.

    torch-pruning maps channel indices through such a view+transpose as if it were element-wise,
    which would prune the wrong channels (on shufflenet_v2 it crashes instead).
    """
    producers: dict = {}

    def record(name: str, out) -> None:
        if isinstance(out, torch.Tensor):  # a leaf may return several (an FPN's extra level returns lists)
            producers[out.grad_fn] = name

    hooks = [
        m.register_forward_hook(lambda mod, inp, out, name=name: record(name, out))
        for name, m in model.named_modules()
        if name and not list(m.children())
    ]
    try:
        out = model(example_input)
    finally:
        for h in hooks:
            h.remove()
    found, stack, seen = [], [out.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        inputs = [n for n, _ in fn.next_functions if n is not None]
        if fn.name().startswith(("TransposeBackward", "PermuteBackward")):
            for view in inputs:
                sizes = getattr(view, "_saved_self_sym_sizes", None)
                if view.name().startswith("ViewBackward") and sizes is not None and len(sizes) == 4:
                    found.append(_nearest_producer(view, producers) or "?")
        stack.extend(inputs)
    return sorted(set(found))


def _nearest_producer(fn, producers: dict) -> str | None:
    stack, seen = [fn], set()
    while stack:
        f = stack.pop(0)
        if f is None or f in seen:
            continue
        seen.add(f)
        if f in producers:
            return producers[f]
        stack.extend(n for n, _ in f.next_functions)
    return None


def _attention(model: nn.Module) -> str | None:
    """The first attention layer, by the module torch provides or the name torchvision's windowed ones have."""
    for name, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention) or type(m).__name__.endswith("Attention"):
            return f"{name} ({type(m).__name__})"
    return None


def build_graph(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    """Traces `model` into a dependency graph, or raises UnsupportedModelError naming the layer."""
    model.eval()
    attention = _attention(model)
    if attention:
        # Checked first: the heads' reshape of the embedding would otherwise read as a channel shuffle.
        raise UnsupportedModelError(
            f"unsupported architecture: layer {attention} is attention; autoprune prunes the channels of "
            "convolutional networks, not attention heads or a transformer's MLP widths"
        )
    with torch.enable_grad():
        shuffles = _channel_shuffles(model, example_input)
        if shuffles:
            raise UnsupportedModelError(
                f"unsupported architecture: the output of layer '{shuffles[0]}' goes through a view+transpose "
                "of the channel axis (a channel shuffle), which torch-pruning cannot map pruned channels "
                "through; pruning it would give a wrong model"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return tp.DependencyGraph().build_dependency(
                    model, example_inputs=example_input, customized_pruners=CUSTOM_PRUNERS, verbose=False
                )
        except Exception as exc:  # torch-pruning raises bare errors deep in tracing
            raise UnsupportedModelError(
                f"unsupported architecture: torch-pruning could not trace the model's channel dependencies "
                f"({type(exc).__name__}: {exc})"
            ) from exc
