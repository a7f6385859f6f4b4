"""The Python API: every command as a function, on model specs or on the user's own objects.

A model is a spec string ("cifar:resnet56", "torchvision:resnet18", "file.py:factory") or an nn.Module with
`example_inputs` (a batch) or `input_shape` (one input). Data is a built-in source (`data="cifar10-mini"`) or
the user's `train_data` (Dataset or DataLoader of (inputs, targets)) with `evaluate` (model -> float, higher
is better) or `val_data` (top-1 on it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch.nn as nn

from . import defaults
from .defaults import DEFAULT_MODEL, STUDY_NAME
from .errors import AutopruneError, DataError
from .latency import LatencyPredictor, LatencyTable
from .models.specs import LoadedModel, from_module, load_model, model_and_weights, parse_input_shape
from .precision import Precision, precision
from .study import SearchResult, SearchSettings, build_context, build_contexts, read_result, run_search
from .pruning.space import Config, Granularity, SearchSpace, space_for
from .data.task import TaskData

Model = str | nn.Module
Table = str | Path | None  # None: this machine's own table (profiled on first use); "shipped"; or a file


def load(model: Model = DEFAULT_MODEL, weights: str | None = None, example_inputs=None,
         input_shape=None) -> LoadedModel:
    """A model spec or object, ready to analyse. The default model comes with its shipped weights."""
    if not isinstance(model, str):
        return from_module(model, example_inputs, input_shape)
    model, weights = model_and_weights(model, weights)
    return load_model(model, weights, input_shape)


def user_data(loaded: LoadedModel, train_data=None, val_data=None, evaluate: Callable | None = None,
              loss: Callable | None = None, need_metric: bool = True) -> TaskData | None:
    """The user's data and metric, or None when the search uses a built-in source."""
    from .data.user import UserData

    if train_data is None:
        if evaluate is not None or val_data is not None or loss is not None:
            raise DataError("evaluate, val_data and loss need train_data: the proxies re-estimate batch norm and "
                            "fine-tune on it")
        return None
    if need_metric and evaluate is None and val_data is None:
        raise DataError("with train_data, give evaluate=(model -> float, higher is better) or val_data= to score "
                        "candidates")
    return UserData(train_data, loaded.input_shape, evaluate, val_data, loss)


def inspect(model: Model = DEFAULT_MODEL, *, weights: str | None = None, example_inputs=None, input_shape=None,
            space: str | None = None, steps: int = 8, multiple_of: int | None = None, min_keep: float = 0.125,
            freeze: tuple[str, ...] = (), depth: bool = False, dtype: str | Precision | None = None) -> SearchSpace:
    """The model's prunable channel groups and the kept counts each may take (in `dtype`'s space: int8 rounds
    them to its preferred multiple)."""
    loaded = load(model, weights, example_inputs, input_shape)
    return space_for(loaded, space, precision(dtype).granularity(steps, multiple_of, min_keep), freeze, depth)


def verify(model: Model = DEFAULT_MODEL, *, weights: str | None = None, example_inputs=None, input_shape=None,
           space: str | None = None, steps: int = 8, multiple_of: int | None = None, min_keep: float = 0.125,
           freeze: tuple[str, ...] = (), depth: bool = False) -> list[str]:
    """Proves on random channel sets that pruning removes exactly the chosen channels; returns the failures."""
    from .pruning.verify import verify_space

    loaded = load(model, weights, example_inputs, input_shape)
    return verify_space(loaded.model, space_for(loaded, space, Granularity(steps, multiple_of, min_keep), freeze, depth))


def _loaded_space(model: Model, example_inputs, input_shape, space: str | None, steps: int = 8,
                  multiple_of: int | None = None, min_keep: float = 0.125, freeze: tuple[str, ...] = (),
                  depth: bool = False,
                  wanted: Precision | None = None):
    """The model and its search space; without --multiple-of, an int8 space keeps int8's preferred widths."""
    loaded = load(model, None, example_inputs, input_shape)
    return loaded, _space_in(loaded, space, precision(wanted), steps, multiple_of, min_keep, freeze, depth)


def _space_in(loaded: LoadedModel, space: str | None, wanted: Precision, steps: int = 8,
              multiple_of: int | None = None, min_keep: float = 0.125, freeze: tuple[str, ...] = (),
              depth: bool = False) -> SearchSpace:
    return space_for(loaded, space, wanted.granularity(steps, multiple_of, min_keep), freeze, depth)


