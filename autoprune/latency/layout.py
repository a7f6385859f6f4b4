"""A model's latency layout: the kernels ONNX Runtime runs, and how a config sets each one's channels.

The model is traced with torch.fx. Each convolution becomes one *layer* together with the epilogue
ORT fuses into its kernel (folded batch norm, then an activation, or a residual add and its
activation); linear layers and pooling are layers of their own. For every layer the in- and
out-channel counts are linear in the kept counts of the search space's groups:

    channels = base + sum(coef[g] * kept[g])

propagated through the traced graph, so a concat sums its inputs' groups and a flatten scales them.
This is exact where the graph is, and it is checked against the unpruned shapes. The layout is plain
JSON and is stored in the table, so predicting needs neither torch nor the model. A layer at given
channels is a table key through signature.Signature.of, which owns the key's format.
"""
from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import AutopruneError
from ..models.specs import LoadedModel
from ..pruning.space import Config, SearchSpace
from .signature import Signature

# Activations ORT fuses into the convolution before them (its Conv/FusedConv activations).
ACT_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.SiLU: "silu", nn.Hardswish: "hardswish",
               nn.Sigmoid: "sigmoid", nn.Hardsigmoid: "hardsigmoid", nn.GELU: "gelu"}
ACT_FUNCS = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.silu: "silu", F.hardswish: "hardswish",
             torch.sigmoid: "sigmoid", F.hardsigmoid: "hardsigmoid", F.gelu: "gelu"}
ADD_FUNCS = {operator.add, operator.iadd, torch.add}
POOL_MODULES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
POOL_FUNCS = {F.max_pool2d: "maxpool", F.avg_pool2d: "avgpool", F.adaptive_avg_pool2d: "adaptive_avgpool"}

Expr = tuple[float, dict[str, float]]  # channels = base + sum(coef * kept)


def model_key(space: SearchSpace) -> str:
    """Tables hold layouts per model and input size: the same net at 224 and 32 runs different kernels."""
    return f"{space.model}@{'x'.join(str(d) for d in space.input_shape)}"


def channels(expr: dict, config: Config) -> int:
    return int(round(expr["base"] + sum(c * config[g] for g, c in expr["groups"].items())))


def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]


