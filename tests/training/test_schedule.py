"""The progressive schedule on the shipped ResNet-56 and real CIFAR images: toward a latency target (HALP's) it
ends within the target, toward a config at exactly that config; the masked model is the pruned one, and a
fine-tune killed mid-way resumes to the same model."""
from __future__ import annotations

import copy
import dataclasses
import warnings

import pytest
import torch

from autoprune.data.sources import load_data
from autoprune.errors import AutopruneError
from autoprune.latency import LatencyPredictor, LatencyTable
from autoprune.latency.choose import shipped_table
from autoprune.training.finetune import finetune
from autoprune.training.schedule import (ConfigGoal, LatencyGoal, Progressive, ProgressivePruning, latency_targets,
                                progressive_finetune)

PLAN = Progressive(events=3, interval=2, window=1.0)
RUN = dict(epochs=2, lr=0.01, seed=1, batch_size=64, progress=False)  # 256 images: 4 steps an epoch, 8 in all


@pytest.fixture(scope="module")
def predictor(resnet56_space):
    # The shipped table as a fixed reference: the schedule's logic is under test, not this machine's speed.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LatencyPredictor(LatencyTable.load(shipped_table("cifar:resnet56")), resnet56_space)


@pytest.fixture(scope="module")
def data(resnet56):
    splits = load_data("cifar10-mini", resnet56)
    return dataclasses.replace(splits, train=splits.train.sample(256))


def test_targets_step_geometrically_from_the_unpruned_latency_to_the_target():
    targets = latency_targets(4.0, 1.0, 4)
    assert targets == pytest.approx([4.0 * 0.25 ** (k / 4) for k in (1, 2, 3, 4)]) and targets[-1] == pytest.approx(1.0)


def test_the_interval_shrinks_to_fit_the_window_and_never_grows_past_halps():
    assert Progressive().spacing(100_000) == 40
    assert Progressive().spacing(1170) == 13  # a 3-epoch CIFAR fine-tune: 30 events in its first third
    with pytest.raises(AutopruneError, match="needs at least 91 fine-tune steps"):
        Progressive().spacing(60)


def test_progressive_pruning_ends_within_the_target_and_removes_exactly_what_it_masked(resnet56, resnet56_space,
                                                                                      predictor, data):
    target = 0.6 * predictor.predict(resnet56_space.full_config())
    trained = copy.deepcopy(resnet56.model)
    schedule = ProgressivePruning(trained, resnet56_space, LatencyGoal(predictor, target), 8, PLAN)
    events, start = [], schedule.config()
    after_step = schedule.after_step
    schedule.after_step = lambda step: (after_step(step), events.append((step, dict(schedule.config()))))
    finetune(trained, data, schedule=schedule, **RUN)
    with torch.no_grad():
        masked_output = trained.eval()(torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    pruned, config, removed = schedule.finish()

    assert predictor.predict(config) <= target
    # Three events, at steps 1, 3 and 5: each narrowed the model, and no group ever widened again.
    changed = [step for (step, c), before in zip(events, [start] + [c for _, c in events]) if c != before]
    assert changed == [1, 3, 5]
    assert all(later[n] <= earlier[n] for (_, earlier), (_, later) in zip(events, events[1:]) for n in earlier)
    assert all(len(removed[n]) == g.channels - config[n] for g in resnet56_space.searchable for n in [g.name])
    # Removing them physically changes nothing: the pruned model computes what the masked one did (the
    # parameter-free shortcuts between stages included).
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(pruned.eval()(x), masked_output, atol=1e-4)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in trained.parameters())


def test_progressive_pruning_toward_a_config_steps_geometrically_to_exactly_its_widths(resnet56, resnet56_space, data):
    # A searched trial's widths: each group's choice nearest a third of its channels.
    goal = {g.name: min(g.choices, key=lambda c: abs(c - g.channels / 3)) for g in resnet56_space.searchable}
    trained = copy.deepcopy(resnet56.model)
    schedule = ProgressivePruning(trained, resnet56_space, ConfigGoal(goal), 8, PLAN)
    widths = []
    after_step = schedule.after_step
    schedule.after_step = lambda step: (after_step(step), widths.append(dict(schedule.config())))
    finetune(trained, data, schedule=schedule, **RUN)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        masked_output = trained.eval()(x)
    pruned, config, removed = schedule.finish()

    assert config == goal
    full = resnet56_space.full_config()
    first_event = widths[1]  # events at steps 1, 3, 5
    assert first_event == {n: round(full[n] * (goal[n] / full[n]) ** (1 / 3)) for n in goal}
    assert all(len(removed[n]) == full[n] - goal[n] for n in goal)
    with torch.no_grad():
        assert torch.allclose(pruned.eval()(x), masked_output, atol=1e-4)


def test_a_killed_progressive_finetune_resumes_to_the_same_model(resnet56, resnet56_space, predictor, data,
                                                                  tmp_path, killed_at_step):
    target = 0.6 * predictor.predict(resnet56_space.full_config())
    args = dict(plan=PLAN, checkpoint_every=2, **RUN)
    straight, straight_config, straight_removed = progressive_finetune(
        resnet56.model, resnet56_space, LatencyGoal(predictor, target), data, checkpoint=tmp_path / "straight.pt", **args)

    killed_at_step(5, progressive_finetune, resnet56.model, resnet56_space, LatencyGoal(predictor, target), data,
                   checkpoint=tmp_path / "resumed.pt", **args)
    saved = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert saved["step"] == 4 and saved["schedule"]["done_events"] == 2  # resumed between two events
    resumed, config, removed = progressive_finetune(resnet56.model, resnet56_space, LatencyGoal(predictor, target),
                                                    data, checkpoint=tmp_path / "resumed.pt", **args)
    assert config == straight_config and removed == straight_removed
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in straight.state_dict().items())
    # A checkpoint of another schedule (or of a one-shot fine-tune) is refused, not silently resumed.
    with pytest.raises(AutopruneError, match="belongs to another fine-tune"):
        progressive_finetune(resnet56.model, resnet56_space, LatencyGoal(predictor, 0.5 * target), data,
                             checkpoint=tmp_path / "resumed.pt", **args)
