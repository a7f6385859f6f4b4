"""What a search returns, computed from its trials: the Pareto front and the choice within a budget."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import optuna
from optuna.trial import TrialState

from ..budget import measured_within, parse_budget
from ..errors import BudgetError
from ..pruning.space import Config

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
RULE = "rule"  # the user attribute naming the rule a starting trial is (allocation/rules.py)


@dataclass
class FrontMember:
    trial: int
    config: Config
    predicted_ms: float
    proxy_accuracy: float  # the search's score (SearchResult.extra["score"] says which)
    macs: int
    params: int
    model_path: str | None = None
    origin: str = "sampled"  # or the rule a starting trial is (allocation/rules.py: uniform, knapsack, ...)
    # Timed on this machine beside the unpruned model once the search ended (front_check.py); None when the table
    # is another machine's.
    measured_ms: float | None = None
    measured_share: float | None = None  # of the unpruned model timed in the same process

    def latency_ms(self, unpruned_ms: float) -> float:
        """The best estimate of its latency at the table's level: its measured share of the unpruned model where it
        was timed, else the prediction."""
        return self.predicted_ms if self.measured_share is None else self.measured_share * unpruned_ms


@dataclass
class SearchResult:
    """The front (most accurate first), the budget, and where it all lies. `extra` holds the model, the score's
    name, the margin and the target the candidates were fitted to, and the table's error band."""

    out: str
    budget_ms: float
    unpruned_ms: float
    front: list[FrontMember]
    trials: int
    feasible: int
    extra: dict = field(default_factory=dict)

    def select(self, budget: str | float | None = None) -> FrontMember:
        """The most accurate front member within `budget` ('25ms', '0.4x' or ms; default: the search's). A member
        timed here is judged by its measurement against the budget itself, with export's tolerance
        (budget.measured_within); one only predicted, against the target the search fitted it to (the budget less
        the margin for the table's error)."""
        if budget is None:
            limit, predicted_limit = self.budget_ms, self.extra.get("target_ms", self.budget_ms)
        else:
            limit = float(budget) if isinstance(budget, (int, float)) else parse_budget(budget).to_ms(self.unpruned_ms)
            predicted_limit = limit

        def fits(m: FrontMember) -> bool:
            return (m.predicted_ms <= predicted_limit if m.measured_share is None
                    else measured_within(self.latency(m), limit))

        within = [m for m in self.front if fits(m)]
        if not within:
            fastest = min(self.latency(m) for m in self.front)
            measured = [m.measured_share * self.unpruned_ms / m.predicted_ms for m in self.front
                        if m.measured_share is not None]
            fix = (f"every member was timed here at {min(measured):.2f}-{max(measured):.2f}x its prediction: search "
                   f"again with --margin {max(measured) - 1 + 0.02:.2f} in another --out" if measured
                   else "search with that budget")
            raise BudgetError(f"no front member within {limit:.3f} ms (the fastest is {fastest:.3f} ms): {fix}")
        return max(within, key=lambda m: (m.proxy_accuracy, -self.latency(m)))

    def latency(self, m: FrontMember) -> float:
        return m.latency_ms(self.unpruned_ms)

    def timed_over_budget(self, m: FrontMember) -> bool:
        return m.measured_share is not None and not measured_within(self.latency(m), self.budget_ms)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SearchResult":
        return cls(**{**data, "front": [FrontMember(**m) for m in data["front"]]})


def completed(study: optuna.Study, states: tuple = (TrialState.COMPLETE,)) -> list[optuna.trial.FrozenTrial]:
    """Trials scored at the ladder's last stage (or in `states`): only they can reach the front."""
    return [t for t in study.get_trials(deepcopy=False, states=states) if "config" in t.user_attrs]


def is_start(t: optuna.trial.FrozenTrial) -> bool:
    return "fixed_params" in t.system_attrs


def member(t: optuna.trial.FrozenTrial) -> FrontMember:
    a = t.user_attrs
    return FrontMember(t.number, a["config"], a["predicted_ms"], a["proxy_accuracy"], a["macs"], a["params"], None,
                       a.get(RULE, "sampled"))


def trial_ms(t: optuna.trial.FrozenTrial) -> float:
    """The latency the search judged a trial by: fitted to this machine's clock, its measured share of the unpruned
    model at the table's level (study/timing.py); else its prediction."""
    return t.user_attrs.get("latency_ms", t.user_attrs["predicted_ms"])


def front_members(trials: list[optuna.trial.FrozenTrial], budget_ms: float) -> list[FrontMember]:
    """The trials within the budget that no other is both as accurate and faster than, one per config,
    most accurate first. `trials` are the fully scored ones: a trial stopped at a cheaper fidelity has
    a score of another kind and never enters."""
    ranked = sorted(((trial_ms(t), member(t)) for t in trials if trial_ms(t) <= budget_ms),
                    key=lambda pair: (-pair[1].proxy_accuracy, pair[0], pair[1].trial))
    front, fastest = [], float("inf")
    for ms, m in ranked:
        if ms < fastest:
            front.append(m)
            fastest = ms
    return front


def score_name(stage: str, metric: str = "proxy-val top-1", deployed: str = "float32") -> str:
    """What the front's accuracy column is: the data's metric after the evaluator's last stage, of the model in the
    precision it was scored in."""
    quantised = f" of the {deployed} model (ONNX Runtime, static quantisation)" if deployed == "int8" else ""
    after = "of the supernet's slice" if stage == "supernet" else f"after {stage}"
    return f"{metric} {after}{quantised}"
