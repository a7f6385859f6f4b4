"""The Optuna study: sample the allocation's knobs, solve the knapsack at the budget, score, keep every trial.

The study is single-objective (the proxy score, maximised) so that Optuna's successive-halving pruner can
stop a candidate after a cheap fidelity; the predicted latency of every trial is stored beside it, and the
Pareto front is computed from those (front.py).
"""
from __future__ import annotations

import multiprocessing
import os
import socket
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState
from tqdm import tqdm

from .allocation import KNOB_RANGE, Allocation
from .budget import parse_budget
from .errors import AutopruneError
from .proxy import DEFAULT_PROXY
from .space import Granularity, SearchSpace

SAMPLERS = ("tpe", "nsga2")
STUDY_NAME = "autoprune"
# Successive halving between the proxy ladder's stages: a third of the candidates go on to the next one.
REDUCTION_FACTOR = 3


@dataclass
class SearchSettings:
    """Everything that defines a search, stored in the study so a resume or an export rebuilds it."""

    budget: str = "0.5x"
    model: str = "cifar:resnet56"
    weights: str | None = "shipped"
    input_shape: list[int] | None = None
    data: str = "cifar10-mini"
    table: str | None = None
    force_table: bool = False
    proxy: str = DEFAULT_PROXY
    distill: bool = False
    saliency: str = "taylor"
    criterion: str = "l1"
    sampler: str = "tpe"
    trials: int = 40
    seed: int = 0
    steps: int = 8
    multiple_of: int | None = None
    min_keep: float = 0.125
    freeze: list[str] = field(default_factory=list)
    space_file: str | None = None

    # Settings that may change between runs of one study without changing what its trials mean.
    RUN_ONLY = ("trials", "seed", "sampler")


@dataclass
class SearchContext:
    """The heavy objects a worker builds once from the settings."""

    settings: SearchSettings
    loaded: object
    space: SearchSpace
    predictor: object
    splits: object
    ladder: list
    allocation: Allocation
    teacher: object
    unpruned_ms: float
    min_ms: float
    budget_ms: float


SHIPPED_TABLES = Path(__file__).resolve().parent.parent / "latency_tables"


def default_table(model: str) -> str:
    """The first shipped table (sorted by name) that holds a layout of `model`."""
    import json

    for path in sorted(SHIPPED_TABLES.glob("*.json")):
        try:
            models = json.loads(path.read_text()).get("models", {})
        except (OSError, ValueError):
            continue
        if any(key.split("@")[0] == model for key in models):
            return str(path)
    raise AutopruneError(f"no shipped latency table holds {model}: profile one with `autoprune profile` and pass --table")


