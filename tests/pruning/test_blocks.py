"""Depth: removable residual blocks as a kind of group (pruning/blocks.py), from the space to the latency predictor,
the sampler's space, the saliency, the masks and the pruned files."""
import random

import numpy as np
import optuna
import pytest
import torch

from autoprune.allocation.saliency import channel_saliency
from autoprune.allocation.widths import KEEP, REMOVE_BELOW, WidthSpace
from autoprune.latency.predict import LatencyPredictor
from autoprune.latency.table import LatencyTable
from autoprune.assets import shipped_table_for
from autoprune.errors import AutopruneError
from autoprune.models.onnx_io import ort_session, run_onnx, to_onnx_bytes
from autoprune.models.specs import load_model
from autoprune.pruning import verify
from autoprune.pruning.blocks import BLOCK
from autoprune.pruning.masks import ChannelMasks
from autoprune.pruning.pruned_files import load_pruned, save_pruned
from autoprune.pruning.prune import prune, prune_recorded
from autoprune.pruning.space import SearchSpace, build_space

# Every registered kind of block (cifar and torchvision BasicBlock, Bottleneck, InvertedResidual) and how many of each
# model's blocks keep an identity shortcut.
DEPTH_ZOO = [("cifar:resnet20", None, 7), ("torchvision:resnet18", "3x64x64", 5), ("torchvision:resnet50", "3x64x64", 12),
             ("torchvision:mobilenet_v2", "3x64x64", 10)]


@pytest.fixture(scope="module")
def resnet56_depth(resnet56):
    return build_space(resnet56, depth=True)


@pytest.fixture(scope="module")
def depth_predictor(resnet56_depth, tmp_path_factory):
    """A table of this machine profiled with --depth (its calibration removes blocks), few configs: the predictor's
    logic is under test, not this machine's speed."""
    import autoprune

    path = tmp_path_factory.mktemp("depth-table") / "table.json"
    autoprune.profile("cifar:resnet56", path, depth=True, calibration=12, validate=0)
    return LatencyPredictor(LatencyTable.load(path), resnet56_depth)


def _blocks(space):
    return [g for g in space.groups if g.kind == BLOCK]


@pytest.mark.parametrize("spec,shape,count", DEPTH_ZOO, ids=[s for s, _, _ in DEPTH_ZOO])
def test_a_removed_block_is_the_model_with_that_branch_zeroed_and_runs_none_of_its_layers(spec, shape, count):
    torch.manual_seed(0)
    loaded = load_model(spec, input_shape=shape)
    space = build_space(loaded, depth=True)
    blocks = _blocks(space)
    assert len(blocks) == count and all(b.choices == [0, 1] and b.producers for b in blocks)
    x = loaded.example_input()
    with torch.no_grad():
        scale = loaded.model(x).abs().max().item()
    rng = random.Random(3)
    for _ in range(2):  # random channels of every group, about half of the blocks removed
        removed = verify.random_removal(space, rng)
        assert any(removed[b.name] for b in blocks)
        assert verify.pruning_error(loaded.model, space, removed) <= 1e-4 * scale
    gone = {b.name: 0 for b in blocks}
    pruned = prune(loaded.model, space, gone)
    names = dict(pruned.named_modules())
    assert not any(layer in names for b in blocks for layer in b.producers)
    with torch.no_grad():
        expected, original = pruned(x).numpy(), loaded.model(x).numpy()
    size = np.abs(original).max()  # random torchvision weights give logits of any scale
    assert np.abs(expected - original).max() > 1e-2 * size  # the blocks did something
    assert np.abs(run_onnx(ort_session(to_onnx_bytes(pruned, x)), x) - expected).max() < 1e-4 * size


def test_the_check_catches_a_block_removed_without_silencing_its_branch(monkeypatch):
    loaded = load_model("cifar:resnet20")
    space = build_space(loaded, depth=True)
    removed = {"layer1.1": [0]}
    assert verify.pruning_error(loaded.model, space, removed) < 1e-5
    monkeypatch.setattr(verify, "silence_block", lambda model, name: None)
    assert verify.pruning_error(loaded.model, space, removed) > 1e-2


