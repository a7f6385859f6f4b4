"""The Python API: every command as a function, on model specs or on the user's own objects.

A model is a spec string ("cifar:resnet56", "torchvision:resnet18", "file.py:factory") or an nn.Module with
`example_inputs` (a batch) or `input_shape` (one input). Data is a built-in source (`data="cifar10-mini"`) or
the user's `train_data` (Dataset or DataLoader of (inputs, targets)) with `evaluate` (model -> float, higher
is better) or `val_data` (top-1 on it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch.nn as nn

from .errors import DataError
from .latency import LatencyPredictor, LatencyTable
from .models import LoadedModel, from_module, load_model
from .study import STUDY_NAME, SearchContext, SearchResult, SearchSettings, build_context, read_result, run_search
from .space import Granularity, SearchSpace, space_for
from .taskdata import TaskData

DEFAULT_MODEL = "cifar:resnet56"
Model = str | nn.Module


def load(model: Model = DEFAULT_MODEL, weights: str | None = None, example_inputs=None,
         input_shape=None) -> LoadedModel:
    """A model spec or object, ready to analyse. The default model comes with its shipped weights."""
    if not isinstance(model, str):
        return from_module(model, example_inputs, input_shape)
    if weights is None and model == DEFAULT_MODEL:
        weights = "shipped"
    return load_model(model, weights, input_shape)


def user_data(loaded: LoadedModel, train_data=None, val_data=None, evaluate: Callable | None = None,
              loss: Callable | None = None, need_metric: bool = True) -> TaskData | None:
    """The user's data and metric, or None when the search uses a built-in source."""
    from .user_data import UserData

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
            freeze: tuple[str, ...] = ()) -> SearchSpace:
    """The model's prunable channel groups and the kept counts each may take."""
    loaded = load(model, weights, example_inputs, input_shape)
    return space_for(loaded, space, Granularity(steps, multiple_of, min_keep), freeze)


def profile(model: Model, out: str | Path, *, example_inputs=None, input_shape=None, backend: str = "ort-cpu",
            threads: int = 1, batch: int = 1, calibration: int = 30, validate: int = 20, space: str | None = None,
            steps: int = 8, multiple_of: int | None = None, min_keep: float = 0.125, freeze: tuple[str, ...] = (),
            seed: int = 0) -> LatencyTable:
    """Measures a latency table for the model on this machine (grown if `out` exists) and returns it."""
    from .latency.profile import profile as measure

    loaded = load(model, None, example_inputs, input_shape)
    searched = space_for(loaded, space, Granularity(steps, multiple_of, min_keep), freeze)
    path = measure(loaded, searched, backend, out, threads, batch, "float32", calibration, validate, None, seed)
    return LatencyTable.load(path)


def predict(model: Model, table: str | Path, config: dict[str, int] | None = None, *, example_inputs=None,
            input_shape=None, space: str | None = None) -> float:
    """Predicted milliseconds of `config` ({group: kept channels}; default the unpruned model)."""
    loaded = load(model, None, example_inputs, input_shape)
    searched = space_for(loaded, space)
    return LatencyPredictor(LatencyTable.load(table), searched).predict(searched.complete(config or {}))


def validate(model: Model, table: str | Path, *, samples: int = 30, seed: int | None = None, example_inputs=None,
             input_shape=None, space: str | None = None, save: bool = True) -> dict:
    """Times `samples` random configs end to end and returns the predictor's error figures."""
    from .latency.validate import DEFAULT_SEED, validate as measure

    loaded = load(model, None, example_inputs, input_shape)
    return measure(loaded, space_for(loaded, space), LatencyTable.load(table),
                   samples, DEFAULT_SEED if seed is None else seed, save=save)


def rescale(model: Model, table: str | Path, out: str | Path, *, configs: int = 8, seed: int = 0, example_inputs=None,
            input_shape=None, space: str | None = None) -> tuple[LatencyTable, dict]:
    """Adapts a table measured on another machine to this one (a few models timed here, one factor);
    returns the new table and the error figures before and after on the models timed."""
    from .latency.rescale import rescale as adapt

    loaded = load(model, None, example_inputs, input_shape)
    return adapt(loaded, space_for(loaded, space), LatencyTable.load(table), out, configs, seed)


def _context(model: Model, budget: str, weights, example_inputs, input_shape, train_data, val_data, evaluate, loss,
             settings: dict, need_metric: bool = True) -> tuple[SearchSettings, SearchContext | None]:
    """The settings of a search and, when the caller passed objects, the context built from them."""
    if isinstance(model, str) and train_data is None and evaluate is None and val_data is None:
        weights = "shipped" if weights is None and model == DEFAULT_MODEL else weights
        return SearchSettings(budget=budget, model=model, weights=weights, input_shape=input_shape, **settings), None
    loaded = load(model, weights, example_inputs, input_shape)
    data = user_data(loaded, train_data, val_data, evaluate, loss, need_metric)
    searched = SearchSettings(budget=budget, model=loaded.spec, weights=loaded.weights,
                              input_shape=list(loaded.input_shape), **settings)
    if data is not None:
        searched.data = data.source
    return searched, build_context(searched, loaded, data)


def search(model: Model = DEFAULT_MODEL, budget: str = "0.5x", *, weights: str | None = None, example_inputs=None,
           input_shape=None, train_data=None, val_data=None, evaluate: Callable | None = None,
           loss: Callable | None = None, out: str | Path = "runs/search", storage: str | None = None,
           study: str = STUDY_NAME, workers: int = 1, **settings) -> SearchResult:
    """Runs (or resumes) a search and returns its front. `settings` are SearchSettings fields (table, proxy,
    trials, seed, criterion, saliency, sampler, distill, steps, multiple_of, min_keep, freeze, space_file, ...)."""
    searched, context = _context(model, budget, weights, example_inputs, input_shape, train_data, val_data,
                                 evaluate, loss, settings)
    return run_search(searched, out, storage, study, workers, context)


def knapsack(model: Model = DEFAULT_MODEL, budget: str = "0.5x", *, weights: str | None = None, example_inputs=None,
             input_shape=None, train_data=None, loss: Callable | None = None, **settings) -> dict[str, int]:
    """The one-shot latency-saliency knapsack's config at `budget` (seconds, no accuracy evaluations)."""
    searched, context = _context(model, budget, weights, example_inputs, input_shape, train_data, None, None, loss,
                                 settings, need_metric=False)
    return (context or build_context(searched)).allocation.config({})


def pareto(out: str | Path) -> SearchResult:
    """The front of a finished search, read from its run directory."""
    return read_result(out)


def export(out: str | Path, *, trial: int | None = None, budget: str | None = None, finetune_epochs: float = 1.0,
           lr: float = 0.01, distill: bool = False, storage: str | None = None, study: str = STUDY_NAME,
           seed: int = 0, model: nn.Module | None = None, example_inputs=None, input_shape=None, train_data=None,
           val_data=None, evaluate: Callable | None = None, loss: Callable | None = None):
    """Fine-tunes a front member, saves .pt and .onnx, times it here; returns the ExportReport. A search run
    on objects is exported with the same objects (model, data, metric) passed again."""
    from .deploy import ExportRequest, export as run

    request = ExportRequest(str(out), trial, budget, finetune_epochs, lr, distill, storage, study, seed)
    loaded = None if model is None else load(model, None, example_inputs, input_shape)
    data = None if loaded is None else user_data(loaded, train_data, val_data, evaluate, loss)
    return run(request, loaded, data)