def build_context(settings: SearchSettings) -> SearchContext:
    from .data import load_data
    from .latency import LatencyPredictor, LatencyTable
    from .models import load_model
    from .proxy import make_ladder
    from .saliency import channel_saliency
    from .space import build_space

    if settings.sampler not in SAMPLERS:
        raise AutopruneError(f"unknown sampler '{settings.sampler}' (choose {' or '.join(SAMPLERS)})")
    budget = parse_budget(settings.budget)
    ladder = make_ladder(settings.proxy, settings.seed)
    loaded = load_model(settings.model, settings.weights, settings.input_shape)
    if settings.space_file:
        space = SearchSpace.load(settings.space_file)
        if space.model != loaded.spec:
            raise AutopruneError(f"search space {settings.space_file} is for {space.model}, not {loaded.spec}")
    else:
        granularity = Granularity(settings.steps, settings.multiple_of, settings.min_keep)
        space = build_space(loaded, granularity, settings.freeze)
    table = LatencyTable.load(settings.table or default_table(loaded.spec), force=settings.force_table)
    predictor = LatencyPredictor(table, space)
    unpruned_ms = predictor.predict(space.full_config())
    min_ms = predictor.predict({g.name: g.choices[0] for g in space.groups})
    budget_ms = budget.to_ms(unpruned_ms)
    if budget_ms < min_ms:
        raise AutopruneError(
            f"budget {settings.budget} ({budget_ms:.3f} ms) is below the fastest model this space can reach "
            f"({min_ms:.3f} ms predicted, unpruned {unpruned_ms:.3f} ms)"
        )
    splits = load_data(settings.data, loaded, seed=settings.seed)
    saliency = channel_saliency(loaded.model, space, splits.proxy_train, settings.saliency, seed=settings.seed)
    allocation = Allocation.for_model(loaded.model, space, predictor, saliency, budget_ms, loaded.example_input())
    teacher = loaded.model if settings.distill else None
    return SearchContext(settings, loaded, space, predictor, splits, ladder, allocation, teacher, unpruned_ms, min_ms,
                         budget_ms)


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Objective:
    """Knobs -> the knapsack's config at the budget -> the proxy ladder, reported stage by stage to the pruner."""

    def __init__(self, ctx: SearchContext):
        self.ctx = ctx
        self.seen: dict[tuple, dict] = {}  # config -> its attributes and the scores of the stages run so far

    def __call__(self, trial: optuna.Trial) -> float:
        from .metrics import count_macs, count_params
        from .prune import prune

        ctx = self.ctx
        trial.set_user_attr("worker", _worker_id())
        low, high = KNOB_RANGE
        knobs = {k: trial.suggest_float(k, low, high, log=True) for k in ctx.allocation.knobs()}
        config = ctx.allocation.config(knobs)
        key = tuple(sorted(config.items()))
        if key not in self.seen:  # neighbouring knobs often give one config: prune and measure it once
            pruned = prune(ctx.loaded.model, ctx.space, config, ctx.settings.criterion)
            self.seen[key] = {"model": pruned, "scores": [],
                              "attrs": {"config": config, "predicted_ms": ctx.predictor.predict(config),
                                        "macs": count_macs(pruned, ctx.loaded.example_input()),
                                        "params": count_params(pruned)}}
        seen = self.seen[key]
        for name, value in seen["attrs"].items():
            trial.set_user_attr(name, value)
        # Feasible when <= 0 (the knapsack keeps every candidate within the budget; stored for the record).
        trial.set_constraint("latency_over_budget_ms", seen["attrs"]["predicted_ms"] - ctx.budget_ms)
        for stage, proxy in enumerate(ctx.ladder):
            if stage == len(seen["scores"]):
                result = proxy.evaluate(seen["model"], ctx.splits, ctx.teacher)
                seen["scores"].append((result.accuracy, result.seconds))
            accuracy, seconds = seen["scores"][stage]
            trial.set_user_attr("proxy_accuracy", accuracy)
            trial.set_user_attr("proxy_seconds", sum(s for _, s in seen["scores"][: stage + 1]))
            trial.set_user_attr("fidelity", proxy.name)
            if stage + 1 < len(ctx.ladder):
                trial.report(accuracy, step=REDUCTION_FACTOR**stage)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"stopped after {proxy.name}")
        return accuracy


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=10)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=8)


def make_pruner() -> optuna.pruners.BasePruner:
    # Stage i of the proxy ladder reports at step 3**i: the rungs of successive halving with min_resource 1.
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=REDUCTION_FACTOR)


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB storage with heartbeats, so a trial whose process died is failed and its config retried."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=5, grace_period=20,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
        except Exception as exc:  # SQLAlchemy and drivers raise many types for a bad or unreachable URL
            raise AutopruneError(f"cannot open storage {url}: {str(exc).splitlines()[0]}") from exc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_dead_trials(study: optuna.Study) -> list[int]:
    """Fails the running trials of dead processes on this host now and queues their samples again.

    Heartbeats catch the same on any machine, but only after a grace period; a killed local run
    should resume at once.
    """
    host = socket.gethostname()
    retried = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker", "")
        worker_host, _, pid = worker.rpartition(":")
        if worker_host == host and pid.isdigit() and not _pid_alive(int(pid)):
            study.tell(t.number, state=TrialState.FAIL)
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
            retried.append(t.number)
    return retried


