"""autoprune: hardware-aware automated channel pruning for PyTorch CNNs.

    import autoprune
    result = autoprune.search(budget="0.5x")          # the embedded default: CIFAR ResNet-56, shipped data
    best = result.select()                            # most accurate front member within the budget
    model = autoprune.load_pruned(best.model_path)    # a pruned nn.Module
"""
from __future__ import annotations

from .checkpoint import load_pruned
from .errors import AutopruneError

__all__ = ["search", "knapsack", "load_pruned", "AutopruneError"]
__version__ = "0.1.0"


def search(budget: str, out: str = "runs/search", storage: str | None = None, study: str = "autoprune",
           workers: int = 1, **settings):
    """Runs (or resumes) a search; `settings` are the fields of `autoprune.study.SearchSettings`
    (model, weights, data, table, proxy, criterion, sampler, trials, seed, steps, multiple_of, min_keep, freeze).
    Returns a `SearchResult` with `.front` and `.select(budget)`."""
    from .study import SearchSettings, run_search

    return run_search(SearchSettings(budget=budget, **settings), out, storage, study, workers)


def knapsack(budget: str, **settings) -> dict[str, int]:
    """The one-shot latency-saliency knapsack's config at `budget` (seconds, no accuracy evaluations);
    `settings` as for `search` (model, weights, data, table, saliency, ...)."""
    from .study import SearchSettings, build_context

    return build_context(SearchSettings(budget=budget, **settings)).allocation.config({})
