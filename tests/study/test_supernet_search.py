"""The search scored by a supernet on the embedded default: trained once for every budget, rules as its first
trials, an export that writes the scored slice (study/evaluators.py, training/supernet.py)."""
import json

import optuna
import pytest
import torch

from autoprune.cli import main
from autoprune.pruning.pruned_files import load_pruned
from autoprune.study import read_result, reopen
from autoprune.training import supernet as sn

# A short supernet (6 steps of the shipped subset's proxy-train) and no timing: what is tested is the wiring.
QUICK = ["--evaluator", "supernet", "--supernet-epochs", "0.25", "--supernet-samples", "1", "--dtype", "float32",
         "--no-measure"]


@pytest.fixture(scope="module")
def supernet_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("supernet-run")
    assert main(["search", "--budget", "0.6x", "--trials", "6", "--out", str(out), *QUICK]) == 0
    return out


def test_a_supernet_search_scores_slices_and_starts_from_the_rules(supernet_run, fresh_table_cache):
    result = read_result(supernet_run)
    assert result.front and result.extra["score"] == "proxy-val top-1 of the supernet's slice"
    assert all(m.predicted_ms <= result.extra["target_ms"] for m in result.front)
    study = optuna.load_study(study_name="autoprune", storage=f"sqlite:///{supernet_run / 'study.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 6 and {t.user_attrs["fidelity"] for t in done} == {"supernet"}
    assert [t.user_attrs.get("rule") for t in study.trials[:2]] == ["uniform", "knapsack"]
    # A shipped, trained ResNet-56's slices at 0.6x score far above chance (10%) with no training of their own.
    assert max(t.value for t in done) > 0.5
    assert len(list((fresh_table_cache / "supernets").glob("supernet-*.pt"))) == 1


def test_a_second_budget_reuses_the_supernet(supernet_run, tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("the supernet was trained again for another budget")

    monkeypatch.setattr(sn, "train_supernet", no_training)
    assert main(["search", "--budget", "0.4x", "--trials", "3", "--out", str(tmp_path), *QUICK]) == 0
    result = read_result(tmp_path)
    assert result.front and all(m.predicted_ms <= result.extra["target_ms"] for m in result.front)


def test_an_export_without_fine_tuning_writes_the_slice_the_search_scored(supernet_run, tmp_path):
    result = read_result(supernet_run)
    chosen = result.front[0]
    code = main(["export", "--out", str(supernet_run), "--trial", str(chosen.trial), "--finetune-epochs", "0"])
    report = json.loads((supernet_run / "export" / "report.json").read_text())
    assert code == (1 if report["measured_ms"] > 1.1 * report["budget_ms"] else 0)
    exported = load_pruned(supernet_run / "export" / "model.pt")
    (ctx,) = reopen(supernet_run)[1].values()
    sliced = ctx.supernet.slice(chosen.config).state_dict()
    # The slice's weights, its batch norms re-estimated as when it was scored: the same score on proxy-val.
    weights = {k: v for k, v in exported.state_dict().items() if "running" not in k and "num_batches" not in k}
    assert all(torch.equal(v, sliced[k]) for k, v in weights.items())
    assert ctx.data.score(exported.eval()) == pytest.approx(chosen.proxy_accuracy)
    assert main(["export", "--out", str(supernet_run), "--trial", str(chosen.trial), "--finetune-epochs", "-1"]) == 2
