"""Accuracy proxies and fine-tuning on real data (the shipped CIFAR-10 subset and ResNet-56)."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from autoprune.training import proxies
from autoprune.data.sources import load_data
from autoprune.errors import AutopruneError
from autoprune.models.specs import load_model
from autoprune.training.finetune import finetune
from autoprune.training.proxies import make_proxy, reestimate_bn
from autoprune.data.task import evaluate_top1
from autoprune.pruning.prune import prune
from autoprune.pruning.space import build_space


@pytest.fixture(scope="module")
def resnet56():
    return load_model("cifar:resnet56", weights="shipped")


@pytest.fixture(scope="module")
def splits(resnet56):
    return load_data("cifar10-mini", resnet56)


@pytest.fixture(scope="module")
def pruned(resnet56):
    """Every group of the shipped ResNet-56 pruned to the choice nearest 90% of its width (L1)."""
    space = build_space(resnet56)
    config = {g.name: min(g.choices, key=lambda c: abs(c - 0.9 * g.channels)) for g in space.searchable}
    return prune(resnet56.model, space, config)


@pytest.mark.parametrize("spec", ["adaptive", "finetune", "finetune:", "finetune:0", "finetune:ten", "adaptive-bn:-1"])
def test_unknown_or_malformed_proxies_fail_clearly(spec):
    with pytest.raises(AutopruneError, match="proxy"):
        make_proxy(spec)


def test_proxy_specs():
    assert make_proxy("adaptive-bn").steps == 0
    assert make_proxy("adaptive-bn:7").bn_batches == 7
    assert make_proxy("finetune:300").steps == 300


def test_adaptive_bn_recovers_what_plain_pruning_loses(resnet56, pruned, splits):
    full = evaluate_top1(resnet56.model, splits.test)
    plain = evaluate_top1(pruned, splits.test)
    recalibrated = copy.deepcopy(pruned)
    reestimate_bn(recalibrated, splits.proxy_train, batches=proxies.BN_BATCHES)
    recovered = evaluate_top1(recalibrated, splits.test)
    assert full - plain > 0.1  # pruning 10% everywhere with stale statistics costs a lot...
    assert recovered - plain > (full - plain) / 2  # ...and re-estimating them wins most of it back


def test_proxy_scores_are_seeded_and_leave_the_candidate_alone(pruned, splits):
    before = copy.deepcopy(pruned.state_dict())
    first = make_proxy("adaptive-bn").evaluate(pruned, splits)
    second = make_proxy("adaptive-bn").evaluate(pruned, splits)
    assert 0 <= first.accuracy <= 1 and first.seconds > 0
    assert first.accuracy == second.accuracy
    assert all(torch.equal(before[k], v) for k, v in pruned.state_dict().items())


def test_finetune_steps_proxy_with_and_without_a_teacher(resnet56, pruned, splits, monkeypatch):
    small = dataclasses.replace(splits, proxy_val=splits.proxy_val.sample(200))
    scored = []  # the fine-tuned weights each evaluation scored
    score = type(small).score
    monkeypatch.setattr(type(small), "score", lambda self, model: scored.append(copy.deepcopy(model.state_dict()))
                        or score(self, model))
    plain = make_proxy("finetune:3").evaluate(pruned, small)
    taught = make_proxy("finetune:3").evaluate(pruned, small, teacher=resnet56.model)
    again = make_proxy("finetune:3").evaluate(pruned, small, teacher=resnet56.model)
    without, with_teacher, repeated = scored
    # The teacher's term moves every step: the model scored is another one (the top-1 of 200 images may still tie).
    assert any(not torch.equal(without[k], with_teacher[k]) for k in without)
    assert 0 <= plain.accuracy <= 1 and 0 <= taught.accuracy <= 1
    # Distillation is seeded like the rest: taught twice, the same weights and score.
    assert all(torch.equal(with_teacher[k], repeated[k]) for k in with_teacher) and taught.accuracy == again.accuracy


@pytest.fixture(scope="module")
def tiny(splits):
    """A short fine-tune: ResNet-20 from scratch on 256 real images, 4 steps an epoch."""
    return dataclasses.replace(splits, train=splits.train.sample(256))


def fresh_resnet20():
    torch.manual_seed(0)
    return load_model("cifar:resnet20").model


def test_interrupted_finetune_resumes_to_the_same_weights(tiny, tmp_path, killed_at_step):
    kwargs = dict(epochs=2, lr=0.05, seed=1, batch_size=64, checkpoint_every=3, progress=False)
    straight = finetune(fresh_resnet20(), tiny, checkpoint=tmp_path / "straight.pt", **kwargs)

    killed_at_step(5, finetune, fresh_resnet20(), tiny, checkpoint=tmp_path / "resumed.pt", **kwargs)
    assert torch.load(tmp_path / "resumed.pt", weights_only=True)["step"] == 3
    resumed = finetune(fresh_resnet20(), tiny, checkpoint=tmp_path / "resumed.pt", **kwargs)

    assert torch.load(tmp_path / "resumed.pt", weights_only=True)["step"] == 8
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in straight.state_dict().items())
    assert not torch.equal(straight.conv1.weight, fresh_resnet20().conv1.weight)


def test_a_checkpoint_of_another_run_is_refused(tiny, tmp_path):
    kwargs = dict(batch_size=64, progress=False, checkpoint=tmp_path / "ckpt.pt")
    finetune(fresh_resnet20(), tiny, epochs=1, **kwargs)
    with pytest.raises(AutopruneError, match="belongs to another fine-tune"):
        finetune(fresh_resnet20(), tiny, epochs=2, **kwargs)
    (tmp_path / "ckpt.pt").write_bytes(b"torn")
    with pytest.raises(AutopruneError, match="cannot resume"):
        finetune(fresh_resnet20(), tiny, epochs=1, **kwargs)


def test_finetune_with_distillation_learns(resnet56, splits):
    space = build_space(resnet56)
    config = {g.name: g.choices[len(g.choices) // 2] for g in space.searchable}
    student = prune(resnet56.model, space, config)
    before = evaluate_top1(student, splits.proxy_val)
    subset = dataclasses.replace(splits, train=splits.proxy_train.sample(512))
    finetune(student, subset, epochs=1, lr=0.01, teacher=resnet56.model, batch_size=64, progress=False)
    assert evaluate_top1(student, splits.proxy_val) > before
