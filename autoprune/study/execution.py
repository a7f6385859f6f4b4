"""Running a study: pruner and storage, recovery of killed trials, one or several worker processes.

The study is single-objective (the proxy score, maximised) so that Optuna's successive-halving pruner can
stop a candidate after a cheap fidelity; the predicted latency of every trial is stored beside it, and the
Pareto front is computed from those (result.py).
"""
from __future__ import annotations

import itertools
import multiprocessing
import sys
import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState
from tqdm import tqdm

from ..defaults import STUDY_NAME
from ..errors import AutopruneError, StudyError
from ..models.specs import LoadedModel
from ..data.task import TaskData
from .context import SearchContext, build_contexts, lane_targets, lanes_digest
from ..allocation.rules import starting_configs
from .objective import REDUCTION_FACTOR, RULE, Objective
from .recovery import recover_dead_trials, register, unregister
from .result import DTYPE, FINISHED, SearchResult, completed, is_start, lane_of, trial_ms
from .samplers import make_sampler, sampler_seed
from .settings import SEARCH_SPACE, SearchSettings, as_stored
from .timing import fit_clock

def make_pruner() -> optuna.pruners.BasePruner:
    # Stage i of the proxy ladder reports at step 3**i: the rungs of successive halving with min_resource 1.
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=REDUCTION_FACTOR)


JOURNAL = "journal:"


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """`journal:FILE` is Optuna's journal file (for shared file systems, e.g. NFS); any other URL an RDB
    storage with heartbeats, so a trial whose process died on another machine is failed and its config retried
    (recovery.py fails those of this machine at once, and those killed before their first heartbeat)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            if url.startswith(JOURNAL):
                from optuna.storages.journal import JournalFileBackend

                path = Path(url[len(JOURNAL):])
                if not path.parent.is_dir():
                    raise StudyError(f"cannot open storage {url}: folder {path.parent} does not exist")
                return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
            kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=5, grace_period=20,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
        except StudyError:
            raise
        except Exception as exc:  # SQLAlchemy and drivers raise many types for a bad or unreachable URL
            raise StudyError(f"cannot open storage {url}: {str(exc).splitlines()[0]}") from exc


def open_study(settings: SearchSettings, storage_url: str, study_name: str, space_digest: str,
               seed: int | None = None) -> optuna.Study:
    """Creates the study or reopens it; a stored study with other settings or another search space is
    refused, never overwritten."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name, storage=make_storage(storage_url), direction="maximize",
        sampler=make_sampler(settings.sampler, settings.seed if seed is None else seed), pruner=make_pruner(),
        load_if_exists=True,
    )
    stored = study.user_attrs.get("settings")
    mine = {**settings.defining(), "space_digest": space_digest, "search_space": SEARCH_SPACE}
    if stored is None:
        study.set_user_attr("settings", mine)
    else:
        check_settings(study, storage_url, mine)
    return study


def check_settings(study: optuna.Study, storage_url: str, mine: dict) -> None:
    """Refuses to go on with settings or a search space other than those the study was run with."""
    # A study stored before a setting existed was run with that setting's default (and no space digest); one stored
    # before the seed was kept does not say its seed, so the one given is taken.
    stored = as_stored({"space_digest": mine["space_digest"], "seed": mine["seed"], **study.user_attrs["settings"]})
    changed = [k for k in mine if stored.get(k) != mine[k]]
    if changed:
        k = "search_space" if "search_space" in changed else changed[0]  # the reason the others differ too
        what = {"space_digest": "another search space (its groups or choices differ: was the space file edited?)",
                "search_space": "an earlier release's search over the knapsack's knobs, which this one does not resume"
                }.get(k, f"{k}={stored.get(k)!r}, not {mine[k]!r}")
        raise StudyError(f"study '{study.study_name}' in {storage_url} was run with {what}: use another --out or "
                         "--study to start a new search")


