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
DTYPE = "dtype"  # the param and user attribute naming the precision a trial's model is deployed in (precision.py)


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
    measured_share: float | None = None  # of the unpruned model in its precision, timed in the same process
    dtype: str = "float32"  # the precision it is deployed (and was scored and timed) in
    # Its precision's unpruned model at its table's level, what measured_share is a share of (None in a front
    # written before precisions shared a front: the result's unpruned_ms)
    unpruned_ms: float | None = None

    def latency_ms(self, unpruned_ms: float) -> float:
        """The best estimate of its latency at its table's level: its measured share of its precision's unpruned
        model where it was timed, else the prediction. `unpruned_ms` stands in where the member does not say."""
        if self.measured_share is None:
            return self.predicted_ms
        return self.measured_share * (self.unpruned_ms if self.unpruned_ms is not None else unpruned_ms)


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
        lanes = self.extra.get("lanes", {})
        if budget is None:
            limit = self.budget_ms

            def predicted_limit(m: FrontMember) -> float:  # its own precision's target
                return lanes.get(m.dtype, {}).get("target_ms", self.extra.get("target_ms", self.budget_ms))
        else:
            limit = float(budget) if isinstance(budget, (int, float)) else parse_budget(budget).to_ms(self.unpruned_ms)

            def predicted_limit(m: FrontMember) -> float:
                return limit

        def fits(m: FrontMember) -> bool:
            return (m.predicted_ms <= predicted_limit(m) if m.measured_share is None
                    else measured_within(self.latency(m), limit))

        within = [m for m in self.front if fits(m)]
        if not within:
            fastest = min(self.latency(m) for m in self.front)
            measured = [self.latency(m) / m.predicted_ms for m in self.front if m.measured_share is not None]
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


def member(t: optuna.trial.FrozenTrial, dtype: str) -> FrontMember:
    a = t.user_attrs
    return FrontMember(t.number, a["config"], a["predicted_ms"], a["proxy_accuracy"], a["macs"], a["params"], None,
                       a.get(RULE, "sampled"), dtype=dtype)


def lane_of(t: optuna.trial.FrozenTrial, lanes) -> str:
    """The precision (a key of `lanes`) a trial searched in: a trial of a study stored before precisions shared a
    front does not say, and searched in its only one."""
    return t.user_attrs.get(DTYPE, next(iter(lanes)))


def trial_ms(t: optuna.trial.FrozenTrial) -> float:
    """The latency the search judged a trial by: fitted to this machine's clock, its measured share of the unpruned
    model at the table's level (study/timing.py); else its prediction."""
    return t.user_attrs.get("latency_ms", t.user_attrs["predicted_ms"])


def front_members(trials: list[optuna.trial.FrozenTrial], targets: dict[str, float]) -> list[FrontMember]:
    """The trials within their precision's target (`targets`, by precision) that no other, of any precision, is both
    as accurate and faster than, one per config, most accurate first. `trials` are the fully scored ones: a trial
    stopped at a cheaper fidelity has a score of another kind and never enters."""
    ranked = sorted(((trial_ms(t), member(t, lane_of(t, targets))) for t in trials
                     if trial_ms(t) <= targets[lane_of(t, targets)]),
                    key=lambda pair: (-pair[1].proxy_accuracy, pair[0], pair[1].trial))
    front, fastest = [], float("inf")
    for ms, m in ranked:
        if ms < fastest:
            front.append(m)
            fastest = ms
    return front


def score_name(stage: str, metric: str = "proxy-val top-1", deployed: tuple[str, ...] = ("float32",)) -> str:
    """What the front's accuracy column is: the data's metric after the evaluator's last stage, of each model in
    the precision it is deployed in (`deployed`: the front's precisions; each member says its own)."""
    after = "of the supernet's slice" if stage == "supernet" else f"after {stage}"
    how = "ONNX Runtime, static quantisation"
    if len(deployed) > 1:
        return f"{metric} {after} of each member in its precision" + (f" (int8: {how})" if "int8" in deployed else "")
    return f"{metric} {after}" + (f" of the int8 model ({how})" if deployed == ("int8",) else "")
