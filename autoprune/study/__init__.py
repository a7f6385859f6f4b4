"""The study behind `autoprune.search`: an Optuna study over the allocation's knobs, scored by the proxy ladder.

  settings.py   SearchSettings (stored in the study) and the content digest that pins a study's space
  context.py    build_context: model, space, table, data, saliency, allocation, built once per worker
  objective.py  Objective: knobs -> config at the budget -> proxy ladder, reported to the pruner
  execution.py  sampler, pruner and storage registries, recovery of killed trials, workers, run_search
  result.py     SearchResult and the Pareto filter over trials (no I/O)
  outputs.py    the files a search writes and reads back, and the front's table
"""
from .context import SearchContext, build_context, default_table
from .execution import STUDY_NAME, run_search
from .outputs import format_front, read_result
from .result import FrontMember, SearchResult
from .settings import SearchSettings

__all__ = ["SearchSettings", "SearchContext", "build_context", "default_table", "run_search", "STUDY_NAME",
           "SearchResult", "FrontMember", "read_result", "format_front"]