def stored_settings(study: optuna.Study) -> SearchSettings:
    """The settings a study was run with (an export rebuilds its context from them)."""
    stored = as_stored(study.user_attrs["settings"])
    for key in ("space_digest", "search_space"):
        stored.pop(key, None)
    return SearchSettings(**stored)


def reopen(out: str | Path, storage: str | None = None, study_name: str = STUDY_NAME,
           loaded: LoadedModel | None = None, data: TaskData | None = None
           ) -> tuple[optuna.Study, dict[str, SearchContext]]:
    """A stored study and its lanes (contexts by precision) rebuilt from its settings (for an export); refused when
    the study searched an object that is not passed again, or when the spaces are not the ones it searched."""
    url = storage or f"sqlite:///{Path(out) / 'study.db'}"
    if storage is None and not (Path(out) / "study.db").is_file():
        raise StudyError(f"no study in {out} (study.db missing): run `autoprune search --out {out}` first")
    try:
        study = optuna.load_study(study_name=study_name, storage=make_storage(url))
    except KeyError as exc:
        raise StudyError(f"no study named '{study_name}' in {url}") from exc
    settings = stored_settings(study)
    if settings.model.startswith("module:") and loaded is None:
        raise StudyError(f"this study searched a {settings.model[7:]} object: export it from Python with "
                         "autoprune.export(out, model=..., train_data=..., evaluate=...)")
    if loaded is not None and loaded.weights != settings.weights:
        raise StudyError(f"the model passed has other weights than the one this study searched ({settings.weights})")
    lanes = build_contexts(settings, loaded, data)
    check_settings(study, storage or str(out), {**settings.defining(), "space_digest": lanes_digest(lanes)})
    return study, lanes


# A trial fails (rather than stops the search) on the errors a candidate may raise; this many in a row say that
# every candidate does, and the search ends there instead of asking for trials that never finish.
FAILED_IN_A_ROW = 5


class FailureStreak:
    """A study callback that ends the search with one line when FAILED_IN_A_ROW trials in a row failed."""

    def __init__(self, limit: int = FAILED_IN_A_ROW):
        self.limit, self.failed = limit, 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.failed = self.failed + 1 if trial.state == TrialState.FAIL else 0
        if self.failed >= self.limit:
            raise StudyError(f"the last {self.failed} trials failed, the last with "
                             f"{trial.user_attrs.get('error', 'no error recorded')}: the finished trials are kept; fix "
                             "that and run the search again to resume")


def queue_starting_trials(study: optuna.Study, lanes: dict[str, SearchContext]) -> None:
    """Each lane's rules at its target, as trials the sampler has not proposed (allocation/rules.py), the lanes taking
    turns: a search of few trials starts from each precision's best guess, not from one precision's every rule."""
    queues = []
    for name, ctx in lanes.items():
        lane = {DTYPE: name} if len(lanes) > 1 else {}
        queues.append([({**ctx.widths.params(config), **lane}, rule) for rule, config in
                       starting_configs(ctx.widths, ctx.predictor, ctx.saliency, ctx.target_ms).items()])
    for turn in itertools.zip_longest(*queues):
        for params, rule in filter(None, turn):
            study.enqueue_trial(params, user_attrs={RULE: rule}, skip_if_exists=True)


