"""autoprune: hardware-aware automated channel pruning for PyTorch CNNs.

    import autoprune
    result = autoprune.search(budget="0.5x")          # the embedded default: CIFAR ResNet-56, shipped data
    best = result.select()                            # most accurate front member within the budget
    model = autoprune.load_pruned(best.model_path)    # a pruned nn.Module

    # your model, your data, your metric
    result = autoprune.search(net, "0.5x", example_inputs=torch.randn(1, 3, 224, 224), table="my-cpu.json",
                              train_data=loader, evaluate=lambda m: my_metric(m))
"""
from __future__ import annotations

from .api import export, inspect, knapsack, pareto, predict, profile, rescale, search, validate
from .pruning.pruned_files import load_pruned
from .errors import (AutopruneError, BudgetError, DataError, LatencyCheckFailed, StudyError, TableError,
                     UnsupportedModelError)
from .study import FrontMember, SearchResult, SearchSettings

__all__ = [
    "search", "knapsack", "inspect", "profile", "predict", "validate", "rescale", "pareto", "export", "load_pruned",
    "SearchResult", "FrontMember", "SearchSettings",
    "AutopruneError", "BudgetError", "DataError", "LatencyCheckFailed", "StudyError", "TableError",
    "UnsupportedModelError",
]
__version__ = "0.1.0"