def _trace(loaded: LoadedModel) -> fx.GraphModule:
    try:
        gm = fx.symbolic_trace(loaded.model.eval())
        with torch.no_grad():
            ShapeProp(gm).propagate(loaded.example_input())
    except Exception as exc:  # fx raises many kinds on dynamic control flow
        raise AutopruneError(
            f"cannot trace {loaded.spec} with torch.fx for latency profiling ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    return gm


def _shape(node) -> list[int] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return list(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _act_of(node, modules) -> str | None:
    if node.op == "call_module":
        return ACT_MODULES.get(type(modules[node.target]))
    if node.op == "call_function":
        return ACT_FUNCS.get(node.target)
    return None


def _sole_user(node):
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _epilogue(node, modules, claimed: set) -> str:
    """What ORT fuses into this conv: a following batch norm, then an activation or an add (+activation).

    An intermediate with a second user cannot be fused, so the chain stops there.
    """
    parts, cur = [], node
    nxt = _sole_user(cur)
    if nxt is not None and nxt.op == "call_module" and isinstance(modules[nxt.target], nn.BatchNorm2d):
        parts.append("bn")
        cur, nxt = nxt, _sole_user(nxt)
    if nxt is not None and nxt.op == "call_function" and nxt.target in ADD_FUNCS and nxt not in claimed:
        others = [a for a in nxt.args if isinstance(a, fx.Node) and a is not cur]
        if len(others) == 1 and _shape(others[0]) == _shape(cur):
            claimed.add(nxt)  # one add is fused into one conv only
            parts.append("add")
            cur, nxt = nxt, _sole_user(nxt)
    act = _act_of(nxt, modules) if nxt is not None else None
    if act:
        parts.append(act)
    return "+".join(parts) or "none"


def _expr_json(expr: Expr) -> dict:
    base, groups = expr
    return {"base": round(base, 6), "groups": {g: round(c, 6) for g, c in groups.items() if c}}


def _add(a: Expr, b: Expr, scale: float = 1.0) -> Expr:
    groups = dict(a[1])
    for g, c in b[1].items():
        groups[g] = groups.get(g, 0.0) + scale * c
    return a[0] + scale * b[0], groups


def _propagate(node, exprs: dict, shape) -> Expr:
    """Channel expression of a non-layer node, from its inputs'."""
    inputs = [a for a in node.all_input_nodes if a in exprs and _shape(a)]
    if node.op == "call_function" and node.target is torch.cat:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        if dim in (1, 1 - len(shape)):
            total: Expr = (0.0, {})
            for a in node.args[0]:
                total = _add(total, exprs[a])
            return total
    for a in inputs:
        s = _shape(a)
        if len(s) == 4 and len(shape) == 2 and shape[1] == s[1] * s[2] * s[3]:
            return _add((0.0, {}), exprs[a], s[2] * s[3])  # flatten of a feature map
    same = [a for a in inputs if _shape(a) == shape] + [a for a in inputs if len(_shape(a)) > 1 and _shape(a)[1] == shape[1]]
    return exprs[same[0]] if same else (float(shape[1]), {})


def build_layout(loaded: LoadedModel, space: SearchSpace) -> list[dict]:
    """The layers (fused kernels) of the model in execution order, as JSON-ready dicts."""
    gm = _trace(loaded)
    modules = dict(gm.named_modules())
    producer = {}
    for g in space.channel_groups:
        for m in g.producers:
            producer.setdefault(m, []).append(g.name)
    full = space.full_config()
    exprs: dict = {}
    layers, claimed = [], set()
    for node in gm.graph.nodes:
        shape = _shape(node)
        if shape is None or len(shape) < 2:
            continue
        if node.op == "placeholder":
            exprs[node] = (float(shape[1]), {})
            continue
        src = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        module = modules.get(node.target) if node.op == "call_module" else None
        in_expr = exprs.get(src, (float(_shape(src)[1]), {}) if src is not None and _shape(src) else (0.0, {}))
        layer = None
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            layer = _weighted_layer(node, module, modules, in_expr, producer, claimed)
            exprs[node] = layer["out"]
            layer["in"], layer["out"] = _expr_json(in_expr), _expr_json(layer["out"])
        else:
            exprs[node] = _propagate(node, exprs, shape)
            pool = _pool_attrs(node, module)
            if pool is not None:
                layer = {"op": pool.pop("op"), "in": _expr_json(in_expr), "out": _expr_json(in_expr),
                         "hw": _shape(src)[2:], "attrs": pool, "epilogue": "none"}
        if layer is not None:
            layer["name"] = node.target if node.op == "call_module" else node.name
            _check(layer, node, src, full)
            layers.append({"name": layer.pop("name"), **layer})
    return layers


def _weighted_layer(node, module, modules, in_expr: Expr, producer: dict, claimed: set) -> dict:
    name = node.target
    if isinstance(module, nn.Linear):
        out = _producer_expr(name, module.out_features, producer)
        act = _act_of(_sole_user(node), modules) if _sole_user(node) is not None else None
        return {"op": "linear", "out": out, "hw": [], "attrs": {"bias": module.bias is not None},
                "epilogue": act or "none"}
    depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
    out = in_expr if depthwise else _producer_expr(name, module.out_channels, producer)
    attrs = {
        "kernel": _pair(module.kernel_size), "stride": _pair(module.stride),
        "padding": _pair(module.padding) if not isinstance(module.padding, str) else module.padding,
        "dilation": _pair(module.dilation), "groups": "depthwise" if depthwise else module.groups,
        "bias": module.bias is not None,
    }
    return {"op": "conv", "out": out, "hw": _shape(node.args[0])[2:],
            "attrs": attrs, "epilogue": _epilogue(node, modules, claimed)}


def _producer_expr(name: str, width: int, producer: dict) -> Expr:
    groups = producer.get(name, [])
    if len(groups) > 1:
        raise AutopruneError(f"layer '{name}' produces channels of several groups ({', '.join(groups)})")
    return (0.0, {groups[0]: 1.0}) if groups else (float(width), {})


def _pool_attrs(node, module) -> dict | None:
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return {"op": "adaptive_avgpool", "output": _pair(module.output_size)}
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        return {"op": "maxpool" if isinstance(module, nn.MaxPool2d) else "avgpool",
                "kernel": _pair(module.kernel_size), "stride": _pair(module.stride or module.kernel_size),
                "padding": _pair(module.padding), "ceil_mode": bool(module.ceil_mode)}
    if node.op == "call_function" and node.target in POOL_FUNCS:
        out = _shape(node)
        if POOL_FUNCS[node.target] == "adaptive_avgpool":
            return {"op": "adaptive_avgpool", "output": out[2:]}
    return None  # functional max/avg pools with arbitrary arguments stay in the calibration's remainder


def _check(layer: dict, node, src, full: Config) -> None:
    """The channel expressions must reproduce the unpruned model's shapes."""
    cin = _shape(src)[1] if layer["op"] != "linear" else _shape(src)[-1]
    cout = _shape(node)[1]
    if channels(layer["in"], full) != cin or channels(layer["out"], full) != cout:
        raise AutopruneError(
            f"cannot map the search space's groups to the channels of layer '{layer['name']}' "
            f"({cin}->{cout}): latency tables do not support this architecture"
        )


def weight_mb(layer: dict, cin: int, cout: int, bytes_per_value: int = 4) -> float:
    """Weights a layer streams per pass (batch norm folded into a bias), in MB."""
    if layer["op"] == "linear":
        values = cin * cout + cout
    elif layer["op"] == "conv":
        a = layer["attrs"]
        groups = cin if a["groups"] == "depthwise" else a["groups"]
        values = cout * (cin // groups) * a["kernel"][0] * a["kernel"][1] + cout
    else:
        return 0.0
    return values * bytes_per_value / 1e6


def activation_mb(layer: dict, cin: int, bytes_per_value: int = 4) -> float:
    """The layer's input feature map per sample, in MB: what a micro-model's layout conversion copies."""
    size = 1
    for v in layer["hw"]:
        size *= v
    return cin * size * bytes_per_value / 1e6


def config_signatures(layers: list[dict], config: Config, off: set[str] = frozenset()) -> tuple[list[str], float, float]:
    """The table keys a complete config runs, and the weight and activation MB it streams; the layers named in `off`
    (its removed blocks', SearchSpace.switched_off) run nothing."""
    keys, weights, acts = [], 0.0, 0.0
    for layer in layers:
        if layer["name"] in off:
            continue
        cin, cout = channels(layer["in"], config), channels(layer["out"], config)
        keys.append(str(Signature.of(layer, cin, cout)))
        weights += weight_mb(layer, cin, cout)
        acts += activation_mb(layer, cin)
    return keys, weights, acts


def _values(expr: dict, choices: dict[str, list[int]]) -> set[int]:
    """Every channel count an expression takes over the space (a concat sums its groups' choices)."""
    sums = {expr["base"]}
    for g, coef in expr["groups"].items():
        sums = {s + coef * c for s in sums for c in choices[g]}
    return {int(round(s)) for s in sums}


def enumerate_signatures(layers: list[dict], space: SearchSpace) -> dict[str, tuple[dict, int, int]]:
    """Every kernel the space can produce: key -> (layer, cin, cout), deduplicated across layers."""
    choices = {g.name: g.choices for g in space.groups}
    found = {}
    for layer in layers:
        ins = sorted(_values(layer["in"], choices))
        if Signature.of(layer, ins[0], ins[0]).scales_with_channels:  # its channels pass through
            pairs = [(c, c) for c in ins]
        else:
            pairs = [(i, o) for i in ins for o in sorted(_values(layer["out"], choices))]
        for cin, cout in pairs:
            found.setdefault(str(Signature.of(layer, cin, cout)), (layer, cin, cout))
    return found