def run_trials(lanes: dict[str, SearchContext], storage_url: str, study_name: str, index: int, progress: bool,
               shared: bool) -> optuna.Study:
    settings = next(iter(lanes.values())).settings
    study = open_study(settings, storage_url, study_name, lanes_digest(lanes), sampler_seed(settings.seed, index, shared))
    register(study)
    try:
        # Only a study killed while it queued its starting points lacks some of them: queue those it lacks.
        if index == 0 and all(is_start(t) for t in study.trials):
            queue_starting_trials(study, lanes)
        # A stopped (pruned) trial counts: `trials` is how many candidates are looked at.
        callbacks = [optuna.study.MaxTrialsCallback(settings.trials, states=FINISHED), FailureStreak(),
                     lambda s, t: recover_dead_trials(s)]  # a process sharing the study may have died meanwhile
        bar = None
        if progress:
            bar = tqdm(total=settings.trials, initial=min(len(completed(study, FINISHED)), settings.trials),
                       desc="search", unit="trial")
            percent = next(iter(lanes.values())).data.percent
            callbacks.append(lambda s, t: _update_bar(bar, s, lane_targets(lanes), percent))
        try:
            if len(completed(study, FINISHED)) < settings.trials:
                clocks = {name: fit_clock(ctx) for name, ctx in lanes.items()}
                study.optimize(Objective(lanes, clocks), callbacks=callbacks, catch=(RuntimeError, ValueError))
        finally:
            if bar is not None:
                bar.close()
    finally:
        unregister(study)
    return study


def _update_bar(bar: tqdm, study: optuna.Study, within: dict[str, float], percent: bool = True) -> None:
    feasible = [t.user_attrs["proxy_accuracy"] for t in completed(study) if trial_ms(t) <= within[lane_of(t, within)]]
    bar.n = min(len(completed(study, FINISHED)), bar.total)
    best = (f"{100 * max(feasible):.1f}%" if percent else f"{max(feasible):.4g}") if feasible else None
    bar.set_postfix_str(f"best under budget {best}" if best else "no feasible trial yet")
    bar.refresh()


def run_search(settings: SearchSettings, out: str | Path, storage: str | None = None, study_name: str = STUDY_NAME,
               workers: int = 1, lanes: dict[str, SearchContext] | None = None) -> SearchResult:
    """Runs (or resumes) the study until `settings.trials` trials are finished (scored or stopped early),
    then writes the front. `lanes` are contexts already built (from objects the caller passed)."""
    from .outputs import write_outputs

    if workers > 1 and lanes is not None:
        raise AutopruneError("workers > 1 rebuild the model from its spec: pass a model spec, not an object")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    storage_url = storage or f"sqlite:///{out / 'study.db'}"
    lanes = lanes or build_contexts(settings)
    study = open_study(settings, storage_url, study_name, lanes_digest(lanes))
    retried = recover_dead_trials(study)
    if retried:
        print(f"retrying trials {retried} of a run that was killed", flush=True)
    for ctx in lanes.values():
        if ctx.budget_ms >= ctx.unpruned_ms:
            print(f"budget {ctx.budget_ms:.3f} ms is above the unpruned {ctx.dtype} model's {ctx.unpruned_ms:.3f} ms: "
                  f"the unpruned {ctx.dtype} model is a starting trial", flush=True)
    shared = storage is not None
    if workers <= 1:
        run_trials(lanes, storage_url, study_name, 0, progress=True, shared=shared)
    else:
        _run_workers(settings, storage_url, study_name, workers, study, lane_targets(lanes), shared)
    return write_outputs(lanes, study, out)


def _worker(settings: SearchSettings, storage_url: str, study_name: str, index: int, shared: bool) -> None:
    try:
        run_trials(build_contexts(settings), storage_url, study_name, index, progress=False, shared=shared)
    except AutopruneError as exc:  # one line, as the command's own errors, instead of the process's traceback
        print(f"autoprune search worker {index}: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def _run_workers(settings, storage_url, study_name, workers, study, within, shared) -> None:
    spawn = multiprocessing.get_context("spawn")
    procs = [spawn.Process(target=_worker, args=(settings, storage_url, study_name, i, shared)) for i in range(workers)]
    for p in procs:
        p.start()
    with tqdm(total=settings.trials, desc=f"search ({workers} workers)", unit="trial") as bar:
        while any(p.is_alive() for p in procs):
            _update_bar(bar, study, within)
            time.sleep(1.0)
        _update_bar(bar, study, within)
    failed = [p.exitcode for p in procs if p.exitcode]
    if failed:
        raise AutopruneError(f"{len(failed)} of {workers} search workers failed (exit codes {failed})")