def test_the_space_writes_a_kind_only_for_blocks_and_refuses_unknown_kinds(resnet56_space, resnet56_depth, tmp_path):
    assert [g for g in resnet56_depth.groups if g.kind != BLOCK] == resnet56_space.groups  # blocks come after
    data = resnet56_depth.to_dict()
    assert {g.get("kind") for g in data["groups"]} == {None, BLOCK}
    resnet56_depth.save(tmp_path / "s.yaml")
    assert SearchSpace.load(tmp_path / "s.yaml") == resnet56_depth
    data["groups"][-1]["kind"] = "heads"
    with pytest.raises(AutopruneError, match="unknown kind 'heads'"):
        SearchSpace.from_dict(data)
    data["groups"][-1].update(kind="channels")  # a group of channels keeps one at least
    with pytest.raises(AutopruneError, match="must lie in 1..1"):
        SearchSpace.from_dict(data)
    assert resnet56_depth.complete({"layer2.3": 0})["layer2.3"] == 0
    with pytest.raises(AutopruneError, match="not allowed"):
        resnet56_depth.complete({"layer2.3": 2})


def test_frozen_blocks_stay(resnet56):
    space = build_space(resnet56, depth=True, freeze=["layer1.*"])
    frozen = [b for b in _blocks(space) if b.frozen]
    assert [b.name for b in frozen] == [f"layer1.{i}" for i in range(9)] and all(b.choices == [1] for b in frozen)


def test_a_removed_block_costs_nothing_on_the_table(depth_predictor):
    predictor = depth_predictor
    assert predictor.table.model(predictor.key)["blocks"] == [g.name for g in _blocks(predictor.space)]
    full, without = predictor.breakdown({}), predictor.breakdown({"layer2.4": 0})
    assert set(full) - set(without) == {"layer2.4.conv1", "layer2.4.conv2"}
    assert predictor.features({"layer2.4": 0})["kernels"] == predictor.features({})["kernels"] - 2
    assert predictor.predict({"layer2.4": 0}) < predictor.predict({})
    with pytest.raises(AutopruneError, match="layer2.4"):
        predictor.predict({"layer2.4": 2})
    # A block's channel widths no longer cost anything once it is gone.
    assert predictor.predict({"layer2.4": 0, "layer2.4.conv1": 8}) == predictor.predict({"layer2.4": 0})


def test_a_table_profiled_without_depth_is_refused_for_a_space_with_blocks(resnet56_depth):
    # Its calibration never saw a block removed: on this EPYC such a table missed depth configs by a MAPE of 14%
    # (worst -37%), a table profiled with --depth by 1.7% (benchmarks/results/latency_predictor-depth.md).
    with pytest.raises(AutopruneError, match="never removed block layer1.0 .*profile the model with --depth"):
        LatencyPredictor(LatencyTable.load(shipped_table_for("cifar:resnet56")), resnet56_depth)


def test_the_sampler_sees_a_keep_param_per_block_and_every_config_is_a_point(resnet56, resnet56_depth):
    widths = WidthSpace.for_model(resnet56.model, resnet56_depth, resnet56.example_input())
    assert len(widths.blocks) == 25 and not any(b.name in widths.stage for b in widths.blocks)
    rng = random.Random(0)
    config = {**resnet56_depth.random_config(rng), "layer1.3": 0, "layer3.7": 1}
    params = widths.params(config)
    assert params[KEEP + "layer1.3"] < REMOVE_BELOW <= params[KEEP + "layer3.7"]
    assert widths.config(params) == {g.name: config[g.name] for g in resnet56_depth.searchable}
    trial = optuna.create_study().ask()
    sampled = widths.suggest(trial)
    assert all(KEEP + b.name in trial.params for b in widths.blocks) and all(sampled[b.name] in (0, 1)
                                                                            for b in widths.blocks)


