"""Optuna samplers by name, and the seed each worker gives its sampler."""
from __future__ import annotations

import socket
import warnings
import zlib

import optuna

from ..errors import AutopruneError

# Samplers by name; each takes the seed. TPE's first trials are random: 8 of them, then it models the rest.
SAMPLERS = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=8),
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=10),
}


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    check_sampler(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLERS[name](seed)


def sampler_seed(seed: int, index: int, shared: bool) -> int:
    """Workers of one machine differ by their index; on a storage other machines share, the host name is
    mixed in too, so two machines started with one --seed do not draw the same samples."""
    host = zlib.crc32(socket.gethostname().encode()) if shared else 0
    return (seed + index + host) % 2**31


def check_sampler(name: str) -> None:
    if name not in SAMPLERS:
        raise AutopruneError(f"unknown sampler '{name}' (choose {' or '.join(SAMPLERS)})")
