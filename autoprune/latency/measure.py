"""End-to-end latency of whole models on a table's backend: what validation and export compare against."""
from __future__ import annotations

import statistics

import torch
import torch.nn as nn

from .. import defaults
from ..precision import FLOAT32, Precision
from . import backends
from .runner import STEADY


def measure_models_ms(models: list[nn.Module], example_input: torch.Tensor, backend: str,
                      threads: int = defaults.THREADS, rounds: int = STEADY["rounds"],
                      per_round: int = STEADY["per_round"], precision: Precision = FLOAT32) -> list[tuple[float, float]]:
    """(median ms, relative spread) of each model, timed interleaved."""
    stats = backends.get_backend(backend, precision).time_models(models, example_input, threads, rounds, per_round,
                                                                 precision)
    return [(s["ms"], s["spread"]) for s in stats]


def measure_shares(models: list[nn.Module], example_input: torch.Tensor, backend: str, threads: int, rounds: int,
                   per_round: int, precision: Precision = FLOAT32) -> tuple[float, list[float]]:
    """The first model's median ms and each other model's share of it, timed interleaved: a share is the median over
    rounds of the two models' ratio within the round, so the machine's drift between rounds cancels (study/timing.py
    has the figures)."""
    stats = backends.get_backend(backend, precision).time_models(models, example_input, threads, rounds, per_round,
                                                                 precision)
    return stats[0]["ms"], [round_by_round_share(s, stats[0]) for s in stats[1:]]


def round_by_round_share(stats: dict, reference: dict) -> float:
    """The median over rounds of one model's round median over the reference's (the runner's stats of both)."""
    return statistics.median(ms / ref for ms, ref in zip(stats["rounds_ms"], reference["rounds_ms"]))


def measure_model_ms(model: nn.Module, example_input: torch.Tensor, backend: str, threads: int = defaults.THREADS,
                     rounds: int = STEADY["rounds"], per_round: int = STEADY["per_round"],
                     precision: Precision = FLOAT32) -> tuple[float, float]:
    """(median ms, relative spread) of one forward pass of `model` on `backend`."""
    return measure_models_ms([model], example_input, backend, threads, rounds, per_round, precision)[0]
