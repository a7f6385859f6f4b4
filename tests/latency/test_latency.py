"""Latency tables: layout, table file, predictor, validation, kit and CLI, on small models with few repeats.

No test asserts a timing: measured numbers only have to exist, be finite and flow through correctly.
"""
import json
import math
import random
import re
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest
import scipy.stats
import torch

from autoprune.assets import shipped_table_for
from autoprune.cli import main
from autoprune.errors import AutopruneError
from autoprune.latency import LatencyPredictor, LatencyTable, measure_model_ms
from autoprune.latency import backends, runner
from autoprune.latency.layout import build_layout, channels, config_signatures, model_key
from autoprune.latency.profile import profile
from autoprune.latency.signature import Signature
from autoprune.precision import precision
from autoprune.latency.validate import validate
from autoprune.models.specs import load_model
from autoprune.pruning.prune import prune
from autoprune.pruning.space import build_space

FAST = {"warmup": 1, "repeats": 3, "rounds": 2, "per_round": 1}


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    loaded = load_model("cifar:resnet20")
    return loaded, build_space(loaded)


@pytest.fixture(scope="module")
def table_path(small, tmp_path_factory):
    loaded, space = small
    out = tmp_path_factory.mktemp("tables") / "r20.json"
    profile(loaded, space, "ort-cpu", out, calibration=8, settings=FAST)
    return out


def _conv_channels(model, x):
    seen = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, (i[0].shape[1], o.shape[1])))
             for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("spec", ["cifar:resnet20", "torchvision:mobilenet_v2", "torchvision:densenet121"])
def test_layout_channels_match_pruned_model(spec):
    loaded = load_model(spec, input_shape=None if spec.startswith("cifar") else "3x32x32")
    space = build_space(loaded)
    layers = build_layout(loaded, space)
    rng = random.Random(1)
    for _ in range(2):
        config = space.complete(space.random_config(rng))
        real = _conv_channels(prune(loaded.model, space, config), loaded.example_input())
        for layer in layers:
            if layer["name"] in real:
                assert real[layer["name"]] == (channels(layer["in"], config), channels(layer["out"], config)), layer["name"]


def test_signatures_round_trip_through_their_one_format(table_path):
    table = LatencyTable.load(table_path)
    mobilenet = json.loads(shipped_table_for("torchvision:mobilenet_v2").read_text())
    for key in [*table.entries, *mobilenet["entries"]]:
        assert str(Signature.parse(key)) == key
    layers = next(iter(table.models.values()))["layers"]
    conv = next(layer for layer in layers if layer["op"] == "conv")
    built = Signature.of(conv, 12, 34)
    assert (built.op, built.cin, built.cout) == ("conv", 12, 34) and not built.depthwise
    assert Signature.parse(str(built)) == built
    # What the runner's calibration sorts on: mobilenet's depthwise kernels pass their channels through.
    depthwise = [Signature.parse(k) for k in mobilenet["entries"] if Signature.parse(k).depthwise]
    assert depthwise and all(s.cin == s.cout and s.scales_with_channels for s in depthwise)
    assert {runner.kernel_feature(str(s)) for s in depthwise} == {"depthwise_ms"}
    assert runner.kernel_feature(str(built)) == "dense_ms"


def test_table_round_trip(table_path, tmp_path):
    table = LatencyTable.load(table_path)
    copy = table.save(tmp_path / "copy.json")
    again = LatencyTable.load(copy)
    assert again.data == table.data
    assert table.device["threads"] == 1 and table.device["batch"] == 1 and table.device["backend"] == "ort-cpu"
    assert table.entries and all(e["ms"] > 0 for e in table.entries.values())


@pytest.mark.parametrize("damage", ["truncated", "garbage", "binary", "foreign", "bad_entry", "bad_layer",
                                    "bad_calibration", "future"])
def test_bad_table_files_are_refused(table_path, tmp_path, damage):
    text = table_path.read_text()
    data = json.loads(text)
    path = tmp_path / "bad.json"
    if damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        path.write_text("not json at all {")
    elif damage == "binary":
        path.write_bytes(b"\x80\x04\x95pickle\xff\xfe")
    elif damage == "foreign":
        path.write_text(json.dumps({"name": "something else", "entries": {}}))
    elif damage == "bad_entry":
        next(iter(data["entries"].values()))["ms"] = "fast"
        path.write_text(json.dumps(data))
    elif damage == "bad_layer":
        next(iter(data["models"].values()))["layers"][0]["in"]["groups"] = {"no.such.group": 1}
        path.write_text(json.dumps(data))
    elif damage == "bad_calibration":
        next(iter(data["models"].values()))["calibration"]["coef"]["const"] = "slow"
        path.write_text(json.dumps(data))
    else:
        data["version"] = 99
        path.write_text(json.dumps(data))
    with pytest.raises(AutopruneError) as err:
        LatencyTable.load(path)
    assert "\n" not in str(err.value)


