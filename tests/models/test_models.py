import pickle

import pytest
import torch

from autoprune.errors import AutopruneError
from autoprune.models.specs import load_model, parse_input_shape

MODEL_FILE = """
import torch.nn as nn

def tiny():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))
"""


def test_cifar_spec_loads_the_published_weights_exactly(resnet56):
    assert resnet56.input_shape == (3, 32, 32)
    assert resnet56.family == "cifar"
    assert resnet56.num_classes == 10
    shipped = torch.load(resnet56.weights, weights_only=True)
    assert torch.equal(resnet56.model.layer3[8].conv2.weight, shipped["layer3.8.conv2.weight"])


def test_torchvision_spec_uses_the_usual_input_size():
    assert load_model("torchvision:mobilenet_v2").input_shape == (3, 224, 224)
    assert load_model("torchvision:inception_v3").input_shape == (3, 299, 299)
    assert load_model("torchvision:resnet18", input_shape="3x64x64").input_shape == (3, 64, 64)


def test_user_model_from_a_file_and_from_a_module(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(MODEL_FILE)
    from_file = load_model(f"{tmp_path / 'mynets.py'}:tiny", input_shape="3x16x16")
    assert from_file.family == "custom" and from_file.num_classes == 5
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_model("mynets:tiny", input_shape="16").input_shape == (3, 16, 16)


def test_checkpoints_nested_or_prefixed_load(tmp_path, resnet56):
    state = resnet56.model.state_dict()
    nested = tmp_path / "nested.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, nested)
    loaded = load_model("cifar:resnet56", weights=nested)
    assert torch.equal(loaded.model.conv1.weight, resnet56.model.conv1.weight)


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled code ran",))


@pytest.mark.parametrize(
    "spec, weights, message",
    [
        ("resnet56", None, "bad model spec"),
        ("torchvision:resnet1000", None, "unknown torchvision"),
        ("cifar:resnet18", None, "unknown CIFAR model"),
        ("missing_file.py:build", None, "model file not found"),
        ("no_such_package.models:build", None, "cannot import"),
        ("cifar:resnet56", "does/not/exist.pt", "weights file not found"),
        ("torchvision:resnet18", "shipped", "no shipped weights"),
    ],
)
def test_bad_specs_are_clear_errors(spec, weights, message):
    with pytest.raises(AutopruneError, match=message):
        load_model(spec, weights=weights)


def test_weights_of_another_model_are_refused(tmp_path):
    path = tmp_path / "r20.pt"
    torch.save(load_model("cifar:resnet20").model.state_dict(), path)
    with pytest.raises(AutopruneError, match="do not fit cifar:resnet56"):
        load_model("cifar:resnet56", weights=path)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pickled_code_is_never_run(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Payload()}, f)
    with pytest.raises(AutopruneError, match="weights_only=True"):
        load_model("cifar:resnet56", weights=path)
    assert "unpickled code ran" not in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"root:x:0:0:root:/root:/bin/bash\n", b"", b"\x80\x02}q\x00.garbage"])
def test_a_file_that_is_no_checkpoint_is_one_clear_error(tmp_path, content):
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(AutopruneError, match="cannot read weights .* safely"):
        load_model("cifar:resnet56", weights=path)


@pytest.mark.parametrize("text", ["3x224", "ax3x3", "0x32x32", ""])
def test_bad_input_shapes(text):
    with pytest.raises(AutopruneError, match="input-shape"):
        parse_input_shape(text)
