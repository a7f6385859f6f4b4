"""The Pareto front of a study: selection, the files it is written to, and its plots."""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from .budget import parse_budget
from .errors import AutopruneError


@dataclass
class FrontMember:
    trial: int
    config: dict[str, int]
    predicted_ms: float
    proxy_accuracy: float
    macs: int
    params: int
    model_path: str | None = None
    origin: str = "sampled"  # or "start": one of the fixed starting points (allocation.starting_points)


@dataclass
class SearchResult:
    """What a search returns: the front (most accurate first), the budget, and where it all lies."""

    out: str
    budget_ms: float
    unpruned_ms: float
    front: list[FrontMember]
    trials: int
    feasible: int
    extra: dict = field(default_factory=dict)

    def select(self, budget: str | float | None = None) -> FrontMember:
        """The most accurate front member within `budget` ('25ms', '0.4x' or ms; default: the search's)."""
        if budget is None:
            limit = self.budget_ms
        elif isinstance(budget, (int, float)):
            limit = float(budget)
        else:
            limit = parse_budget(budget).to_ms(self.unpruned_ms)
        within = [m for m in self.front if m.predicted_ms <= limit]
        if not within:
            fastest = min(m.predicted_ms for m in self.front)
            raise AutopruneError(f"no front member within {limit:.3f} ms (the fastest is {fastest:.3f} ms): "
                                 "search with that budget")
        return max(within, key=lambda m: (m.proxy_accuracy, -m.predicted_ms))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def load(cls, out: str | Path) -> "SearchResult":
        path = Path(out) / "pareto.json"
        if not path.is_file():
            raise AutopruneError(f"no search results in {out} (pareto.json missing): run `autoprune search --out {out}`")
        try:
            data = json.loads(path.read_text())
            data["front"] = [FrontMember(**m) for m in data["front"]]
            return cls(**data)
        except (ValueError, TypeError, KeyError) as exc:
            raise AutopruneError(f"{path} is not a front written by autoprune: {exc}") from exc


def member(t: optuna.trial.FrozenTrial) -> FrontMember:
    a = t.user_attrs
    origin = "start" if "fixed_params" in t.system_attrs else "sampled"
    return FrontMember(t.number, a["config"], a["predicted_ms"], a["proxy_accuracy"], a["macs"], a["params"], None, origin)


def front_members(trials: list[optuna.trial.FrozenTrial], budget_ms: float) -> list[FrontMember]:
    """The trials within the budget that no other is both as accurate and faster than, one per config,
    most accurate first. `trials` are the fully scored ones: a trial stopped at a cheaper fidelity has
    a score of another kind and never enters."""
    members = sorted((member(t) for t in trials if t.user_attrs["predicted_ms"] <= budget_ms),
                     key=lambda m: (-m.proxy_accuracy, m.predicted_ms, m.trial))
    front, fastest = [], float("inf")
    for m in members:
        if m.predicted_ms < fastest:
            front.append(m)
            fastest = m.predicted_ms
    return front


def write_outputs(ctx, study: optuna.Study, out: Path) -> SearchResult:
    """pareto.json/.csv/.png/.html and the pruned (not yet fine-tuned) front models under front/."""
    from .checkpoint import save_pruned
    from .prune import prune_recorded
    from .study import completed

    done = completed(study)
    front = front_members(done, ctx.budget_ms)
    for m in front:
        model, removed = prune_recorded(ctx.loaded.model, ctx.space, m.config, ctx.settings.criterion)
        path = save_pruned(out / "front" / f"trial-{m.trial}.pt", model, ctx.loaded.spec, ctx.space, m.config, removed)
        m.model_path = str(path)
    result = SearchResult(
        str(out), ctx.budget_ms, ctx.unpruned_ms, front, len(done),
        sum(t.user_attrs["predicted_ms"] <= ctx.budget_ms for t in done),
        {"model": ctx.loaded.spec, "min_ms": ctx.min_ms, "study": study.study_name,
         "score": score_name(ctx.settings.proxy), "stopped_early": len(completed(study, (TrialState.PRUNED,)))},
    )
    (out / "pareto.json").write_text(json.dumps(result.to_dict(), indent=2))
    _write_csv(out / "pareto.csv", front)
    plot_front(out / "pareto.png", done, front, ctx.budget_ms, ctx.unpruned_ms, result.extra["score"])
    _write_html(out / "pareto.html", study, score_name(ctx.settings.proxy))
    return result