def test_backend_and_batch_mismatch_refused_unless_forced(table_path):
    with pytest.raises(AutopruneError, match="backend"):
        LatencyTable.load(table_path, backend="torch-cpu")
    with pytest.raises(AutopruneError, match="batch"):
        LatencyTable.load(table_path, batch=8)
    with pytest.warns(UserWarning, match="force"):
        assert LatencyTable.load(table_path, backend="torch-cpu", batch=8, force=True).backend == "ort-cpu"


def test_predict_and_breakdown(table_path, small):
    _, space = small
    table = LatencyTable.load(table_path)
    predictor = LatencyPredictor(table, space)
    smallest = {g.name: g.choices[0] for g in space.searchable}
    # The predictor's fast path must agree with the features the runner calibrated on.
    keys, weight, acts = config_signatures(predictor.layers, space.complete(smallest))
    features = runner.config_features(table.entries, keys, weight, acts)
    assert set(features) == set(predictor.coef) == set(runner.CALIBRATION_FEATURES)  # applied by name
    expected = sum(predictor.coef[name] * value for name, value in features.items())
    assert predictor.predict(smallest) == pytest.approx(expected)
    parts = predictor.breakdown(smallest)
    assert sum(parts.values()) == pytest.approx(expected)
    assert {layer["name"] for layer in predictor.layers} <= set(parts)
    with pytest.raises(AutopruneError, match="unknown group"):
        predictor.predict({"nope": 3})


def _as_version_1(data: dict) -> dict:
    """The table as autoprune wrote it before calibrations were stored by name: a list beside "features"."""
    old = json.loads(json.dumps(data))
    old["version"] = 1
    for model in old["models"].values():
        coef = model["calibration"]["coef"]
        model["calibration"]["features"] = list(coef)
        model["calibration"]["coef"] = list(coef.values())
    return old


def test_calibration_is_stored_and_applied_by_name_and_version_1_lists_still_load(table_path, small, tmp_path):
    _, space = small
    data = json.loads(table_path.read_text())
    calibration = data["models"][model_key(space)]["calibration"]
    assert data["version"] == runner.SCHEMA_VERSION == 2 and "features" not in calibration
    assert list(calibration["coef"]) == runner.CALIBRATION_FEATURES
    configs = [{}, {g.name: g.choices[0] for g in space.searchable}, space.random_config(random.Random(2))]
    named = LatencyPredictor(LatencyTable.load(table_path), space)
    expected = [named.predict(c) for c in configs]

    old = tmp_path / "v1.json"
    old.write_text(json.dumps(_as_version_1(data)))
    assert [LatencyPredictor(LatencyTable.load(old), space).predict(c) for c in configs] == expected
    # By name, not by position: the same coefficients in another order predict the same.
    calibration["coef"] = dict(reversed(calibration["coef"].items()))
    shuffled = tmp_path / "reversed.json"
    shuffled.write_text(json.dumps(data))
    assert [LatencyPredictor(LatencyTable.load(shuffled), space).predict(c) for c in configs] == expected
    # Growing a version 1 table writes version 2 and leaves its older calibrations readable.
    grown = runner.merge_into(old, data["device"], data["settings"], {}, "other@3x32x32",
                              {"layers": [], "groups": {}, "calibration": calibration})
    assert grown["version"] == 2
    assert [LatencyPredictor(LatencyTable.load(old), space).predict(c) for c in configs] == expected
    # A table fitted before the kernels-run feature came reads as fitted without it (its coefficient 0).
    kernels = calibration["coef"].pop("kernels")
    shuffled.write_text(json.dumps(data))
    earlier = LatencyPredictor(LatencyTable.load(shuffled), space)
    assert earlier.coef["kernels"] == 0.0
    assert earlier.predict({}) == pytest.approx(expected[0] - kernels * named.features({})["kernels"])
    # A calibration missing a feature this autoprune applies is refused in one line.
    del calibration["coef"]["weight_mb"]
    shuffled.write_text(json.dumps(data))
    with pytest.raises(AutopruneError, match="profile it again") as err:
        LatencyPredictor(LatencyTable.load(shuffled), space)
    assert "\n" not in str(err.value)


