"""The objective on a stand-in context: what it keeps between trials (study/objective.py)."""
from types import SimpleNamespace

import optuna
import torch
import torch.nn as nn

from autoprune.study.objective import MODELS_KEPT, Objective


def test_the_objective_keeps_every_configs_scores_but_only_the_last_pruned_models():
    pruned, scored = [], []

    def prune(config):
        pruned.append(config["g"])
        return nn.Conv2d(3, config["g"], 1), {}

    def evaluate(model, data, teacher):
        scored.append(model.out_channels)
        return SimpleNamespace(accuracy=model.out_channels / 16, seconds=0.1)

    ctx = SimpleNamespace(
        widths=SimpleNamespace(suggest=lambda trial: {"g": trial.suggest_int("g", 1, 4)},
                               repair=lambda config, predictor, saliency, target_ms: config), saliency=None,
        prune=prune, predictor=SimpleNamespace(predict=lambda config: float(config["g"])), target_ms=100.0,
        loaded=SimpleNamespace(example_input=lambda: torch.randn(1, 3, 4, 4)),
        ladder=[SimpleNamespace(name="stand-in", evaluate=evaluate)], data=None, teacher=None)
    objective = Objective({"float32": ctx})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    widths = [1, 2, 3, 4, 1, 2, 4, 4]  # configs met again after others, and one met twice in a row
    for g in widths:
        study.enqueue_trial({"g": g})
    study.optimize(objective, n_trials=len(widths))

    assert [t.value for t in study.trials] == [g / 16 for g in widths]
    assert scored == [1, 2, 3, 4]  # each config scored once: its scores are kept
    assert len(objective.seen) == 4 and all("model" not in seen for seen in objective.seen.values())
    # A config met again needs no model when its stages are all scored: each was pruned once, the last two are kept.
    assert pruned == [1, 2, 3, 4]
    assert [dict(key[1:])["g"] for key in objective.models] == [3, 4] and MODELS_KEPT == 2


class _StopsTheFirstTrial(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return trial.number == 0


def test_a_config_met_again_for_a_later_stage_is_pruned_again_once_its_model_was_let_go():
    pruned, scored = [], []

    def prune(config):
        pruned.append(config["g"])
        return nn.Conv2d(3, config["g"], 1), {}

    def stage(name):
        def evaluate(model, data, teacher):
            scored.append((name, model.out_channels))
            return SimpleNamespace(accuracy=model.out_channels / 16, seconds=0.1)
        return SimpleNamespace(name=name, evaluate=evaluate)

    ctx = SimpleNamespace(
        widths=SimpleNamespace(suggest=lambda trial: {"g": trial.suggest_int("g", 1, 4)},
                               repair=lambda config, predictor, saliency, target_ms: config), saliency=None,
        prune=prune, predictor=SimpleNamespace(predict=lambda config: float(config["g"])), target_ms=100.0,
        loaded=SimpleNamespace(example_input=lambda: torch.randn(1, 3, 4, 4)),
        ladder=[stage("cheap"), stage("full")], data=None, teacher=None)
    objective = Objective({"float32": ctx})
    study = optuna.create_study(direction="maximize", pruner=_StopsTheFirstTrial())
    widths = [1, 2, 3, 1]  # 1 stopped after the cheap stage, then let go for 2 and 3, then met again
    for g in widths:
        study.enqueue_trial({"g": g})
    study.optimize(objective, n_trials=len(widths))

    assert study.trials[0].state == optuna.trial.TrialState.PRUNED and study.trials[3].value == 1 / 16
    assert pruned == [1, 2, 3, 1]
    assert scored == [("cheap", 1), ("cheap", 2), ("full", 2), ("cheap", 3), ("full", 3), ("full", 1)]


def test_with_two_lanes_the_trial_proposes_its_precision_and_each_lane_prunes_and_scores_its_own():
    calls = []

    def lane(name, bonus):
        def prune(config):
            calls.append((name, config["g"]))
            return nn.Conv2d(3, config["g"], 1), {}

        def evaluate(model, data, teacher):
            return SimpleNamespace(accuracy=model.out_channels / 16 + bonus, seconds=0.1)

        return SimpleNamespace(
            widths=SimpleNamespace(suggest=lambda trial: {"g": trial.suggest_int("g", 1, 4)},
                                   repair=lambda config, predictor, saliency, target_ms: config), saliency=None,
            prune=prune, predictor=SimpleNamespace(predict=lambda config: float(config["g"])), target_ms=100.0,
            loaded=SimpleNamespace(example_input=lambda: torch.randn(1, 3, 4, 4)),
            ladder=[SimpleNamespace(name="stand-in", evaluate=evaluate)], data=None, teacher=None)

    objective = Objective({"float32": lane("float32", 0.0), "int8": lane("int8", 0.5)})
    study = optuna.create_study(direction="maximize")
    proposed = [("float32", 2), ("int8", 2), ("int8", 2), ("float32", 3)]
    for dtype, g in proposed:
        study.enqueue_trial({"dtype": dtype, "g": g})
    study.optimize(objective, n_trials=len(proposed))

    assert [(t.params["dtype"], t.user_attrs["dtype"]) for t in study.trials] == [(d, d) for d, _ in proposed]
    assert [t.value for t in study.trials] == [2 / 16, 2 / 16 + 0.5, 2 / 16 + 0.5, 3 / 16]
    assert calls == [("float32", 2), ("int8", 2), ("float32", 3)]  # one config, two lanes: pruned in each, once