def test_blocks_have_one_saliency_each_on_the_channels_scale(resnet56, resnet56_depth):
    saliency = channel_saliency(resnet56.model, resnet56_depth, criterion="l1")
    blocks = _blocks(resnet56_depth)
    assert all(len(saliency.values[b.name]) == 1 for b in blocks)
    # A block owns every weight of its branch: its L1 is at least its inner group's channels' together.
    assert all(saliency.kept(b.name, 1) >= saliency.kept(f"{b.name}.conv1", 1) for b in blocks)


def test_masks_silence_a_block_as_its_slice_removes_it(resnet56, resnet56_depth):
    x = resnet56.example_input(4)
    removed = {"layer1.2": [0], "layer3.5": [0], "layer3.5.conv1": list(range(40))}
    model = resnet56.model
    masks = ChannelMasks(model, resnet56_depth)
    try:
        masks.set(removed)
        with torch.no_grad():
            masked = model.eval()(x)
    finally:
        masks.remove()
    pruned, recorded = prune_recorded(model, resnet56_depth, {"layer1.2": 0, "layer3.5": 0, "layer3.5.conv1": 24})
    assert recorded["layer1.2"] == [0] and recorded["layer3.5"] == [0]
    with torch.no_grad():
        assert torch.allclose(pruned(x), masked, atol=1e-4)


def test_a_pruned_file_without_blocks_loads_back(resnet56, resnet56_depth, tmp_path):
    config = {"layer1.2": 0, "layer2.7": 0, "layer3.1.conv1": 32}
    pruned, removed = prune_recorded(resnet56.model, resnet56_depth, config)
    path = save_pruned(tmp_path / "m.pt", pruned, "cifar:resnet56", resnet56_depth, config, removed)
    loaded = load_pruned(path)
    x = resnet56.example_input(2)
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))
    assert "layer1.2.conv1" not in dict(loaded.named_modules())


@pytest.mark.parametrize("goal_kind", ["config", "latency"])
def test_the_progressive_schedule_removes_blocks_and_ends_as_the_model_it_masked(resnet56, resnet56_depth, goal_kind,
                                                                                 depth_predictor):
    import copy
    import dataclasses

    from autoprune.data.sources import load_data
    from autoprune.training.finetune import finetune
    from autoprune.training.schedule import ConfigGoal, LatencyGoal, Progressive, ProgressivePruning

    splits = load_data("cifar10-mini", resnet56)
    data = dataclasses.replace(splits, train=splits.train.sample(256))
    predictor = depth_predictor
    wanted = {"layer1.4": 0, "layer2.2": 0, "layer3.8": 0, "layer3.2.conv1": 16}
    goal = ConfigGoal(resnet56_depth.complete(wanted)) if goal_kind == "config" else LatencyGoal(predictor, 0.5 * predictor.predict({}))
    trained = copy.deepcopy(resnet56.model)
    schedule = ProgressivePruning(trained, resnet56_depth, goal, 8, Progressive(events=3, interval=2, window=1.0))
    finetune(trained, data, schedule=schedule, epochs=2, lr=0.01, seed=1, batch_size=64, progress=False)
    x = resnet56.example_input(4)
    with torch.no_grad():
        masked = trained.eval()(x)
    pruned, config, removed = schedule.finish()
    if goal_kind == "config":
        assert {n: config[n] for n in wanted} == wanted
        assert all(removed[n] == [0] for n in ("layer1.4", "layer2.2", "layer3.8"))
    else:  # HALP's knapsack weighs blocks against channels on one saliency scale
        assert predictor.predict(config) <= 0.5 * predictor.predict({})
    with torch.no_grad():
        assert torch.allclose(pruned.eval()(x), masked, atol=1e-4)


def test_inspect_depth_lists_the_blocks_and_verifies_their_removal(capsys):
    from autoprune.cli import main

    assert main(["inspect", "--model", "cifar:resnet20", "--depth", "--verify"]) == 0
    text = capsys.readouterr().out
    assert text.count("(block)") == 7 and "layer2.1        (block)   kept or removed" in text
    assert "19 groups (19 searchable)" in text and "removes exactly the chosen channels" in text
