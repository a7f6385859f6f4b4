"""The study behind `autoprune.search`: an Optuna study over each group's width, started from the rules, scored by
the supernet or the proxy ladder.

  settings.py   SearchSettings (stored in the study) and the content digest that pins a study's space
  context.py    build_contexts: one lane per precision (model, space, table, data, saliency, width space,
                supernet), built once per worker
  evaluators.py what scores a candidate: the supernet's slice, or the proxy ladder (--evaluator)
  objective.py  Objective: precision and widths -> repaired to the budget -> the evaluator's stages, reported to
                the pruner
  execution.py  sampler, pruner and storage registries, workers, run_search, reopen
  recovery.py   trials left running by killed processes: found at any moment of their start, failed, retried
  result.py     SearchResult and the Pareto filter over trials (no I/O)
  outputs.py    the files a search writes and reads back
"""
from .context import SearchContext, build_context, build_contexts
from .execution import STUDY_NAME, reopen, run_search
from .outputs import read_result
from .result import FrontMember, SearchResult
from .settings import SearchSettings

__all__ = ["SearchSettings", "SearchContext", "build_context", "build_contexts", "run_search", "reopen", "STUDY_NAME",
           "SearchResult", "FrontMember", "read_result"]
