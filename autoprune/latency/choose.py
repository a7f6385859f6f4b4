"""Which table a prediction uses, one rule for every command and API function:

- none named: this machine's own table, from the cache or profiled now (cache.py);
- "shipped": the reference table shipped with autoprune that holds the model (measured on the machine its
  device block names; predicting with it elsewhere warns, in one line);
- anything else: a table file (a profile of this machine, or one brought back from another device's kit).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .. import defaults
from ..errors import TableError
from ..models.specs import LoadedModel
from ..precision import Precision
from ..pruning.space import SearchSpace
from .cache import LocalTarget, table_for_this_machine
from .table import LatencyTable


def shipped_table(model: str) -> Path:
    """The shipped table that holds a layout of `model`."""
    from ..assets import shipped_table_for

    path = shipped_table_for(model)
    if path is None:
        raise TableError(f"no shipped latency table holds {model}: leave out --table to profile this machine, or "
                         "name a table file")
    return path


def named_table(table: str | Path, model: str) -> Path:
    """The file a table name means: the shipped one holding `model` for 'shipped', else the name itself."""
    return shipped_table(model) if str(table) == defaults.SHIPPED else Path(table)


def choose_table(table: str | Path | None, loaded: LoadedModel, space: SearchSpace | None, backend: str | None = None,
                 threads: int | None = None, force: bool = False, precision: Precision | None = None) -> LatencyTable:
    """`backend`, `threads` and `precision` (None: the defaults) are what this machine's own table is measured with;
    a named table brings its own, and a `backend` asked for that it lacks is refused unless `force`. A precision
    asked for that a named table lacks is always refused: its latencies would be another precision's. `space` is
    what this machine's own table is profiled for (a named one needs none)."""
    if table is None:
        target = LocalTarget(backend or defaults.BACKEND, threads or defaults.THREADS,
                             precision=precision or LocalTarget.precision)
        return table_for_this_machine(loaded, space, target)
    chosen = LatencyTable.load(named_table(table, loaded.spec), backend, None, force)
    if precision is not None and chosen.precision != precision:
        raise TableError(f"table {chosen.path} holds {chosen.precision} latencies, this asks for {precision}: leave "
                         f"out --dtype to work in {chosen.precision}, or leave out --table for this machine's own "
                         f"{precision} table (profiled on first use)")
    return chosen


def table_and_space(table: str | Path | None, loaded: LoadedModel, space_in: Callable[[Precision], SearchSpace],
                    backend: str | None = None, threads: int | None = None, force: bool = False,
                    precision: Precision | None = None) -> tuple[LatencyTable, SearchSpace]:
    """The table (choose_table) and the search space built by `space_in` in the table's precision: the one asked
    for, else a named table's own (an int8 table predicts int8 widths), else the default."""
    if table is None:
        space = space_in(precision or LocalTarget.precision)
        return choose_table(None, loaded, space, backend, threads, force, precision), space
    chosen = choose_table(table, loaded, None, backend, threads, force, precision)
    return chosen, space_in(chosen.precision)