def open_study(settings: SearchSettings, storage_url: str, study_name: str) -> optuna.Study:
    """Creates the study or reopens it; a stored study with other settings is refused, never overwritten."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(storage_url)
    study = optuna.create_study(
        study_name=study_name, storage=storage, direction="maximize",
        sampler=make_sampler(settings.sampler, settings.seed), pruner=make_pruner(), load_if_exists=True,
    )
    stored = study.user_attrs.get("settings")
    mine = {k: v for k, v in asdict(settings).items() if k not in SearchSettings.RUN_ONLY}
    if stored is None:
        study.set_user_attr("settings", mine)
    else:
        changed = [k for k in mine if stored.get(k) != mine[k]]
        if changed:
            k = changed[0]
            raise AutopruneError(
                f"study '{study_name}' in {storage_url} was run with {k}={stored.get(k)!r}, not {mine[k]!r}: "
                "use another --out or --study to start a new search"
            )
    return study


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def completed(study: optuna.Study, states: tuple = (TrialState.COMPLETE,)) -> list[optuna.trial.FrozenTrial]:
    """Trials scored at the ladder's last stage (or in `states`): only they can reach the front."""
    return [t for t in study.get_trials(deepcopy=False, states=states) if "config" in t.user_attrs]


def _worker(settings: SearchSettings, storage_url: str, study_name: str, index: int) -> None:
    ctx = build_context(settings)
    run_trials(ctx, storage_url, study_name, index, progress=False)


def run_trials(ctx: SearchContext, storage_url: str, study_name: str, index: int, progress: bool) -> optuna.Study:
    settings = ctx.settings
    seeded = SearchSettings(**{**asdict(settings), "seed": settings.seed + index})
    study = open_study(seeded, storage_url, study_name)
    if index == 0 and not study.trials:
        for params in ctx.allocation.starting_points():
            study.enqueue_trial(params)
    # A stopped (pruned) trial counts: `trials` is how many candidates are looked at.
    callbacks = [optuna.study.MaxTrialsCallback(settings.trials, states=FINISHED)]
    bar = None
    if progress:
        bar = tqdm(total=settings.trials, initial=min(len(completed(study, FINISHED)), settings.trials), desc="search",
                   unit="trial")
        callbacks.append(lambda s, t: _update_bar(bar, s, ctx.budget_ms))
    if len(completed(study, FINISHED)) < settings.trials:
        study.optimize(Objective(ctx), callbacks=callbacks, catch=(RuntimeError, ValueError))
    if bar is not None:
        bar.close()
    return study


def _update_bar(bar: tqdm, study: optuna.Study, budget_ms: float) -> None:
    feasible = [t.user_attrs["proxy_accuracy"] for t in completed(study) if t.user_attrs["predicted_ms"] <= budget_ms]
    bar.n = min(len(completed(study, FINISHED)), bar.total)
    bar.set_postfix_str(f"best under budget {100 * max(feasible):.1f}%" if feasible else "no feasible trial yet")
    bar.refresh()


def run_search(settings: SearchSettings, out: str | Path, storage: str | None = None, study_name: str = STUDY_NAME,
               workers: int = 1) -> "SearchResult":
    """Runs (or resumes) the study until `settings.trials` trials are finished (scored or stopped early),
    then writes the front."""
    from .front import SearchResult, write_outputs

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    storage_url = storage or f"sqlite:///{out / 'study.db'}"
    ctx = build_context(settings)
    study = open_study(settings, storage_url, study_name)
    retried = recover_dead_trials(study)
    if retried:
        print(f"retrying trials {retried} of a run that was killed", flush=True)
    if ctx.budget_ms >= ctx.unpruned_ms:
        print(f"budget {ctx.budget_ms:.3f} ms is above the unpruned model's {ctx.unpruned_ms:.3f} ms: "
              "the unpruned model is the front's top", flush=True)
    if workers <= 1:
        run_trials(ctx, storage_url, study_name, 0, progress=True)
    else:
        _run_workers(settings, storage_url, study_name, workers, study, ctx.budget_ms)
    return write_outputs(ctx, study, out)


def _run_workers(settings, storage_url, study_name, workers, study, budget_ms) -> None:
    spawn = multiprocessing.get_context("spawn")
    procs = [spawn.Process(target=_worker, args=(settings, storage_url, study_name, i)) for i in range(workers)]
    for p in procs:
        p.start()
    with tqdm(total=settings.trials, desc=f"search ({workers} workers)", unit="trial") as bar:
        while any(p.is_alive() for p in procs):
            _update_bar(bar, study, budget_ms)
            time.sleep(1.0)
        _update_bar(bar, study, budget_ms)
    failed = [p.exitcode for p in procs if p.exitcode]
    if failed:
        raise AutopruneError(f"{len(failed)} of {workers} search workers failed (exit codes {failed})")
