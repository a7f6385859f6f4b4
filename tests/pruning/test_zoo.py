"""Every model the project claims to support: the space builds, random configs prune to the widths they
name, the pruned model matches ONNX Runtime, and pruning removes exactly the channels it says."""
import random

import numpy as np
import pytest
import torch

from autoprune.models.complexity import count_macs
from autoprune.models.specs import load_model
from autoprune.models.onnx_io import ort_session, run_onnx, to_onnx_bytes
from autoprune.pruning.prune import prune
from autoprune.pruning.space import build_space
from autoprune.pruning.verify import checkable, pruning_error, random_removal

# Smaller inputs than the models' usual 224 keep the suite fast; the channel structure is the same.
ZOO = [
    ("torchvision:resnet18", "3x64x64"),
    ("torchvision:resnet50", "3x64x64"),
    ("torchvision:resnext50_32x4d", "3x32x32"),  # grouped convolutions: searched block-wise
    ("torchvision:mobilenet_v2", "3x64x64"),
    ("torchvision:mobilenet_v3_large", "3x64x64"),
    ("torchvision:efficientnet_b0", "3x64x64"),
    ("torchvision:regnet_y_400mf", "3x64x64"),
    ("torchvision:densenet121", "3x64x64"),
    ("torchvision:vgg11_bn", None),  # its 7x7 adaptive pool exports to ONNX only from 224
    ("torchvision:convnext_tiny", "3x64x64"),
    ("torchvision:googlenet", "3x64x64"),
    ("torchvision:mnasnet0_5", "3x64x64"),
    ("torchvision:squeezenet1_1", "3x64x64"),
    ("cifar:resnet20", None),
    ("cifar:resnet56", "shipped"),  # trained weights: random ones give logits in the hundreds
]


@pytest.fixture(scope="module", params=ZOO, ids=[spec for spec, _ in ZOO])
def model_and_space(request):
    spec, shape = request.param
    torch.manual_seed(0)
    if shape == "shipped":
        loaded = load_model(spec, weights="shipped")
    else:
        loaded = load_model(spec, input_shape=shape)
    return loaded, build_space(loaded)


def _width(module, side):
    if isinstance(module, torch.nn.Conv2d):
        return module.out_channels if side == "out" else module.in_channels
    if isinstance(module, torch.nn.Linear):
        return module.out_features if side == "out" else module.in_features
    if isinstance(module, torch.nn.BatchNorm2d):
        return module.num_features
    return None


@pytest.mark.slow
def test_random_configs_prune_to_their_widths_and_match_onnx(model_and_space):
    loaded, space = model_and_space
    assert len(space.searchable) >= 2
    original = {n: m for n, m in loaded.model.named_modules()}
    rng = random.Random(1)
    x = loaded.example_input()
    full_macs = count_macs(loaded.model, x)
    configs = [space.random_config(rng) for _ in range(3)]
    # The elementwise minimum of the configs prunes at least as much as each of them.
    configs.append({name: min(c[name] for c in configs) for name in configs[0]})
    macs = []
    for config in configs:
        pruned = prune(loaded.model, space, config)
        names = dict(pruned.named_modules())
        for group in space.groups:
            for layer in group.producers:
                before = _width(original[layer], "out")
                if before == group.channels:
                    assert _width(names[layer], "out") == config[group.name], (group.name, layer)
        macs.append(count_macs(pruned, x))
        with torch.no_grad():
            expected = pruned.eval()(x).numpy()
        got = run_onnx(ort_session(to_onnx_bytes(pruned, x)), x)
        assert np.abs(got - expected).max() < 1e-4
    assert all(m < full_macs for m in macs)
    assert macs[-1] <= min(macs[:-1])
    # The original is untouched.
    assert count_macs(loaded.model, x) == full_macs


def test_pruning_removes_exactly_the_chosen_channels(model_and_space):
    loaded, space = model_and_space
    names = [g.name for g in space.searchable if checkable(loaded.model, space, g.name)]
    assert names, "no group can be checked"
    rng = random.Random(7)
    with torch.no_grad():
        scale = loaded.model(loaded.example_input()).abs().max().item()
    for _ in range(2):
        removed = random_removal(space, rng, names)
        assert pruning_error(loaded.model, space, removed) <= 1e-4 * max(1.0, scale)
