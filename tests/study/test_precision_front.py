"""One front over precisions (study/context.py's lanes): without --dtype, a search on this machine's ort-cpu tables
proposes float32 and int8 candidates alike, each repaired, scored and timed in its own precision, and the front
holds both. On the small CNN of tests/tiny_cnn.py, whose int8 table profiles in seconds."""
import json
from pathlib import Path

import optuna
import pytest

from autoprune.cli import main
from autoprune.study import read_result
from autoprune.study.result import DTYPE, RULE, trial_ms

TINY = f"{Path(__file__).resolve().parent.parent / 'tiny_cnn.py'}:factory"
# A budget every model of both spaces meets on any machine: the test is of what the front holds, not of the clock.
ROOMY = "1000ms"
QUICK = ["--proxy", "adaptive-bn:1", "--saliency", "l1", "--no-measure"]


def trials_of(out: Path) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="autoprune", storage=f"sqlite:///{out / 'study.db'}")
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed")
    assert main(["search", "--model", TINY, "--budget", ROOMY, "--trials", "10", "--out", str(out), *QUICK]) == 0
    return out


def test_a_default_search_proposes_both_precisions_each_starting_from_its_unpruned_model(mixed_run):
    trials = trials_of(mixed_run)
    assert {t.user_attrs[DTYPE] for t in trials} == {"float32", "int8"}
    assert {trials[0].user_attrs[DTYPE], trials[1].user_attrs[DTYPE]} == {"float32", "int8"}  # the lanes take turns
    assert all(t.params[DTYPE] == t.user_attrs[DTYPE] for t in trials)  # the sampler's choice, as stored
    # Each precision's unpruned model meets the budget: it is a starting trial of its own, at full width.
    lanes = read_result(mixed_run).extra["lanes"]
    for dtype in ("float32", "int8"):
        (unpruned,) = [t for t in trials if t.user_attrs.get(RULE) == "unpruned" and t.user_attrs[DTYPE] == dtype]
        assert unpruned.user_attrs["predicted_ms"] == pytest.approx(lanes[dtype]["unpruned_ms"])
    # An int8 candidate keeps the int8 space's widths (multiples of 8, none under 16 where the layer allows).
    for t in trials:
        if t.user_attrs[DTYPE] == "int8":
            assert all(w % 8 == 0 for w in t.user_attrs["config"].values())


def test_the_front_over_precisions_is_ordered_by_score_and_latency_each_member_in_its_own(mixed_run):
    result = read_result(mixed_run)
    trials = {t.number: t for t in trials_of(mixed_run)}
    front = result.front
    assert front and all(m.dtype == trials[m.trial].user_attrs[DTYPE] for m in front)
    # Most accurate first, each next one faster: no member is beaten on both by another, of either precision.
    assert all(a.proxy_accuracy >= b.proxy_accuracy for a, b in zip(front, front[1:]))
    assert all(trial_ms(trials[a.trial]) > trial_ms(trials[b.trial]) for a, b in zip(front, front[1:]))
    best = max(trials.values(), key=lambda t: (t.user_attrs["proxy_accuracy"], -trial_ms(t)))
    assert front[0].trial == best.number
    for t in trials.values():  # every trial off the front is matched or beaten on both by a member
        if t.number not in {m.trial for m in front}:
            assert any(m.proxy_accuracy >= t.user_attrs["proxy_accuracy"] and trial_ms(trials[m.trial]) <= trial_ms(t)
                       for m in front)
    assert "of each member in its precision (int8: ONNX Runtime" in result.extra["score"]
    assert set(result.extra["lanes"]) == {"float32", "int8"}
    csv_rows = (mixed_run / "pareto.csv").read_text().splitlines()
    assert csv_rows[0].split(",")[1] == "dtype" and {r.split(",")[1] for r in csv_rows[1:]} <= {"float32", "int8"}


def test_the_pareto_command_labels_each_member_with_its_precision(mixed_run, capsys):
    assert main(["pareto", "--out", str(mixed_run)]) == 0
    shown = capsys.readouterr().out
    assert "unpruned float32" in shown and "int8 " in shown
    for m in read_result(mixed_run).front:
        assert f"{m.origin}, {m.dtype}" in shown


def test_an_int8_member_exports_as_the_int8_model_and_is_timed_as_one(mixed_run, capsys):
    int8 = min((t for t in trials_of(mixed_run) if t.user_attrs[DTYPE] == "int8"), key=trial_ms)  # the narrowest
    assert main(["export", "--out", str(mixed_run), "--trial", str(int8.number), "--finetune-epochs", "0"]) == 0
    report = json.loads((mixed_run / "export" / "report.json").read_text())
    assert report["dtype"] == "int8" and report["config"] == int8.user_attrs["config"]
    assert Path(report["files"]["int8"]).is_file() and report["precisions"]["int8"]["measured_ms"] > 0
    assert report["measured_ms"] == report["precisions"]["int8"]["measured_ms"]  # the int8 model is what is checked
    assert report["predicted_ms"] == pytest.approx(int8.user_attrs["predicted_ms"])


def test_dtype_float32_searches_float32_alone_as_before(tmp_path):
    out = tmp_path / "float"
    assert main(["search", "--model", TINY, "--budget", ROOMY, "--trials", "4", "--out", str(out), "--dtype",
                 "float32", *QUICK]) == 0
    trials = trials_of(out)
    assert trials and all(t.user_attrs[DTYPE] == "float32" and DTYPE not in t.params for t in trials)
    result = read_result(out)
    assert set(result.extra["lanes"]) == {"float32"} and all(m.dtype == "float32" for m in result.front)
    assert "int8" not in result.extra["score"]


def test_a_precision_the_backend_cannot_time_is_one_line(tmp_path, capsys):
    assert main(["search", "--model", TINY, "--budget", "0.9x", "--trials", "2", "--out", str(tmp_path),
                 "--dtype", "int8", "--backend", "torch-cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dtype int8 is supported on ort-cpu only" in err[0]
    assert not (tmp_path / "study.db").exists()


def test_a_lane_whose_unpruned_model_meets_the_budget_is_not_timed_trial_by_trial():
    from types import SimpleNamespace

    from autoprune.study.timing import Clock, fit_clock

    def lane(unpruned_ms, band):
        table = SimpleNamespace(foreign=lambda: [])
        return SimpleNamespace(settings=SimpleNamespace(measure=True), predictor=SimpleNamespace(table=table),
                               unpruned_ms=unpruned_ms, target_ms=1.34, band=band)

    assert fit_clock(lane(0.98, (0.97, 1.02))) is None  # int8 at half the float model: every config fits
    assert isinstance(fit_clock(lane(1.31, (0.97, 1.03))), Clock)  # within the target, not within its error
    assert isinstance(fit_clock(lane(0.98, None)), Clock)  # a table never validated: no error known
    assert isinstance(fit_clock(lane(2.68, (0.97, 1.02))), Clock)
