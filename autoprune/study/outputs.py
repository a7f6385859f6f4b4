"""The files a search writes (pareto.json/.csv/.png/.html, the pruned front models) and reads back."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
from optuna.trial import TrialState

from ..errors import AutopruneError
from .context import SearchContext, lane_targets
from .front_check import ROUNDS, measure_front
from .result import (FrontMember, SearchResult, completed, front_members, is_start, lane_of, score_name,
                     trial_ms)
from .timing import local_clock


def write_outputs(lanes: dict[str, SearchContext], study: optuna.Study, out: Path) -> SearchResult:
    """pareto.json/.csv/.png/.html and the pruned (not yet fine-tuned) front models under front/. The result's
    budget and unpruned model are the first lane's (float32: the model as the user has it); `extra["lanes"]` says
    each precision's own."""
    first = next(iter(lanes.values()))
    done = completed(study)
    targets = lane_targets(lanes)
    score = score_name(first.ladder[-1].name, first.data.metric, tuple(lanes))
    front = front_members(done, targets)
    measured = {}
    for name, ctx in lanes.items():
        members = [m for m in front if m.dtype == name]
        measured[name] = measure_front(ctx, local_clock(ctx, ROUNDS), members)
        for m in members:
            m.unpruned_ms = ctx.unpruned_ms
    save_front_models(lanes, front, out / "front")
    result = SearchResult(
        str(out), first.budget_ms, first.unpruned_ms, front, len(done),
        sum(trial_ms(t) <= targets[lane_of(t, targets)] for t in done),
        {"model": first.loaded.spec, "min_ms": min(ctx.min_ms for ctx in lanes.values()), "study": study.study_name,
         "score": score, "stopped_early": len(completed(study, (TrialState.PRUNED,))), "percent": first.data.percent,
         "margin": first.settings.margin, "target_ms": first.target_ms, "band": first.band,
         "table": str(first.predictor.table.path), "table_device": first.predictor.table.describe(),
         "measured": measured[first.dtype],
         "lanes": {name: {"unpruned_ms": ctx.unpruned_ms, "min_ms": ctx.min_ms, "target_ms": ctx.target_ms,
                          "band": ctx.band, "table": str(ctx.predictor.table.path), "measured": measured[name]}
                   for name, ctx in lanes.items()}},
    )
    (out / "pareto.json").write_text(json.dumps(result.to_dict(), indent=2))
    _write_csv(out / "pareto.csv", front)
    plot_front(out / "pareto.png", done, front, first.target_ms, first.unpruned_ms, score,
               100 if first.data.percent else 1)
    _write_html(out / "pareto.html", study, score, latency_label(done))
    return result


def save_front_models(lanes: dict[str, SearchContext], front: list[FrontMember], folder: Path) -> None:
    from ..pruning.pruned_files import save_pruned

    for m in front:
        ctx = lanes[m.dtype]
        model, removed = ctx.prune(m.config)
        path = save_pruned(folder / f"trial-{m.trial}.pt", model, ctx.loaded.spec, ctx.space, m.config, removed)
        m.model_path = str(path)


def read_result(out: str | Path) -> SearchResult:
    path = Path(out) / "pareto.json"
    if not path.is_file():
        raise AutopruneError(f"no search results in {out} (pareto.json missing): run `autoprune search --out {out}`")
    try:
        return SearchResult.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError) as exc:
        raise AutopruneError(f"{path} is not a front written by autoprune: {exc}") from exc


def _write_csv(path: Path, front: list[FrontMember]) -> None:
    groups = list(front[0].config) if front else []
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial", "dtype", "predicted_ms", "measured_ms", "measured_share", "proxy_accuracy", "macs",
                         "params"] + groups)
        for m in front:
            timed = ["", ""] if m.measured_ms is None else [f"{m.measured_ms:.4f}", f"{m.measured_share:.4f}"]
            writer.writerow([m.trial, m.dtype, f"{m.predicted_ms:.4f}", *timed, f"{m.proxy_accuracy:.4f}", m.macs,
                             m.params] + [m.config.get(g, "") for g in groups])


def plot_front(path: Path, trials, front: list[FrontMember], budget_ms: float, unpruned_ms: float,
               score: str = "proxy accuracy", scale: float = 100) -> None:
    """Left: the fully scored trials and the front against the latency the search judged them by (fitted to this
    machine's clock, or predicted; the unpruned model's latency off to the right when it is far). Right: the same
    scores in trial order, starting points marked, with the best so far: whether the sampler improved on where it
    started."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.3), dpi=120)
    started = [t for t in trials if is_start(t)]
    sampled = [t for t in trials if not is_start(t)]
    for ax, x, unit in ((left, trial_ms, latency_label(trials)), (right, lambda t: t.number, "trial")):
        ax.scatter([x(t) for t in sampled], [scale * t.user_attrs["proxy_accuracy"] for t in sampled], s=14,
                   color="#9aa5b1", label=f"sampled ({len(sampled)})")
        ax.scatter([x(t) for t in started], [scale * t.user_attrs["proxy_accuracy"] for t in started], s=60,
                   marker="*", color="#edae49", label=f"starting points ({len(started)})", zorder=3)
        ax.set_xlabel(unit)
        ax.set_ylabel(f"{score} (%)" if scale == 100 else score)
        ax.grid(alpha=0.3)
    by_number = {t.number: t for t in trials}
    line = sorted((trial_ms(by_number[m.trial]), m.proxy_accuracy) for m in front)
    left.plot([ms for ms, _ in line], [scale * score for _, score in line], "o-", color="#d1495b",
              label=f"Pareto front ({len(front)})")
    for dtype in sorted({m.dtype for m in front} - {"float32"}):  # a front over precisions: which members are which
        theirs = [m for m in front if m.dtype == dtype]
        left.scatter([trial_ms(by_number[m.trial]) for m in theirs], [scale * m.proxy_accuracy for m in theirs],
                     s=90, facecolors="none", edgecolors="#30638e", linewidths=1.5, zorder=4,
                     label=f"{dtype} members ({len(theirs)})")
    left.axvline(budget_ms, color="#00798c", linestyle="--", label=f"budget {budget_ms:.3g} ms")
    if trials and unpruned_ms < 1.5 * budget_ms:
        left.axvline(unpruned_ms, color="#555555", linestyle=":", label=f"unpruned {unpruned_ms:.3g} ms")
    ordered = sorted(trials, key=lambda t: t.number)
    best, so_far = [], float("-inf")
    for t in ordered:
        so_far = max(so_far, t.user_attrs["proxy_accuracy"])
        best.append(scale * so_far)
    right.step([t.number for t in ordered], best, where="post", color="#d1495b", label="best so far")
    left.legend(loc="best", fontsize=8)  # the trials crowd against the budget line at the lower right
    right.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def latency_label(trials) -> str:
    fitted = any("latency_ms" in t.user_attrs for t in trials)
    return "latency fitted to this machine's clock (ms)" if fitted else "predicted latency (ms)"


def _write_html(path: Path, study: optuna.Study, score: str, latency: str) -> None:
    from optuna.visualization import plot_pareto_front

    figure = plot_pareto_front(study, target_names=[score, latency],
                               targets=lambda t: (t.value, trial_ms(t)))
    figure.write_html(str(path), include_plotlyjs=True)
