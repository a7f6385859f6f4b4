"""build_context: the heavy objects a search worker (or an export) builds once from the settings.

A model and data passed as objects (the Python API) take the place of the settings' specs; everything
else (space, table, saliency, the width space, the supernet) is built from the settings alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn

from ..allocation.saliency import Saliency
from ..allocation.widths import WidthSpace
from ..budget import error_band, margin_share, parse_budget
from ..errors import BudgetError
from ..latency import LatencyPredictor
from ..latency.choose import table_and_space
from ..models.specs import LoadedModel
from ..training.proxies import Proxy
from ..training.supernet import Supernet
from ..precision import precision
from ..pruning.space import Config, SearchSpace, space_for
from ..data.task import TaskData
from .evaluators import SUPERNET, check_evaluator, evaluator_ladder, evaluator_supernet
from .settings import SearchSettings, digest


@dataclass
class SearchContext:
    settings: SearchSettings
    loaded: LoadedModel
    space: SearchSpace
    predictor: LatencyPredictor
    data: TaskData
    ladder: list[Proxy]  # the evaluator's stages, cheapest first
    widths: WidthSpace
    saliency: Saliency
    teacher: nn.Module | None
    unpruned_ms: float
    min_ms: float
    budget_ms: float  # the user's budget
    target_ms: float  # what candidates are fitted to: the budget less the margin
    band: tuple[float, float] | None  # measured / predicted on the table's held-out configs (5th, 95th percentile)
    criterion_batch: tuple | None = field(default=None, repr=False)  # for criteria that score from gradients
    supernet: Supernet | None = field(default=None, repr=False)  # the evaluator's, where it is the supernet

    @property
    def space_digest(self) -> str:
        return digest(self.space.to_dict())

    def prune(self, config: Config) -> tuple[nn.Module, dict[str, list[int]]]:
        """The pruned model of `config` and the channels it removed: the supernet's slice where the search is
        scored by one, else the trained model pruned by the settings' criterion."""
        from ..pruning.prune import prune_recorded

        if self.supernet is not None:
            return self.supernet.slice(config), self.supernet.removed(config)
        return prune_recorded(self.loaded.model, self.space, config, self.settings.criterion,
                              batch=self.criterion_batch, loss=self.data.loss, saliency=self.saliency.values)


def build_context(settings: SearchSettings, loaded: LoadedModel | None = None,
                  data: TaskData | None = None) -> SearchContext:
    from ..data.sources import load_data
    from ..models.specs import load_model
    from ..pruning.importance import KNAPSACK, criterion, resolve
    from ..allocation.saliency import channel_saliency
    from .samplers import check_sampler

    check_sampler(settings.sampler)
    budget = parse_budget(settings.budget)
    check_evaluator(settings)  # a bad evaluator or ladder spec fails before a table is profiled
    pruning_criterion = resolve(settings.criterion, "pruning")
    needs_batch = pruning_criterion != KNAPSACK and criterion(pruning_criterion).needs_data
    loaded = loaded or load_model(settings.model, settings.weights, settings.input_shape)
    data = data or load_data(settings.data, loaded, seed=settings.seed)
    table, space = table_and_space(
        settings.table, loaded,
        lambda p: space_for(loaded, settings.space_file, p.granularity(settings.steps, settings.multiple_of,
                                                                        settings.min_keep), settings.freeze),
        settings.backend, settings.threads, settings.force_table,
        None if settings.dtype is None else precision(settings.dtype))
    predictor = LatencyPredictor(table, space)
    ladder = evaluator_ladder(settings, table.precision)  # scored as deployed
    unpruned_ms = predictor.predict(space.full_config())
    min_ms = predictor.predict(space.narrowest_config())
    budget_ms = budget.to_ms(unpruned_ms)
    validation = table.model(predictor.key).get("validation")
    target_ms = budget_ms / (1 + margin_share(settings.margin, validation))
    if target_ms < min_ms:
        margin = f" less the margin {settings.margin} ({target_ms:.3f} ms)" if target_ms < budget_ms else ""
        raise BudgetError(
            f"budget {settings.budget} ({budget_ms:.3f} ms){margin} is below the fastest model this space can reach "
            f"({min_ms:.3f} ms predicted, unpruned {unpruned_ms:.3f} ms)"
        )
    saliency = channel_saliency(loaded.model, space, data, settings.saliency, seed=settings.seed)
    widths = WidthSpace.for_model(loaded.model, space, loaded.example_input())
    teacher = loaded.model if settings.distill else None
    batch = next(data.proxy_train.batches(64, shuffle=True, seed=settings.seed), None) if needs_batch else None
    supernet = evaluator_supernet(settings, loaded, space, data) if settings.evaluator == SUPERNET else None
    return SearchContext(settings, loaded, space, predictor, data, ladder, widths, saliency, teacher, unpruned_ms,
                         min_ms, budget_ms, target_ms, error_band(validation), batch, supernet)