def test_the_shipped_table_predicts_the_same_in_its_version_1_form():
    loaded = load_model("cifar:resnet56")
    space = build_space(loaded)
    path = shipped_table_for("cifar:resnet56")
    data = json.loads(path.read_text())
    assert data["version"] == runner.SCHEMA_VERSION and "validation" in data["models"][model_key(space)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # measured on another machine than this one
        shipped = LatencyPredictor(LatencyTable.load(path), space)
        old = LatencyPredictor(LatencyTable(_as_version_1(data), path), space)
    for config in [{}, *(space.random_config(random.Random(seed)) for seed in range(3))]:
        assert shipped.predict(config) == old.predict(config)
        assert shipped.breakdown(config) == old.breakdown(config)


def test_missing_entry_is_interpolated_or_refused_in_strict_mode(table_path, small):
    _, space = small
    table = LatencyTable.load(table_path)
    keys = config_signatures(table.model(model_key(space))["layers"], space.full_config())[0]
    missing = next(k for k in keys if k.startswith("conv:") and "add" in k)
    del table.entries[missing]
    predictor = LatencyPredictor(table, space)
    with pytest.warns(UserWarning, match="interpolated"):
        assert math.isfinite(predictor.predict({}))
        assert predictor._entry_ms(missing) > 0
    with pytest.raises(AutopruneError, match="strict"):
        LatencyPredictor(table, space, strict=True).predict({})


def test_a_profile_whose_held_out_configs_miss_by_much_warns_that_the_machine_was_disturbed(tmp_path):
    from autoprune.latency.table import UnsteadyProfileWarning, warn_if_disturbed

    # The noisiest shipped table's own figures, and an idle AMD EPYC VM whose speed moves by itself (CI's).
    for quiet in ({"mape_pct": 5.4, "within_10pct": 0.95}, {"mape_pct": 6.9, "within_10pct": 0.75}):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warn_if_disturbed(quiet, "torchvision:mobilenet_v2", tmp_path / "t.json")
    for busy in ({"mape_pct": 17.3, "within_10pct": 0.25}, {"mape_pct": 9.0, "within_10pct": 0.4}):
        with pytest.warns(UnsteadyProfileWarning, match="profile again when it is quiet") as caught:
            warn_if_disturbed(busy, "torchvision:mobilenet_v2", tmp_path / "t.json")
        assert "\n" not in str(caught[0].message) and "autoprune validate --table" in str(caught[0].message)


def test_table_for_another_model_is_refused(table_path):
    other = load_model("cifar:resnet32")
    with pytest.raises(AutopruneError, match="no layout"):
        LatencyPredictor(LatencyTable.load(table_path), build_space(other))


def test_tables_grow_and_share_entries_across_models(table_path, tmp_path):
    grown = tmp_path / "grown.json"
    grown.write_text(table_path.read_text())
    before = set(LatencyTable.load(grown).entries)
    # resnet32 runs exactly resnet20's kernels: nothing new to measure, one more model.
    deeper = load_model("cifar:resnet32")
    profile(deeper, build_space(deeper), "ort-cpu", grown, calibration=8, settings=FAST)
    assert set(LatencyTable.load(grown).entries) == before
    # At another input size every kernel is new.
    smaller = load_model("cifar:resnet20", input_shape="3x16x16")
    space = build_space(smaller)
    profile(smaller, space, "ort-cpu", grown, calibration=8, settings=FAST)
    table = LatencyTable.load(grown)
    assert before < set(table.entries) and len(table.models) == 3
    assert math.isfinite(LatencyPredictor(table, space).predict({}))


def test_validate_stores_figures(table_path, small, tmp_path):
    loaded, space = small
    table = LatencyTable.load(table_path)
    figures = validate(loaded, space, table, samples=4, rounds=2, per_round=1, plot=tmp_path / "v.png")
    for name in ("mape_pct", "worst_pct", "within_5pct", "within_10pct", "kendall_tau"):
        assert math.isfinite(figures[name])
    assert LatencyTable.load(table_path).models[model_key(space)]["validation"]["n"] == 4
    assert (tmp_path / "v.png").stat().st_size > 0


def test_measure_model_ms_in_a_fresh_process(small):
    loaded, _ = small
    ms, spread = measure_model_ms(loaded.model, loaded.example_input(), "ort-cpu", rounds=2, per_round=1)
    assert ms > 0 and spread >= 0


def test_kit_runner_writes_a_loadable_table(small, tmp_path):
    loaded, space = small
    kit = profile(loaded, space, "ort-cpu", None, calibration=8, validation=3, kit=tmp_path / "kit.zip", settings=FAST)
    with zipfile.ZipFile(kit) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "device")
    assert {"runner.py", "signature.py", "fingerprint.py", "manifest.json"} <= set(names)
    # The runner must not need torch, autoprune or tqdm: run it isolated with those imports blocked.
    blocked = ("import sys, runpy; sys.modules.update(torch=None, autoprune=None, tqdm=None); "
               "sys.argv = ['runner.py', '.', '--out', 'table.json']; runpy.run_path('runner.py', run_name='__main__')")
    done = subprocess.run([sys.executable, "-I", "-c", blocked], cwd=tmp_path / "device", capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    table = LatencyTable.load(tmp_path / "device" / "table.json", backend="ort-cpu", batch=1)
    model = table.model(model_key(space))
    assert model["validation"]["n"] == 3
    assert table.foreign() == [] and "isa" in table.device  # the device's fingerprint: here, this machine
    assert math.isfinite(LatencyPredictor(table, space).predict({}))


def test_interrupted_measurement_resumes(tmp_path):
    log = tmp_path / "measured.jsonl"
    calls = []

    def make_timed(key):
        calls.append(key)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return lambda: 1.0

    with pytest.raises(KeyboardInterrupt):
        runner.measure_entries(list("abcde"), make_timed, 0, 2, log, "test")
    calls.clear()
    done = runner.measure_entries(list("abcde"), lambda key: calls.append(key) or (lambda: 1.0), 0, 2, log, "test")
    assert calls == ["c", "d", "e"] and list(done) == list("abcde")


def test_torch_cpu_backend_profiles(small, tmp_path):
    loaded, space = small
    out = profile(loaded, space, "torch-cpu", tmp_path / "torch.json", calibration=8, settings=FAST)
    table = LatencyTable.load(out, backend="torch-cpu")
    assert math.isfinite(LatencyPredictor(table, space).predict({}))


def test_cuda_backends_need_a_gpu():
    import onnxruntime as ort

    have = {"torch-cuda": torch.cuda.is_available(), "ort-cuda": "CUDAExecutionProvider" in ort.get_available_providers()}
    for name, available in have.items():
        if available:
            assert backends.get_backend(name).cuda
        else:
            with pytest.raises(AutopruneError, match="CUDA"):
                backends.get_backend(name)


def test_backend_registry_holds_one_class_per_runtime_and_refuses_unknown_names_and_precisions_it_cannot_time():
    assert list(backends.BACKENDS) == ["ort-cpu", "torch-cpu", "ort-cuda", "torch-cuda"]
    for name, backend in backends.BACKENDS.items():
        runtime, device = name.split("-")
        assert isinstance(backend, {"ort": backends.OrtBackend, "torch": backends.TorchBackend}[runtime])
        assert isinstance(backend, backends.LatencyBackend) and backend.name == name
        assert backend.cuda == (device == "cuda") and backend.writes_onnx == (runtime == "ort")
    assert backends.get_backend("ort-cpu").version() and backends.get_backend("torch-cpu").version()
    with pytest.raises(AutopruneError, match="unknown backend 'tpu' \\(choose from ort-cpu, torch-cpu"):
        backends.get_backend("tpu")
    assert backends.get_backend("ort-cpu", precision("int8")).name == "ort-cpu"
    with pytest.raises(AutopruneError, match="float16 is supported on torch-cuda only; ort-cpu tables are float32, int8"):
        backends.get_backend("ort-cpu", precision("float16"))
    assert backends.get_backend("torch-cuda", precision("float16"), here=False).name == "torch-cuda"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here: the CUDA timing paths need one")
def test_torch_cuda_backend_profiles_and_times_with_cuda_events(small, tmp_path):
    loaded, space = small
    out = profile(loaded, space, "torch-cuda", tmp_path / "cuda.json", calibration=8, settings=FAST)
    table = LatencyTable.load(out, backend="torch-cuda")
    assert table.device["gpu"] and math.isfinite(LatencyPredictor(table, space).predict({}))
    ms, _ = measure_model_ms(loaded.model, loaded.example_input(), "torch-cuda")
    assert ms > 0


def test_kendall_tau_matches_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=20), rng.normal(size=20)
    y[3] = y[4]  # a tie
    assert runner.kendall_tau(x, y) == pytest.approx(scipy.stats.kendalltau(x, y).statistic)


