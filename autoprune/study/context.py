"""build_contexts: the heavy objects a search worker (or an export) builds once from the settings, one context per
precision its candidates may be deployed in (a lane: its own table, space, widths and scoring).

A model and data passed as objects (the Python API) take the place of the settings' specs; everything
else (space, table, saliency, the width space, the supernet) is built from the settings alike.
"""
from __future__ import annotations

import dataclasses
import sys
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
from ..precision import Precision, precision
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

    @property
    def dtype(self) -> str:
        """The precision its candidates are deployed in: its table's."""
        return self.predictor.table.precision.name

    def prune(self, config: Config) -> tuple[nn.Module, dict[str, list[int]]]:
        """The pruned model of `config` and the channels it removed: the supernet's slice where the search is
        scored by one, else the trained model pruned by the settings' criterion."""
        from ..pruning.prune import prune_recorded

        if self.supernet is not None:
            return self.supernet.slice(config), self.supernet.removed(config)
        return prune_recorded(self.loaded.model, self.space, config, self.settings.criterion,
                              batch=self.criterion_batch, loss=self.data.loss, saliency=self.saliency.values)


def lane_precisions(settings: SearchSettings) -> list[Precision | None]:
    """The precisions a search's candidates may be deployed in: the one asked for (--dtype); a named table's own
    (None: read from the table); else each one this machine's backend times (ort-cpu: float32, then int8)."""
    from .. import defaults
    from ..latency.backends import get_backend

    if settings.dtype is not None:
        return [precision(settings.dtype)]
    if settings.table is not None:
        return [None]
    return list(get_backend(settings.backend or defaults.BACKEND, here=False).precisions)


def check_early(settings: SearchSettings):
    """What can be refused before a table is profiled (a bad sampler, budget, evaluator or ladder): the budget."""
    from .samplers import check_sampler

    check_sampler(settings.sampler)
    budget = parse_budget(settings.budget)
    check_evaluator(settings)
    return budget


def _latency(settings: SearchSettings, loaded: LoadedModel, wanted: Precision | None):
    table, space = table_and_space(
        settings.table, loaded,
        lambda p: space_for(loaded, settings.space_file, p.granularity(settings.steps, settings.multiple_of,
                                                                        settings.min_keep), settings.freeze,
                          settings.depth),
        settings.backend, settings.threads, settings.force_table, wanted)
    return LatencyPredictor(table, space), space


def build_context(settings: SearchSettings, loaded: LoadedModel | None = None, data: TaskData | None = None,
                  wanted: Precision | None = None, reference_ms: float | None = None,
                  supernet: Supernet | None = None) -> SearchContext:
    """One lane: the search's context in precision `wanted` (None: the settings' dtype, else a named table's own or
    the default). A relative budget is a share of `reference_ms` (None: this lane's unpruned model). `supernet`, one
    already made for this model and data in another lane, is re-used at this lane's widths."""
    from ..data.sources import load_data
    from ..models.specs import load_model
    from ..pruning.importance import KNAPSACK, criterion, resolve
    from ..allocation.saliency import channel_saliency

    budget = check_early(settings)
    pruning_criterion = resolve(settings.criterion, "pruning")
    needs_batch = pruning_criterion != KNAPSACK and criterion(pruning_criterion).needs_data
    loaded = loaded or load_model(settings.model, settings.weights, settings.input_shape)
    data = data or load_data(settings.data, loaded, seed=settings.seed)
    if wanted is None and settings.dtype is not None:
        wanted = precision(settings.dtype)
    predictor, space = _latency(settings, loaded, wanted)
    table = predictor.table
    ladder = evaluator_ladder(settings, table.precision)  # scored as deployed
    unpruned_ms = predictor.predict(space.full_config())
    min_ms = predictor.predict(space.narrowest_config())
    budget_ms = budget.to_ms(unpruned_ms if reference_ms is None else reference_ms)
    validation = table.model(predictor.key).get("validation")
    target_ms = budget_ms / (1 + margin_share(settings.margin, validation))
    if target_ms < min_ms:
        margin = f" less the margin {settings.margin} ({target_ms:.3f} ms)" if target_ms < budget_ms else ""
        raise BudgetError(
            f"budget {settings.budget} ({budget_ms:.3f} ms){margin} is below the fastest model this space can reach "
            f"in {table.precision} ({min_ms:.3f} ms predicted, unpruned {unpruned_ms:.3f} ms)"
        )
    saliency = channel_saliency(loaded.model, space, data, settings.saliency, seed=settings.seed)
    widths = WidthSpace.for_model(loaded.model, space, loaded.example_input())
    teacher = loaded.model if settings.distill else None
    batch = next(data.proxy_train.batches(64, shuffle=True, seed=settings.seed), None) if needs_batch else None
    if settings.evaluator != SUPERNET:
        supernet = None
    elif supernet is None:
        supernet = evaluator_supernet(settings, loaded, space, data)
    else:
        supernet = dataclasses.replace(supernet, space=space)  # its channel order holds every width of this space
    return SearchContext(settings, loaded, space, predictor, data, ladder, widths, saliency, teacher, unpruned_ms,
                         min_ms, budget_ms, target_ms, error_band(validation), batch, supernet)


def build_contexts(settings: SearchSettings, loaded: LoadedModel | None = None,
                   data: TaskData | None = None) -> dict[str, SearchContext]:
    """The search's lanes by precision name (lane_precisions), the first one's unpruned model the reference of a
    relative budget: float32, the model as the user has it. A lane whose narrowest model is over the budget is left
    out in one line; when every lane is, the first one's error stands."""
    from ..data.sources import load_data
    from ..models.specs import load_model

    check_early(settings)
    wanted = lane_precisions(settings)
    if len(wanted) == 1:
        ctx = build_context(settings, loaded, data, wanted[0])
        return {ctx.dtype: ctx}
    loaded = loaded or load_model(settings.model, settings.weights, settings.input_shape)
    data = data or load_data(settings.data, loaded, seed=settings.seed)
    lanes: dict[str, SearchContext] = {}
    refused: list[BudgetError] = []
    supernet, reference_ms = None, None  # the first lane's unpruned model: its own context holds it, unless refused
    for p in wanted:
        try:
            lanes[p.name] = build_context(settings, loaded, data, p, reference_ms, supernet)
            supernet = supernet or lanes[p.name].supernet
        except BudgetError as exc:
            refused.append(exc)
        if reference_ms is None:
            if p.name in lanes:
                reference_ms = lanes[p.name].unpruned_ms
            else:
                predictor, space = _latency(settings, loaded, p)
                reference_ms = predictor.predict(space.full_config())
    if not lanes:
        raise refused[0]
    for exc in refused:
        print(f"autoprune: {exc}: searching {' and '.join(lanes)} only", file=sys.stderr, flush=True)
    return lanes


def lane_targets(lanes: dict[str, SearchContext]) -> dict[str, float]:
    """Each lane's target (the budget less its table's margin), by precision."""
    return {name: ctx.target_ms for name, ctx in lanes.items()}


def lanes_digest(lanes: dict[str, SearchContext]) -> str:
    """What a study records of the spaces it searched: one lane's space digest (as a study of one precision always
    did), else one over every lane's."""
    if len(lanes) == 1:
        return next(iter(lanes.values())).space_digest
    return digest({name: ctx.space.to_dict() for name, ctx in lanes.items()})
