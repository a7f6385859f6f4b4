"""Precisions: the int8 export really runs integer kernels in ONNX Runtime, keeps the float model's answers, and
every command refuses a precision its backend or table does not hold, in one line."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from autoprune.cli import main
from autoprune.data.sources import load_data
from autoprune.errors import AutopruneError
from autoprune.latency.backends import get_backend
from autoprune.models.onnx_io import OnnxModule, executed_ops, ort_session, run_onnx
from autoprune.precision import precision
from autoprune.training.proxies import make_ladder, reestimate_bn
from autoprune.data.task import evaluate_top1

TINY = f"{Path(__file__).with_name('tiny_cnn.py')}:factory"


@pytest.fixture(scope="module")
def int8_resnet56(resnet56):
    data = load_data("cifar10-mini", resnet56)
    samples = [x for x, _ in data.proxy_train.batches(32, shuffle=True, seed=0)][:4]
    return data, precision("int8").onnx_bytes(resnet56.model, resnet56.example_input(), dynamic_batch=True,
                                              samples=samples)


def test_every_convolution_and_residual_add_of_the_int8_resnet56_runs_as_an_integer_kernel(resnet56, int8_resnet56):
    _, model = int8_resnet56
    ops = executed_ops(model, {"input": resnet56.example_input().numpy()})
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in resnet56.model.modules())
    assert ops.get("QLinearConv") == convs == 55 and "Conv" not in ops and "FusedConv" not in ops
    assert ops.get("QLinearAdd") == 27 and "Add" not in ops
    float_ops = executed_ops(precision("float32").onnx_bytes(resnet56.model, resnet56.example_input()),
                             {"input": resnet56.example_input().numpy()})
    assert "QLinearConv" not in float_ops


def test_the_int8_model_keeps_the_float_models_answers(resnet56, int8_resnet56):
    data, model = int8_resnet56
    float_top1 = evaluate_top1(resnet56.model, data.test)
    int8_top1 = evaluate_top1(OnnxModule(model), data.test)
    assert abs(int8_top1 - float_top1) < 0.02 and int8_top1 > 0.8
    x = next(data.test.batches(16))[0]
    got = run_onnx(ort_session(model), x)  # any batch size: the export's batch axis stays dynamic
    with torch.no_grad():
        expected = resnet56.model.eval()(x).numpy()
    assert got.shape == (16, 10) and (got.argmax(1) == expected.argmax(1)).mean() >= 0.9
    assert not np.allclose(got, expected, atol=1e-3)  # it is really quantised, not the float graph


def test_precisions_a_backend_cannot_time_are_refused_in_one_line():
    assert precision("int8").bytes_per_value == 1 and precision("float16").bytes_per_value == 2
    with pytest.raises(AutopruneError, match="unknown dtype 'int4'"):
        precision("int4")
    with pytest.raises(AutopruneError, match="dtype int8 is supported on ort-cpu only"):
        get_backend("torch-cpu", precision("int8"), here=False)
    with pytest.raises(AutopruneError, match="dtype int8 is supported on ort-cpu only"):
        get_backend("ort-cuda", precision("int8"), here=False)


def test_a_table_of_another_precision_is_refused(tmp_path, capsys):
    # The shipped table holds float32 latencies: asking int8 of it is one line, exit 2, and the table is unchanged.
    from autoprune.latency.choose import shipped_table

    before = shipped_table("cifar:resnet56").read_bytes()
    assert main(["predict", "--table", "shipped", "--dtype", "int8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if "error" in line]) == 1 and "holds float32 latencies, this asks for int8" in err[-1]
    assert main(["search", "--budget", "0.5x", "--table", "shipped", "--dtype", "int8", "--trials", "1",
                 "--out", str(tmp_path)]) == 2
    assert "holds float32 latencies" in capsys.readouterr().err
    assert shipped_table("cifar:resnet56").read_bytes() == before
    assert main(["profile", "--out", str(tmp_path / "t.json"), "--backend", "torch-cpu", "--dtype", "int8"]) == 2
    assert "dtype int8 is supported on ort-cpu only" in capsys.readouterr().err


def test_int8_tables_are_profiled_and_cached_apart_from_float_ones(tmp_path, capsys):
    from pathlib import Path

    from autoprune.latency import LatencyTable

    tiny = f"{Path(__file__).with_name('tiny_cnn.py')}:factory"
    out = tmp_path / "int8.json"
    assert main(["profile", "--model", tiny, "--dtype", "int8", "--out", str(out), "--calibration", "8",
                 "--validate", "4"]) == 0
    table = LatencyTable.load(out)
    (model,) = table.models.values()
    assert table.device["dtype"] == "int8" and model["validation"]["n"] == 4 and table.entries
    assert main(["predict", "--model", tiny, "--table", str(out), "--dtype", "int8"]) == 0
    assert main(["predict", "--model", tiny, "--table", str(out), "--dtype", "float32"]) == 2
    capsys.readouterr()
    # This machine's own tables: one per precision, never one answering for the other.
    for dtype in ("int8", "float32"):
        assert main(["predict", "--model", tiny, "--dtype", dtype]) == 0
    import autoprune
    from autoprune.latency.cache import LocalTarget, cache_path

    space = autoprune.inspect(tiny)
    for dtype in ("int8", "float32"):
        assert LatencyTable.load(cache_path(space, LocalTarget(precision=precision(dtype)))).device["dtype"] == dtype


def test_an_int8_space_keeps_the_widths_int8_runs_fastest_at_unless_told_otherwise():
    int8 = precision("int8").granularity(8, None, 0.125)
    assert int8.choices(64) == [16, 24, 32, 40, 48, 56, 64]  # 8 channels take ORT's slow int8 path
    assert int8.choices(20) == [16, 20]  # k/8 of 20, to multiples of 8, none under 16
    assert int8.choices(16) == [16] and int8.choices(8) == [8]
    assert precision("int8").granularity(8, 4, 0.125).choices(16) == [4, 8, 12, 16]  # the user's multiple wins
    assert precision("float32").granularity(8, None, 0.125).choices(20) == [5, 8, 10, 12, 15, 18, 20]
    assert precision("float32").granularity(8, None, 0.125).choices(64) == [8, 16, 24, 32, 40, 48, 56, 64]
    # Wide layers keep the float space's widths, not every multiple of 8 (resnet18's int8 profile fits).
    assert int8.choices(512) == list(range(64, 513, 64))
    assert int8.choices(200) == [48, 72, 96, 128, 152, 176, 200]


def test_an_int8_ladder_scores_the_candidate_as_ort_runs_it_quantised(resnet56, int8_resnet56):
    data, _ = int8_resnet56
    first, last = make_ladder("adaptive-bn:2>adaptive-bn:2", seed=0, precision=precision("int8"))
    assert first.precision.name == "float32" and last.precision.name == "int8"  # only the score that counts
    got = last.evaluate(resnet56.model, data).accuracy
    # By hand: the same re-estimation, then ORT's static quantisation calibrated on 8 shuffled proxy-train batches.
    model = copy.deepcopy(resnet56.model)
    reestimate_bn(model, data.proxy_train, 2, seed=0)
    samples = [x for x, _ in data.proxy_train.batches(32, shuffle=True, seed=0)][:8]
    quantised = precision("int8").onnx_bytes(model.eval(), samples[0][:1], dynamic_batch=True, samples=samples)
    assert got == evaluate_top1(OnnxModule(quantised), data.proxy_val)


def test_an_int8_search_says_its_scores_are_the_quantised_models(tmp_path):
    out = tmp_path / "run"
    assert main(["search", "--model", TINY, "--budget", "1.5x", "--dtype", "int8", "--trials", "2",
                 "--proxy", "adaptive-bn:1", "--saliency", "l1", "--out", str(out)]) == 0
    assert json.loads((out / "pareto.json").read_text())["extra"]["score"] == (
        "proxy-val top-1 after adaptive-bn:1 of the int8 model (ONNX Runtime, static quantisation)")


def test_validate_and_rescale_work_in_the_precision_their_table_holds_and_refuse_another(tmp_path, capsys,
                                                                                          monkeypatch):
    import torch.nn as nn

    from autoprune.latency import rescale as rescaling
    from autoprune.latency import validate as validation

    out = tmp_path / "int8.json"
    assert main(["profile", "--model", TINY, "--dtype", "int8", "--out", str(out), "--calibration", "8",
                 "--validate", "0"]) == 0
    timed = []

    def measure(models, example, backend, threads, *timing, precision=None):
        widths = [[m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] for model in models]
        timed.append(((precision or timing[-1]).name, widths))
        # What the figures hold is not this test's question, only what is timed.
        return [(1.0 + sum(w) / 100, 0.0) for w in widths]

    monkeypatch.setattr(validation, "measure_models_ms", measure)
    monkeypatch.setattr(rescaling, "measure_models_ms", measure)
    capsys.readouterr()
    # No --dtype: the table's int8, in the int8 space's widths (multiples of 8, none under 16) it was profiled at.
    assert main(["validate", "--model", TINY, "--table", str(out), "--samples", "6"]) == 0
    ((dtype, widths),) = timed
    assert dtype == "int8" and all(w % 8 == 0 and w >= 16 for model in widths for w in model)
    assert "in int8" in capsys.readouterr().out
    (stored,) = [m["validation"] for m in json.loads(out.read_text())["models"].values()]
    assert stored["dtype"] == "int8" and stored["n"] == 6
    # An explicit other precision: one line, nothing timed, nothing stored.
    before = out.read_bytes()
    assert main(["validate", "--model", TINY, "--table", str(out), "--samples", "6", "--dtype", "float32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds int8 latencies, this asks for float32" in err[0]
    assert len(timed) == 1 and out.read_bytes() == before
    # rescale draws its configs from the table's space alike.
    assert main(["rescale", "--model", TINY, "--table", str(out), "--out", str(tmp_path / "here.json"), "--configs",
                 "4", "--one-factor"]) == 0
    dtype, widths = timed[-1]
    assert len(timed) == 2 and dtype == "int8" and all(w % 8 == 0 and w >= 16 for model in widths for w in model)