@pytest.mark.parametrize("argv", [
    ["profile", "--model", "cifar:resnet20"],  # neither --out nor --kit
    ["profile", "--model", "cifar:resnet20", "--backend", "tpu", "--out", "x.json"],
    ["predict", "--model", "cifar:resnet20", "--table", "missing.json"],
    ["predict", "--model", "cifar:resnet20", "--table", "TABLE", "--config", "BADCONFIG"],
    ["predict", "--model", "cifar:resnet20", "--table", "TABLE", "--backend", "torch-cpu"],
    ["predict", "--model", "cifar:resnet20", "--table", "CORRUPT"],
    ["validate", "--model", "cifar:resnet20", "--table", "TABLE", "--samples", "1"],
    ["predict", "--model", "cifar:resnet32", "--table", "TABLE"],
])
def test_cli_bad_inputs_give_one_line_and_exit_2(argv, table_path, tmp_path, capsys):
    (tmp_path / "bad.json").write_text('{"layer1.0.conv1": "many"')
    (tmp_path / "corrupt.json").write_text(table_path.read_text()[:100])
    swap = {"TABLE": str(table_path), "BADCONFIG": str(tmp_path / "bad.json"), "CORRUPT": str(tmp_path / "corrupt.json")}
    assert main([swap.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0]


def test_cli_predict_prints_breakdown(table_path, tmp_path, capsys):
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"layer1.0.conv1": 8}))
    # --top 0 prints every layer: whether this one is among the largest parts depends on the timings.
    assert main(["predict", "--model", "cifar:resnet20", "--table", str(table_path), "--config", str(config),
                 "--top", "0"]) == 0
    out = capsys.readouterr().out
    assert "predicted" in out and "layer1.0.conv1" in out