def profile(model: Model, out: str | Path, *, example_inputs=None, input_shape=None, backend: str = defaults.BACKEND,
            threads: int = defaults.THREADS, batch: int = defaults.BATCH, dtype: str | Precision = defaults.DTYPE,
            calibration: int = 30, validate: int = 20, space: str | None = None, steps: int = 8,
            multiple_of: int | None = None, min_keep: float = 0.125, freeze: tuple[str, ...] = (),
            depth: bool = False, seed: int = 0,
            repeats: int | None = None, warmup: int | None = None, kit: str | Path | None = None):
    """Measures a latency table for the model on this machine (grown if `out` exists) and returns it; with
    `kit` (and `out` None), writes a zip that measures it on another device instead and returns its path."""
    from .latency.profile import profile as measure

    if (out is None) == (kit is None):
        raise AutopruneError("give exactly one of --out TABLE (measure here) or --kit FILE (for another device)")
    wanted = precision(dtype)
    loaded, searched = _loaded_space(model, example_inputs, input_shape, space, steps, multiple_of, min_keep, freeze,
                                     depth, wanted)
    settings = {k: v for k, v in (("repeats", repeats), ("warmup", warmup)) if v is not None}
    path = measure(loaded, searched, backend, out, threads, batch, wanted, calibration, validate, kit, seed, settings)
    return path if kit is not None else LatencyTable.load(path)


def _predictor(model: Model, table: Table, example_inputs, input_shape, space: str | None, steps: int = 8,
               multiple_of: int | None = None, min_keep: float = 0.125, freeze: tuple[str, ...] = (), depth: bool = False,
               strict: bool = False, force: bool = False, backend: str | None = None, threads: int | None = None,
               dtype: str | Precision | None = None) -> tuple[LoadedModel, LatencyPredictor]:
    from .latency.choose import table_and_space

    loaded = load(model, None, example_inputs, input_shape)
    chosen, searched = table_and_space(
        table, loaded, lambda p: _space_in(loaded, space, p, steps, multiple_of, min_keep, freeze, depth),
        backend, threads, force, None if dtype is None else precision(dtype))
    return loaded, LatencyPredictor(chosen, searched, strict=strict)


@dataclass
class Prediction:
    ms: float
    parts: dict[str, float]  # per layer and per calibration term; they sum to ms
    table: LatencyTable


def predict(model: Model = DEFAULT_MODEL, table: Table = None, config: Config | None = None, *,
            example_inputs=None, input_shape=None, space: str | None = None, **options) -> float:
    """Predicted milliseconds of `config` ({group: kept channels}; default the unpruned model). `options`:
    steps, multiple_of, min_keep, freeze, depth, strict, force, and backend/threads/dtype for this machine's table."""
    return explain(model, table, config, example_inputs=example_inputs, input_shape=input_shape, space=space,
                   **options).ms


def explain(model: Model = DEFAULT_MODEL, table: Table = None, config: Config | None = None, *,
            example_inputs=None, input_shape=None, space: str | None = None, **options) -> Prediction:
    """The prediction of `config` with its per-layer breakdown and the table it came from."""
    _, predictor = _predictor(model, table, example_inputs, input_shape, space, **options)
    return Prediction(predictor.predict(config or {}), predictor.breakdown(config or {}), predictor.table)


def validate(model: Model = DEFAULT_MODEL, table: Table = None, *, samples: int = 30, seed: int | None = None,
             example_inputs=None, input_shape=None, space: str | None = None, save: bool = True,
             plot: str | Path | None = None, **options) -> dict:
    """Times `samples` random configs end to end and returns the predictor's error figures (stored in the table
    with `save`)."""
    from .latency.validate import DEFAULT_SEED, validate as measure

    if samples < 2:
        raise AutopruneError("--samples must be at least 2")
    loaded, predictor = _predictor(model, table, example_inputs, input_shape, space, **options)
    figures = measure(loaded, predictor.space, predictor.table, samples, DEFAULT_SEED if seed is None else seed,
                      save=save, plot=plot)
    return {**figures, "table": str(predictor.table.path), "backend": predictor.table.backend}


def rescale(model: Model, table: str | Path, out: str | Path, *, configs: int = 8, seed: int = 0, example_inputs=None,
            input_shape=None, space: str | None = None, force: bool = False, terms: bool = True,
            **options) -> tuple[LatencyTable, dict]:
    """Adapts a table measured on another machine to this one from a few models timed here (its compute and
    overhead terms refitted apart, or with `terms=False` one factor); returns the new table and the figures."""
    from .latency.rescale import rescale as adapt

    if configs < 2:
        raise AutopruneError("--configs must be at least 2")
    from .latency.choose import named_table

    loaded = load(model, None, example_inputs, input_shape)
    adapted = LatencyTable.load(named_table(table, loaded.spec), force=force)
    # Its configs are drawn from the space the table was profiled in: an int8 table's widths.
    return adapt(loaded, _space_in(loaded, space, adapted.precision, **options), adapted, out, configs, seed, terms)


def tables(clear: bool = False) -> list:
    """This machine's cached latency tables (CachedTable: path, device, models with their held-out MAPE, age,
    whether it describes this machine); with `clear`, removes them first and returns what is left."""
    from .latency.cache import cached_tables, clear_cache

    if clear:
        clear_cache()
    return cached_tables()


def _shape(input_shape) -> list[int] | None:
    if input_shape is None:
        return None
    return list(parse_input_shape(input_shape) if isinstance(input_shape, str) else input_shape)


