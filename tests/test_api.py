"""The Python API on the user's own objects: an nn.Module, a DataLoader, a metric; and what it refuses."""
import signal
import sys
from pathlib import Path

import optuna
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

import autoprune
from autoprune.study.execution import FAILED_IN_A_ROW
from autoprune.study.result import trial_ms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import own_model_and_data as example  # noqa: E402


def searched_ms(run: Path, trial: int) -> float:
    """The latency the search judged a trial by: fitted to this machine's clock where its table is this machine's
    (then its prediction may lie over the budget), else predicted."""
    study = optuna.load_study(study_name="autoprune", storage=f"sqlite:///{run / 'study.db'}")
    return trial_ms(study.trials[trial])


# Wide enough that compute, not per-call overhead, sets its latency: with 16-32 channels the narrowest config ran
# at about 65% of the whole and a noisy profile once predicted it slower than the unpruned model (a CI run refused
# the 0.8x budget); here the narrowest is a small fraction, so the budgets below stay far from that floor on any
# machine.
def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 96, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(96), nn.ReLU(),
        nn.Conv2d(96, 96, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(96), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(96, 10),
    )


@pytest.fixture(scope="module")
def loaders():
    return example.cifar_loaders(limit=512, batch_size=64)


@pytest.fixture(scope="module")
def trained(loaders):
    return example.train(tiny_cnn(), loaders[0], epochs=3)


@pytest.fixture(scope="module")
def table(trained, loaders, tmp_path_factory):
    example_batch = next(iter(loaders[1]))[0][:1]
    return autoprune.profile(trained, tmp_path_factory.mktemp("table") / "t.json", example_inputs=example_batch,
                             calibration=8)


def test_the_example_runs_on_a_module_a_dataloader_and_a_custom_metric(trained, loaders, tmp_path):
    found = example.run(trained, *loaders, tmp_path, "0.85x", trials=3, proxy="adaptive-bn:2", export_epochs=0.5,
                        calibration=8)
    report, best = found["report"], found["best"]
    assert found["unpruned"] > 0.15  # trained a little (about 0.21 here): above chance (0.1) on balanced accuracy
    assert report.trial == best.trial and searched_ms(tmp_path / "search", best.trial) <= report.budget_ms
    assert 0 <= report.test_accuracy <= 1 and report.unpruned_test_accuracy == pytest.approx(found["unpruned"])
    # The metric in the front is the user's, and the rebuilt export scores what the export reported.
    assert autoprune.pareto(tmp_path / "search").extra["score"].startswith("metric() after")
    assert found["reloaded"] == pytest.approx(report.test_accuracy)


def test_the_knapsack_takes_a_module_and_training_data(trained, loaders, table):
    example_batch = next(iter(loaders[1]))[0][:1]
    found = autoprune.knapsack(trained, "0.8x", example_inputs=example_batch, train_data=loaders[0],
                               table=str(table.path))
    predicted = autoprune.predict(trained, table.path, found.config, example_inputs=example_batch)
    assert predicted == pytest.approx(found.predicted_ms) and predicted <= found.budget_ms + 1e-9
    assert found.budget_ms == pytest.approx(0.8 * autoprune.predict(trained, table.path, example_inputs=example_batch))


@pytest.mark.parametrize("evaluate, message", [
    (lambda m: 1 / 0, "raised ZeroDivisionError"),
    (lambda m: "good", "must return a finite number"),
    (lambda m: float("nan"), "must return a finite number"),
])
def test_a_bad_metric_is_one_clear_error_and_the_study_is_kept(trained, loaders, table, tmp_path, evaluate, message):
    example_batch = next(iter(loaders[1]))[0][:1]
    with pytest.raises(autoprune.DataError, match=message):
        autoprune.search(trained, "0.85x", example_inputs=example_batch, train_data=loaders[0], evaluate=evaluate,
                         table=str(table.path), out=tmp_path, trials=2, evaluator="ladder",
                         proxy="adaptive-bn:1")
    assert (tmp_path / "study.db").stat().st_size > 0


def test_a_search_whose_every_trial_fails_ends_in_one_line_instead_of_waiting_forever(trained, loaders, table,
                                                                                      tmp_path):
    # A candidate's RuntimeError fails its trial and the search goes on; when each one fails, it used to go on asking.
    def diverged(outputs, targets):
        raise RuntimeError("the loss diverged\n(a second line the message must not carry)")

    def hung(signum, frame):
        raise TimeoutError("the search was still running after 600 s")

    example_batch = next(iter(loaders[1]))[0][:1]
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(600)
    try:
        with pytest.raises(autoprune.StudyError) as caught:
            autoprune.search(trained, "0.85x", example_inputs=example_batch, train_data=loaders[0],
                             evaluate=lambda m: 0.5, loss=diverged, table=str(table.path), out=tmp_path, trials=2,
                             evaluator="ladder", proxy="finetune:1", saliency="l1", measure=False)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert f"the last {FAILED_IN_A_ROW} trials failed, the last with RuntimeError: the loss diverged:" in message
    study = optuna.load_study(study_name="autoprune", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * FAILED_IN_A_ROW
    assert all(t.user_attrs["error"] == "RuntimeError: the loss diverged" for t in study.trials)


def test_bad_objects_are_refused_in_one_line(trained, loaders, table):
    example_batch = next(iter(loaders[1]))[0][:1]
    wrong = DataLoader(TensorDataset(torch.randn(8, 3, 16, 16), torch.zeros(8, dtype=torch.long)), batch_size=4)
    with pytest.raises(autoprune.DataError, match=r"yields inputs of shape \(4, 3, 16, 16\)"):
        autoprune.search(trained, "0.85x", example_inputs=example_batch, train_data=wrong, evaluate=lambda m: 0.5,
                         table=str(table.path))
    with pytest.raises(autoprune.UnsupportedModelError, match="must be a torch.nn.Module"):
        autoprune.search(lambda x: x, "0.85x", example_inputs=example_batch, train_data=loaders[0])
    with pytest.raises(autoprune.DataError, match="give evaluate"):
        autoprune.search(trained, "0.85x", example_inputs=example_batch, train_data=loaders[0], table=str(table.path))
    with pytest.raises(autoprune.DataError, match="must be a torch Dataset or DataLoader"):
        autoprune.search(trained, "0.85x", example_inputs=example_batch, train_data=[1, 2], evaluate=lambda m: 0.5)
    for err in (autoprune.DataError, autoprune.UnsupportedModelError, autoprune.BudgetError):
        assert issubclass(err, autoprune.AutopruneError)


def test_a_vector_model_is_refused_by_the_image_sources_and_runs_on_its_own_data(tmp_path):
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(16, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                        nn.Linear(512, 3))
    x = torch.randn(256, 16)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, drop_last=True)
    with pytest.raises(autoprune.DataError, match=r"takes input of shape \(16,\).*pass your own data"):
        autoprune.knapsack(mlp, "0.5x", input_shape=(16,), table="not-reached.json", data="cifar10-mini")
    table = autoprune.profile(mlp, tmp_path / "mlp.json", input_shape=(16,), calibration=8)
    result = autoprune.search(mlp, "0.7x", input_shape=(16,), train_data=loader, val_data=loader,
                              table=str(table.path), out=tmp_path / "run", trials=2, evaluator="ladder",
                              proxy="finetune:5")
    assert result.front and all(searched_ms(tmp_path / "run", m.trial) <= result.budget_ms for m in result.front)