def test_a_table_timed_by_another_runtime_release_warns_but_export_still_times_here(table_path, small, tmp_path):
    from autoprune.latency.predict import ForeignTableWarning

    loaded, space = small
    data = json.loads(table_path.read_text())
    here = data["device"]["backend_version"]
    data["device"]["backend_version"] = "1.9.0"  # the same hardware, an old onnxruntime
    older = tmp_path / "older.json"
    older.write_text(json.dumps(data))
    with pytest.warns(ForeignTableWarning, match=f"ort-cpu version: 1.9.0 -> {re.escape(here)}"):
        LatencyPredictor(LatencyTable.load(older), space)
    assert LatencyTable.load(older).foreign(software=False) == []  # export's question: is this the hardware?
    data["device"]["backend_version"] = here.rsplit(".", 1)[0] + ".999"  # a patch release changes no kernels
    older.write_text(json.dumps(data))
    assert LatencyTable.load(older).foreign() == []


def test_a_table_from_another_machine_warns_and_rescale_adapts_it_here(table_path, small, tmp_path, capsys):
    from autoprune.latency.predict import ForeignTableWarning
    from autoprune.latency.rescale import TERMS, fit_factors, rescale

    loaded, space = small
    data = json.loads(table_path.read_text())
    # A much slower machine with another CPU: every calibration coefficient ten times as large (so that this
    # machine timing slower now than when the fixture's table was profiled cannot hide the move).
    data["device"].update(cpu="Some Other CPU 9000", isa=["sse4_2"])
    calibration = data["models"][model_key(space)]["calibration"]
    calibration["coef"] = {name: 10 * c for name, c in calibration["coef"].items()}
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps(data))
    with pytest.warns(ForeignTableWarning, match="measured on another machine or runtime"):
        slow = LatencyPredictor(LatencyTable.load(foreign), space)
    rescaled, figures = rescale(loaded, space, LatencyTable.load(foreign), tmp_path / "here.json", configs=5)
    assert all(f < 0.6 for f in figures["factors"].values())
    assert figures["after"]["mape_pct"] < figures["before"]["mape_pct"]
    assert rescaled.device["rescaled_from"]["cpu"] == "Some Other CPU 9000" and rescaled.foreign() == []
    with warnings.catch_warnings():
        warnings.simplefilter("error", ForeignTableWarning)
        here = LatencyPredictor(LatencyTable.load(tmp_path / "here.json"), space)
    config = space.random_config(random.Random(1))
    factors = rescaled.model(model_key(space))["calibration"]["rescaled"]["factors"]
    assert factors == pytest.approx(figures["factors"], abs=1e-4)
    # Each part of the slow table's prediction is scaled by its own factor.
    parts = {term: sum(slow.coef[n] * slow.features(config)[n] for n in names) for term, names in TERMS.items()}
    assert here.predict(config) == pytest.approx(sum(factors[t] * parts[t] for t in TERMS))
    # Below MIN_TWO_TERMS models, or with terms=False, one factor scales every term.
    one = fit_factors(slow.coef, [slow.features(c) for c in (config, space.full_config())], [1.0, 2.0])
    assert len(set(one.values())) == 1
    # The CLI says the same in one line.
    assert main(["predict", "--model", "cifar:resnet20", "--table", str(foreign)]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "another machine or runtime" in line]
    assert len(warning) == 1 and warning[0].startswith("autoprune: warning:")
