"""Pruned models on disk: weights plus what it takes to rebuild their shape, all weights_only-safe."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..errors import AutopruneError
from ..models.specs import load_model
from .prune import prune_channels
from .space import Config, SearchSpace

FORMAT = "autoprune-pruned-1"


def save_pruned(
    path: str | Path, model: nn.Module, spec: str, space: SearchSpace, config: Config,
    removed: dict[str, list[int]], extra: dict | None = None,
) -> Path:
    """Stores the pruned weights with the spec, space and removed indices that rebuild the architecture."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": FORMAT, "spec": spec, "space": space.to_dict(), "config": dict(config),
            "removed": {k: list(v) for k, v in removed.items()}, "extra": extra or {},
            "state_dict": model.state_dict(),
        },
        path,
    )
    return path


def read_pruned(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise AutopruneError(f"pruned model file not found: {path}")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise AutopruneError(f"{path} is not a model saved by autoprune")
    return data


def load_pruned(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Rebuilds a pruned model saved by the search or by export, ready for inference. A model that was
    searched as an object (spec "module:<class>") is rebuilt from `model`, an unpruned instance of it."""
    data = read_pruned(path)
    space = SearchSpace.from_dict(data["space"])
    if model is not None:
        base = model
    elif data["spec"].startswith("module:"):
        raise AutopruneError(f"{path} was searched from a {data['spec'][7:]} object: pass an unpruned instance, "
                             "load_pruned(path, model=...)")
    else:
        base = load_model(data["spec"], input_shape=tuple(space.input_shape)).model
    # The same removed indices as at save time give the same architecture, shortcut placements included.
    model = prune_channels(base, space, data["removed"])
    model.load_state_dict(data["state_dict"])
    model.autoprune_config = data["config"]
    return model.eval()
