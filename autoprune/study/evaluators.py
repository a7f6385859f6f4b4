"""How a search scores a candidate, chosen by one setting (`--evaluator`):

  supernet  the user's model fine-tuned once so that every width runs (training/supernet.py); a candidate is its
            slice, batch norms re-estimated, scored on proxy-val: a few seconds each, and one supernet serves every
            budget of the same model, data and space (it is cached beside the latency tables).
  ladder    the user's model pruned by the settings' criterion, then the proxy ladder (adaptive-bn>finetune:K):
            nothing to train up front, but each candidate is scored from one-shot damage.

Both give the study a list of stages (proxies) and the context's `prune` the candidate's model, so the objective
runs either the same way.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..data.task import TaskData
from ..errors import AutopruneError
from ..latency.cache import cache_dir
from ..models.specs import LoadedModel, weights_digest
from ..precision import Precision
from ..pruning.space import SearchSpace
from ..training.proxies import Proxy, make_ladder
from ..training.supernet import Supernet, SupernetSettings, supernet_for

SUPERNET, LADDER = "supernet", "ladder"
EVALUATORS = (SUPERNET, LADDER)


def check_evaluator(settings) -> None:
    if settings.evaluator not in EVALUATORS:
        raise AutopruneError(f"unknown evaluator '{settings.evaluator}' (choose {' or '.join(EVALUATORS)})")
    make_ladder(settings.proxy)  # a bad --proxy is a mistake whichever evaluator reads it
    if settings.evaluator == SUPERNET and (not settings.supernet_epochs > 0 or settings.supernet_samples < 0):
        raise AutopruneError(f"a supernet needs epochs > 0 and samples >= 0, got {settings.supernet_epochs} and "
                             f"{settings.supernet_samples}")


def evaluator_ladder(settings, precision: Precision) -> list[Proxy]:
    """The stages a candidate is scored through, the last one's score in the precision it is deployed in."""
    if settings.evaluator == SUPERNET:
        return [Proxy(SUPERNET, seed=settings.seed, precision=precision)]
    return make_ladder(settings.proxy, settings.seed, precision)


def supernet_settings(settings) -> SupernetSettings:
    return SupernetSettings(epochs=settings.supernet_epochs, samples=settings.supernet_samples, seed=settings.seed)


def supernet_dir() -> Path:
    """Beside the latency tables (latency/cache.py): $AUTOPRUNE_CACHE/supernets, else ~/.cache/autoprune/supernets."""
    return cache_dir("supernets")


def supernet_identity(settings, loaded: LoadedModel, data: TaskData) -> dict:
    """What the supernet is made from, besides the space and its own settings: its part of the cache key."""
    return {"model": settings.model, "weights": weights_digest(loaded.model), "data": settings.data,
            "split_seed": settings.seed, "proxy_train": len(data.proxy_train)}


@torch.no_grad()
def evaluator_supernet(settings, loaded: LoadedModel, space: SearchSpace, data: TaskData) -> Supernet:
    """The supernet of this model, data and space: from the cache, or fine-tuned now (resumable) and cached."""
    out = loaded.model.eval()(loaded.example_input())
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise AutopruneError("the supernet evaluator distils class scores (an output of batch x classes); this model "
                             "returns something else: search with --evaluator ladder")
    with torch.enable_grad():
        return supernet_for(loaded.model, space, data, supernet_settings(settings),
                            supernet_identity(settings, loaded, data), supernet_dir())
