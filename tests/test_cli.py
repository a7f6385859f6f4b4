import subprocess
import sys

import pytest
import yaml

from autoprune.cli import main


def test_inspect_default_prints_the_space_and_saves_it(tmp_path, capsys):
    out = tmp_path / "space.yaml"
    assert main(["inspect", "--save", str(out), "--verify"]) == 0
    text = capsys.readouterr().out
    assert "cifar:resnet56" in text and "layer3.8.conv1" in text and "MACs 126.55M" in text
    assert "removes exactly the chosen channels" in text
    assert yaml.safe_load(out.read_text())["model"] == "cifar:resnet56"
    assert main(["inspect", "--space", str(out)]) == 0


def _exit_code(args) -> int:
    try:
        return main(args)
    except SystemExit as exc:  # argparse's own errors leave through sys.exit
        return exc.code


def _fails_with_one_line(args, capsys, message):
    assert _exit_code(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize(
    "args, message",
    [
        (["inspect", "--model", "torchvision:resnet1000"], "unknown torchvision classification model"),
        (["inspect", "--model", "cifar:resnet56", "--weights", "nowhere.pt"], "weights file not found"),
        (["inspect", "--model", "torchvision:shufflenet_v2_x0_5", "--input-shape", "64"], "channel shuffle"),
        (["inspect", "--freeze", "layer7.*"], "matches no group"),
        (["inspect", "--min-keep", "0"], "--min-keep"),
        (["search", "--budget", "1ms", "--model", "torchvision:resnet18"], "--weights is required"),
        (["export"], "--out is required"),
        (["search", "--budget", "0.5x", "--proxy", "adaptive-bn>tune:3"], "unknown proxy 'tune:3'"),
        (["pareto", "--out", "no/such/run"], "no search results in no/such/run"),
        (["search", "--budget", "-1ms"], "goes after '='"),
        (["search"], "required: --budget"),
        (["prune"], "invalid choice: 'prune'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    _fails_with_one_line(args, capsys, message)


def test_space_of_another_model_or_malformed(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups: [")
    _fails_with_one_line(["inspect", "--space", str(bad)], capsys, "malformed YAML")
    other = tmp_path / "r20.yaml"
    assert main(["inspect", "--model", "cifar:resnet20", "--save", str(other)]) == 0
    capsys.readouterr()
    _fails_with_one_line(["inspect", "--space", str(other)], capsys, "is for cifar:resnet20")


def test_module_entry_point_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "autoprune.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("inspect", "profile", "predict", "validate", "knapsack", "search", "pareto", "export"):
        assert command in out.stdout


def test_profile_takes_its_defaults_from_the_one_place_that_holds_them(monkeypatch, capsys):
    from autoprune import api, cli, defaults

    # Other values than the shipped ones: a default spelled out anywhere but defaults.py shows here.
    monkeypatch.setattr(defaults, "BACKEND", "torch-cpu")
    monkeypatch.setattr(defaults, "THREADS", 3)
    monkeypatch.setattr(defaults, "BATCH", 2)
    monkeypatch.setattr(defaults, "DTYPE", "int8")
    passed = {}
    monkeypatch.setattr(api, "profile", lambda model, out, **kwargs: passed.update(kwargs) or "kit.zip")
    assert main(["profile", "--kit", "kit.zip"]) == 0
    assert {k: passed[k] for k in ("backend", "threads", "batch", "dtype")} == {
        "backend": "torch-cpu", "threads": 3, "batch": 2, "dtype": "int8"}
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["profile", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "(default torch-cpu)" in shown and "(default 3)" in shown and "(default 2)" in shown
    assert "int8 (default)" in shown and "float32 (default)" not in shown