def _searched(model: Model, budget: str, weights, example_inputs, input_shape, train_data, val_data, evaluate, loss,
              settings: dict, need_metric: bool = True) -> tuple[SearchSettings, tuple | None]:
    """The settings of a search and, when the caller passed objects, the loaded model and data made from them."""
    if isinstance(model, str) and train_data is None and evaluate is None and val_data is None:
        model, weights = model_and_weights(model, weights, trained=True)
        return SearchSettings(budget=budget, model=model, weights=weights, input_shape=_shape(input_shape),
                              **settings), None
    loaded = load(model, weights, example_inputs, input_shape)
    data = user_data(loaded, train_data, val_data, evaluate, loss, need_metric)
    searched = SearchSettings(budget=budget, model=loaded.spec, weights=loaded.weights,
                              input_shape=list(loaded.input_shape), **settings)
    if data is not None:
        searched.data = data.source
    return searched, (loaded, data)


def search(model: Model = DEFAULT_MODEL, budget: str = "0.5x", *, weights: str | None = None, example_inputs=None,
           input_shape=None, train_data=None, val_data=None, evaluate: Callable | None = None,
           loss: Callable | None = None, out: str | Path | None = None, storage: str | None = None,
           study: str = STUDY_NAME, workers: int = 1, **settings) -> SearchResult:
    """Runs (or resumes) a search and returns its front (in `out`, default runs/<model>). `settings` are
    SearchSettings fields (table, backend, threads, margin, evaluator, supernet_epochs, supernet_samples, proxy,
    trials, seed, criterion, saliency, sampler, distill, steps, multiple_of, min_keep, freeze, depth, space_file, measure,
    ...). evaluator="supernet" fine-tunes a supernet from `model` once (cached for later searches). Without `table`,
    latency comes from this machine's own table, profiled on first use; each trial's widths are then fitted to this
    machine's clock and the front is timed here when the trials are done (measure=False: neither)."""
    if settings.get("trials", 1) < 1 or workers < 1:
        raise AutopruneError("--trials and --workers must be at least 1")
    searched, objects = _searched(model, budget, weights, example_inputs, input_shape, train_data, val_data,
                                  evaluate, loss, settings)
    lanes = None if objects is None else build_contexts(searched, *objects)
    return run_search(searched, out or defaults.default_out(searched.model), storage, study, workers, lanes)


@dataclass
class KnapsackResult:
    config: Config
    predicted_ms: float
    target_ms: float  # the budget less the margin: what the knapsack filled
    budget_ms: float
    unpruned_ms: float
    saliency: str


def knapsack(model: Model = DEFAULT_MODEL, budget: str = "0.5x", *, weights: str | None = None, example_inputs=None,
             input_shape=None, train_data=None, loss: Callable | None = None, **settings) -> KnapsackResult:
    """The one-shot latency-saliency knapsack's config at `budget` (seconds, no accuracy evaluations)."""
    from .allocation.rules import one_shot_knapsack

    searched, objects = _searched(model, budget, weights, example_inputs, input_shape, train_data, None, None, loss,
                                  {**settings, "evaluator": "ladder"}, need_metric=False)  # no scores: nothing to train
    ctx = build_context(searched, *(objects or ()))
    config = one_shot_knapsack(ctx.widths, ctx.predictor, ctx.saliency, ctx.target_ms)
    return KnapsackResult(config, ctx.predictor.predict(config), ctx.target_ms, ctx.budget_ms, ctx.unpruned_ms,
                          ctx.settings.saliency)


def pareto(out: str | Path) -> SearchResult:
    """The front of a finished search, read from its run directory."""
    return read_result(out)


def export(out: str | Path, *, trial: int | None = None, budget: str | None = None, finetune_epochs: float = 1.0,
           lr: float = 0.01, distill: bool = False, storage: str | None = None, study: str = STUDY_NAME,
           seed: int = 0, schedule: str = "one-shot", int8: bool = False, model: nn.Module | None = None,
           example_inputs=None, input_shape=None, train_data=None, val_data=None, evaluate: Callable | None = None,
           loss: Callable | None = None):
    """Fine-tunes a front member, saves .pt and .onnx, times it here; returns the ExportReport. A search run
    on objects is exported with the same objects (model, data, metric) passed again. `schedule="progressive"`
    prunes while fine-tuning (HALP's schedule, training/schedule.py) instead of before; `int8` also writes and times
    model.int8.onnx (implied by an int8 table)."""
    from .deploy import ExportRequest, export as run

    if trial is not None and budget is not None:
        raise AutopruneError("give --trial or --budget, not both")
    request = ExportRequest(str(out), trial, budget, finetune_epochs, lr, distill, storage, study, seed, schedule,
                            int8)
    loaded = None if model is None else load(model, None, example_inputs, input_shape)
    data = None if loaded is None else user_data(loaded, train_data, val_data, evaluate, loss)
    return run(request, loaded, data)


def complete_export(out: str | Path, measured: str | Path):
    """Finishes an export whose table is another device's, from the result.json its timing kit wrote there."""
    from .deploy import complete_export as complete

    return complete(out, measured)