def _write_csv(path: Path, front: list[FrontMember]) -> None:
    groups = list(front[0].config) if front else []
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial", "predicted_ms", "proxy_accuracy", "macs", "params"] + groups)
        for m in front:
            writer.writerow([m.trial, f"{m.predicted_ms:.4f}", f"{m.proxy_accuracy:.4f}", m.macs, m.params]
                            + [m.config[g] for g in groups])


def plot_front(path: Path, trials, front: list[FrontMember], budget_ms: float, unpruned_ms: float,
               score: str = "proxy accuracy") -> None:
    """Left: the fully scored trials and the front against predicted latency (the unpruned model's latency
    off to the right when it is far). Right: the same scores in trial order, starting points marked, with
    the best so far: whether the sampler improved on where it started."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.3), dpi=120)
    started = [t for t in trials if "fixed_params" in t.system_attrs]
    sampled = [t for t in trials if "fixed_params" not in t.system_attrs]
    for ax, x, unit in ((left, lambda t: t.user_attrs["predicted_ms"], "predicted latency (ms)"),
                        (right, lambda t: t.number, "trial")):
        ax.scatter([x(t) for t in sampled], [100 * t.user_attrs["proxy_accuracy"] for t in sampled], s=14,
                   color="#9aa5b1", label=f"sampled ({len(sampled)})")
        ax.scatter([x(t) for t in started], [100 * t.user_attrs["proxy_accuracy"] for t in started], s=60,
                   marker="*", color="#edae49", label=f"starting points ({len(started)})", zorder=3)
        ax.set_xlabel(unit)
        ax.set_ylabel(f"{score} (%)")
        ax.grid(alpha=0.3)
    line = sorted(front, key=lambda m: m.predicted_ms)
    left.plot([m.predicted_ms for m in line], [100 * m.proxy_accuracy for m in line], "o-", color="#d1495b",
              label=f"Pareto front ({len(front)})")
    left.axvline(budget_ms, color="#00798c", linestyle="--", label=f"budget {budget_ms:.3g} ms")
    if trials and unpruned_ms < 1.5 * budget_ms:
        left.axvline(unpruned_ms, color="#555555", linestyle=":", label=f"unpruned {unpruned_ms:.3g} ms")
    ordered = sorted(trials, key=lambda t: t.number)
    best, so_far = [], float("-inf")
    for t in ordered:
        so_far = max(so_far, t.user_attrs["proxy_accuracy"])
        best.append(100 * so_far)
    right.step([t.number for t in ordered], best, where="post", color="#d1495b", label="best so far")
    for ax in (left, right):
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def score_name(proxy: str) -> str:
    """What the front's accuracy column is: top-1 on proxy-val after the ladder's last stage."""
    return f"proxy-val top-1 after {proxy.split('>')[-1]}"


def _write_html(path: Path, study: optuna.Study, score: str) -> None:
    from optuna.visualization import plot_pareto_front

    figure = plot_pareto_front(study, target_names=[score, "predicted latency (ms)"],
                               targets=lambda t: (t.value, t.user_attrs["predicted_ms"]))
    figure.write_html(str(path), include_plotlyjs=True)


def format_front(result: SearchResult) -> str:
    from .report import table

    rows = [[str(m.trial), m.origin, f"{m.predicted_ms:.3f}", f"{100 * m.proxy_accuracy:.2f}%",
             f"{m.macs / 1e6:.1f}M", f"{m.params / 1e3:.0f}K"] for m in result.front]
    stopped = result.extra.get("stopped_early", 0)
    head = (f"{result.extra.get('model', '')}  budget {result.budget_ms:.3f} ms  unpruned {result.unpruned_ms:.3f} ms  "
            f"{result.trials} trials scored in full ({result.feasible} within budget), {stopped} stopped early\n"
            f"score: {result.extra.get('score', 'proxy accuracy')}")
    return head + "\n" + table(["trial", "from", "predicted ms", "score", "MACs", "params"], rows)
